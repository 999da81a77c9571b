"""`vtc features extract`: encode videos once into a resumable feature cache (see `vtc.encoders.cache`).

    vtc features extract --videos DIR --out CACHE --encoder clip --encoder-path /models/clip-vit-l --num-frames 32
    torchrun --nproc-per-node 4 -m vtc.cli features extract --annotations train.jsonl --video-dir videos ...

Run it again after an interruption: cached videos are skipped. Under `torchrun` / `accelerate launch` every
process extracts its own share.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

import torch

from vtc.encoders import ENCODERS, build_encoder
from vtc.encoders.base import VisionEncoder
from vtc.encoders.cache import extract_features, list_annotated_videos, list_video_directory, rank_and_world_size
from vtc.utils.options import parse_key_values
from vtc.video import check_sampling

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    extract = commands.add_parser("extract", help="encode videos into a feature cache")
    source = extract.add_mutually_exclusive_group(required=True)
    source.add_argument("--videos", help="a folder of videos")
    source.add_argument("--annotations", help="a JSON-lines file whose lines name a `video` (or `vid`)")
    extract.add_argument("--video-dir", help="where --annotations videos live (default: the file's folder)")
    extract.add_argument("--glob", help="with --videos: files to take (default: any video extension)")
    extract.add_argument("--out", required=True, help="the cache folder")
    extract.add_argument(
        "--encoder",
        required=True,
        help=f"one of {', '.join(sorted(ENCODERS))}, or an importable `module:factory` returning a VisionEncoder",
    )
    extract.add_argument("--encoder-path", help="local folder of the encoder's weights (Hugging Face format)")
    extract.add_argument(
        "--encoder-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra encoder argument, VALUE read as JSON when it parses (repeatable)",
    )
    sampling = extract.add_mutually_exclusive_group()
    sampling.add_argument("--num-frames", type=int, help="frames sampled uniformly per video (default 32)")
    sampling.add_argument("--fps", type=float, help="instead: at most this many frames per second")
    extract.add_argument("--size", type=int, help="resize frames to this shorter side before encoding")
    extract.add_argument("--videos-per-shard", type=int, default=16)
    extract.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="stored token dtype")
    extract.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    extract.add_argument("--seed", type=int, default=0, help="seed for encoders built with random weights")


def import_factory(name: str) -> Callable[..., Any]:
    """The callable that `module:factory` names; `ValueError` when that module or callable does not exist (a module
    that exists but fails to import something else raises its own error)."""
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not f"{module_name}.".startswith(f"{error.name}."):
            raise
        raise ValueError(f"--encoder {name}: no module named {error.name!r}") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"--encoder {name}: module {module_name!r} has no callable {attribute!r}")
    return factory


def load_encoder(name: str, path: str | None, options: dict[str, Any]) -> VisionEncoder:
    """A registered encoder type (`build_encoder`), or the `module:factory` callable's result."""
    arguments = dict(options, **({"path": path} if path else {}))
    if ":" not in name:
        return build_encoder({"type": name, **arguments})
    encoder = import_factory(name)(**arguments)
    if not isinstance(encoder, VisionEncoder):
        raise TypeError(f"{name} returned a {type(encoder).__name__}, not a VisionEncoder")
    return encoder


def run(args: argparse.Namespace) -> int:
    if args.videos:
        listing = list_video_directory(args.videos, args.glob)
    else:
        listing = list_annotated_videos(args.annotations, args.video_dir)
    for problem in listing.missing:
        print(f"skipped: {problem}")
    options = parse_key_values(args.encoder_option, "--encoder-option")
    num_frames = 32 if args.num_frames is None and args.fps is None else args.num_frames
    check_sampling(num_frames, args.fps, args.size)  # a bad option is refused before any video is read
    sampling = {"num_frames": num_frames, "fps": args.fps, "size": args.size}
    sampling = {key: value for key, value in sampling.items() if value is not None}
    settings = {
        "encoder": args.encoder,
        "encoder_path": args.encoder_path,
        "encoder_options": options,
        "sampling": sampling,
        "dtype": args.dtype,
        "seed": args.seed,
    }
    torch.manual_seed(args.seed)
    encoder = load_encoder(args.encoder, args.encoder_path, options).to(args.device).eval()
    rank, world_size = rank_and_world_size()
    report = extract_features(
        listing.videos,
        encoder,
        args.out,
        sampling=sampling,
        videos_per_shard=args.videos_per_shard,
        dtype=DTYPES[args.dtype],
        rank=rank,
        world_size=world_size,
        settings=settings,
    )
    print(report)
    if args.annotations:
        print(f"{len(listing.missing)} annotation lines named no readable video")
    return 0
