"""How learnable is the synthetic benchmark with the strongest signal a model can get: a label on every frame?

A small transformer reads the query (bag of words) and every token of 16 frames and labels each frame in or out of
the target window (binary cross-entropy). The predicted window runs from the first to the last frame labelled in
(half a frame spacing either side); it is scored with the library's moment metrics on a held-out split. This bounds
what the generative video LLM (a weaker, text-only signal) can learn in the same time, and calibrates the
benchmark's difficulty. `--readout generative` trains the library's video LLM on the same tokens instead (no
compression, the tiny T5 writing the window as text), to separate what the tokens hold from what that readout learns.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/frame_probe.py --tokens cnn [--steps 1500 --set num_distractors=2]
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/frame_probe.py --tokens oracle --readout generative --batch-size 8
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/frame_probe.py --tokens patch --grid 5 [--standardize]

Tokens: `frozen` (the frozen tiny encoder of `configs/model/tiny.yaml`), `scene` (the frozen `SceneEncoder`,
pre-trained on the renderer's labels and cached in `runs/cache`), `patch` (the frozen `PatchEncoder` on the same
segmenter, a `--grid` x `--grid` grid of patch tokens per frame: the base models' input; `--standardize` puts each
channel at unit scale), `pixels` (raw patches, trainable linear embedding), `cnn` (a trainable 4-layer
convolutional encoder on the full frames), `oracle` (the scene encoder's slots computed from the renderer's true
labels instead of a network: what perfect perception would give; the run also scores a hand-written reading of
these slots, `oracle_rule_logits`, as a reference).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from vtc.data.batch import collate
from vtc.encoders.base import VisionEncoder
from vtc.encoders.tiny import TinyVisionEncoder
from vtc.eval.predict import predict_windows, score
from vtc.lmm.model import build_model
from vtc.lmm.tiny import save_tiny_lm
from vtc.utils.options import parse_key_values
from vtc.world.patch_encoder import DEFAULT_GRID, MIN_DEVIATION, PatchEncoder
from vtc.world.pretrain import cached_scene_encoder
from vtc.world.raster import NUM_OBJECT_CLASSES, object_class_index
from vtc.world.scene_encoder import SceneEncoder, class_attributes, slot_states, temporal_changes
from vtc.world.source import SYNTHETIC_WORDS, SyntheticSamples
from vtc.world.synthetic import SyntheticMoments

ROOT = Path(__file__).resolve().parents[1]
NUM_FRAMES = 16
FROZEN_TOKENS = ("frozen", "scene", "patch")  # tokens of a frozen encoder: encoded once, can be standardized


class OracleSamples(SyntheticSamples):
    """Samples whose `frames` are replaced by `SceneEncoder`-style slots `[T, 25, 19]` read from the true labels."""

    def sample(self, index: int) -> dict:
        video = self.moments.render(index, self.indices, labels=True)
        labels = torch.from_numpy(video.labels)
        probabilities = nn.functional.one_hot(labels, NUM_OBJECT_CLASSES).permute(0, 3, 1, 2).float()
        states = slot_states(probabilities)
        attributes = class_attributes().expand(len(labels), -1, -1)
        slots = torch.cat([attributes, states, temporal_changes(states)], dim=-1)
        return {
            "qid": video.video_id,
            "frames": slots,
            "timestamps": torch.from_numpy(video.timestamps),
            "query": video.query,
            "window": video.window,
            "duration": video.duration,
        }


def render(settings: dict, seed: int, count: int, kind: type = SyntheticSamples) -> list[dict]:
    samples = kind(SyntheticMoments(num_videos=count, **{**settings, "seed": seed}), NUM_FRAMES)
    return [samples[index] for index in range(count)]


def frame_labels(samples: list[dict]) -> Tensor:
    """`[videos, frames]` 1 where the frame time lies in the target window."""
    rows = []
    for sample in samples:
        start, end = sample["window"]
        rows.append(((sample["timestamps"] >= start) & (sample["timestamps"] <= end)).float())
    return torch.stack(rows)


class FrozenEncoder(nn.Module):
    """uint8 `[B, T, H, W, 3]` -> `[B, T, N, dim]` features of a frozen `VisionEncoder`."""

    def __init__(self, encoder: VisionEncoder) -> None:
        super().__init__()
        self.encoder = encoder.requires_grad_(False)

    def forward(self, frames: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.stack([self.encoder.encode(video) for video in frames])


class PixelPatches(nn.Module):
    """uint8 `[B, T, H, W, 3]` -> `[B, T, (S/P)^2, 3 P^2]` raw patches of frames resized to S."""

    def __init__(self, size: int, patch: int) -> None:
        super().__init__()
        self.size, self.patch, self.dim = size, patch, 3 * patch * patch

    def forward(self, frames: Tensor) -> Tensor:
        batch = frames.shape[0]
        pixels = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1
        pixels = nn.functional.interpolate(pixels, size=(self.size, self.size), mode="bilinear", antialias=True)
        patches = pixels.unfold(2, self.patch, self.patch).unfold(3, self.patch, self.patch)
        return patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(1, 2).unflatten(0, (batch, -1))


class ConvTokens(nn.Module):
    """uint8 `[B, T, 64, 64, 3]` -> `[B, T, 16, 64]`: four stride-2 convolutions, a 4 x 4 grid of tokens."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        widths = [3, 32, dim, dim, dim]
        layers = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Conv2d(width_in, width_out, 3, 2, 1), nn.GroupNorm(8, width_out), nn.GELU()]
        self.net, self.dim = nn.Sequential(*layers), dim

    def forward(self, frames: Tensor) -> Tensor:
        batch = frames.shape[0]
        pixels = frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 127.5 - 1
        return self.net(pixels).flatten(2).transpose(1, 2).unflatten(0, (batch, -1))


class FrameProbe(nn.Module):
    """Query words + frame tokens -> one in-window logit per frame."""

    def __init__(self, tokens: nn.Module, token_dim: int, tokens_per_frame: int, vocabulary: dict[str, int]) -> None:
        super().__init__()
        width = 64
        self.tokens, self.vocabulary = tokens, vocabulary
        self.embed = nn.Linear(token_dim, width)
        self.frame_position = nn.Parameter(torch.randn(NUM_FRAMES, 1, width) * 0.02)
        self.token_position = nn.Parameter(torch.randn(1, tokens_per_frame, width) * 0.02)
        self.words = nn.EmbeddingBag(len(vocabulary) + 1, width, mode="mean")
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        self.head = nn.Linear(width, 1)

    def forward(self, inputs: Tensor, queries: list[str]) -> Tensor:
        """`inputs [B, T, ...]` (frames or features), B queries -> logits `[B, T]`."""
        tokens = (self.embed(self.tokens(inputs)) + self.frame_position + self.token_position).flatten(1, 2)
        words = [torch.tensor([self.vocabulary.get(word, 0) for word in query.split()]) for query in queries]
        offsets = torch.tensor([0, *torch.tensor([len(w) for w in words]).cumsum(0)[:-1].tolist()])
        query = self.words(torch.cat(words), offsets).unsqueeze(1)
        hidden = self.transformer(torch.cat([query, tokens], dim=1))[:, 1:]
        return self.head(hidden).view(len(queries), NUM_FRAMES, -1).mean(-1)


class FrameReadout(nn.Module):
    """The probe's own readout: per-frame in-window logits, binary cross-entropy, first-to-last labelled frame."""

    def __init__(self, probe: FrameProbe) -> None:
        super().__init__()
        self.probe = probe

    def loss(self, samples: list[dict]) -> Tensor:
        logits = self.probe(torch.stack([s["frames"] for s in samples]), [s["query"] for s in samples])
        return nn.functional.binary_cross_entropy_with_logits(logits, frame_labels(samples))

    @torch.no_grad()
    def records(self, samples: list[dict]) -> list[dict]:
        logits = self.probe(torch.stack([s["frames"] for s in samples]), [s["query"] for s in samples])
        return predicted_records(logits, samples)


class GenerativeReadout(nn.Module):
    """The library's readout on the same tokens: a `VideoLMM` (no compression, MLP projector, the tiny T5 of
    `configs/model/tiny.yaml` trained in full) that writes the window as text, scored on the parsed answer."""

    def __init__(self, tokens: nn.Module, token_dim: int, time_input: str, directory: Path, saliency: bool) -> None:
        super().__init__()
        model_config = yaml.safe_load((ROOT / "configs" / "model" / "tiny.yaml").read_text())["model"]
        save_tiny_lm(directory, **{"extra_words": SYNTHETIC_WORDS, **model_config["tiny_lm"]})
        self.tokens = tokens
        self.model = build_model(
            {
                "feature_dim": token_dim,
                "llm": {"path": str(directory), "mode": "full"},
                "projector": "mlp",
                "time_embedding": time_input == "embedding",
                "timestamp_tokens": time_input == "tokens",
                "time_tokens": NUM_FRAMES if time_input == "time-tokens" else 0,
                "answer_template": "brackets" if time_input == "time-tokens" else "sentence",
                "num_frames": NUM_FRAMES,
                "saliency_loss": 1.0 if saliency else 0.0,
                "readout": "saliency" if saliency else "text",
            }
        )

    def featured(self, samples: list[dict]) -> list[dict]:
        """The samples with their tokens as `features` (what `collate` and `VideoLMM` take)."""
        features = self.tokens(torch.stack([s["frames"] for s in samples]))
        return [{**sample, "features": tokens} for sample, tokens in zip(samples, features, strict=True)]

    def loss(self, samples: list[dict]) -> Tensor:
        return self.model(collate(self.featured(samples)))

    @torch.no_grad()
    def records(self, samples: list[dict]) -> list[dict]:
        return predict_windows(self.model, self.featured(samples), range(len(samples)), len(samples))


def predicted_records(logits: Tensor, samples: list[dict]) -> list[dict]:
    """Prediction records: first to last frame labelled in (the most likely frame when none is)."""
    records = []
    for row, sample in zip(logits, samples, strict=True):
        times = sample["timestamps"].double()
        half = float(times[1] - times[0]) / 2
        inside = torch.nonzero(row > 0).flatten()
        first, last = (int(inside[0]), int(inside[-1])) if len(inside) else (int(row.argmax()),) * 2
        window = [max(float(times[first]) - half, 0.0), min(float(times[last]) + half, sample["duration"])]
        records.append(
            {
                "qid": sample["qid"],
                "pred_relevant_windows": [[*window, 1.0]],
                "relevant_windows": [list(sample["window"])],
            }
        )
    return records


def oracle_rule_logits(samples: list[dict]) -> Tensor:
    """The hand-written reading of oracle slots: a frame is in the window where the queried shape's slot (and, for
    "turns <colour>", the new colour's slot) changes area or position from the previous or to the next frame."""
    rows = []
    for sample in samples:
        words = sample["query"].split()
        colours = [words[1], words[4]] if words[3] == "turns" else [words[1]]
        slots = [object_class_index(colour, words[2]) for colour in colours]
        changes = sample["frames"][:, slots, -6:].abs().amax(dim=(1, 2))  # [T]
        rows.append(changes - 0.25)
    return torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", choices=("frozen", "scene", "patch", "pixels", "cnn", "oracle"), default="cnn")
    parser.add_argument("--grid", type=int, default=DEFAULT_GRID, help="cells per side of the patch tokens")
    parser.add_argument(
        "--standardize", action="store_true", help="frozen encoders' tokens to unit scale per channel (train stats)"
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--readout", choices=("frame", "generative", "saliency"), default="frame")
    parser.add_argument(
        "--time-input", choices=("embedding", "tokens", "time-tokens"), default="embedding", help="generative only"
    )
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--train-videos", type=int, default=1500)
    parser.add_argument("--fresh", action="store_true", help="a new video for every sample instead of --train-videos")
    parser.add_argument("--val-videos", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="SyntheticMoments argument")
    args = parser.parse_args()
    if args.standardize and (args.fresh or args.tokens not in FROZEN_TOKENS):
        parser.error(f"--standardize needs tokens of a frozen encoder ({', '.join(FROZEN_TOKENS)}) without --fresh")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data_config = yaml.safe_load((ROOT / "configs" / "data" / "synthetic.yaml").read_text())["data"]
    settings = {key: value for key, value in data_config["synthetic"].items() if key != "seed"}
    settings.update(parse_key_values(args.set))
    started = time.perf_counter()
    # --fresh: a new video for every training sample (rendered as needed), so the probe cannot memorise its data.
    train_count = args.steps * args.batch_size if args.fresh else args.train_videos
    kind = OracleSamples if args.tokens == "oracle" else SyntheticSamples
    train = kind(SyntheticMoments(num_videos=train_count, **{**settings, "seed": 0}), NUM_FRAMES)
    val = render(settings, data_config.get("val_seed", 1_000_003), args.val_videos, kind)
    vocabulary = {word: i + 1 for i, word in enumerate(sorted({w for s in val for w in s["query"].split()}))}
    if not args.fresh:
        train = [train[index] for index in range(len(train))]
    render_seconds = time.perf_counter() - started
    if args.tokens == "frozen":
        model_config = yaml.safe_load((ROOT / "configs" / "model" / "tiny.yaml").read_text())["model"]
        encoder_config = {key: value for key, value in model_config["lmm"]["encoder"].items() if key != "type"}
        tokens = FrozenEncoder(TinyVisionEncoder(**encoder_config))
        token_dim, per_frame = tokens.encoder.output_dim, tokens.encoder.tokens_per_frame
    elif args.tokens in ("scene", "patch"):
        path, report = cached_scene_encoder(ROOT / "runs" / "cache", settings)
        print(json.dumps({"scene_encoder": str(path), **report}), flush=True)
        encoder = SceneEncoder(path=str(path)) if args.tokens == "scene" else PatchEncoder(args.grid, path=str(path))
        tokens = FrozenEncoder(encoder)
        token_dim, per_frame = encoder.output_dim, encoder.tokens_per_frame
    elif args.tokens == "pixels":
        tokens = PixelPatches(size=32, patch=8)
        token_dim, per_frame = tokens.dim, 16
    elif args.tokens == "oracle":
        tokens = nn.Identity()
        token_dim, per_frame = SceneEncoder().output_dim, NUM_OBJECT_CLASSES
    else:
        tokens = ConvTokens()
        token_dim, per_frame = tokens.dim, 16
    if isinstance(tokens, FrozenEncoder) and not args.fresh:  # encode every video once, not at every step
        with torch.no_grad():
            train, val = ([{**s, "frames": tokens.encoder.encode(s["frames"])} for s in part] for part in (train, val))
        tokens = nn.Identity()
        if args.standardize:  # each channel to zero mean and unit deviation over the training tokens
            channels = torch.cat([s["frames"].flatten(0, -2) for s in train])
            mean, deviation = channels.mean(dim=0), channels.std(dim=0).clamp_min(MIN_DEVIATION)
            train, val = ([{**s, "frames": (s["frames"] - mean) / deviation} for s in part] for part in (train, val))
    if args.tokens == "oracle":
        print(json.dumps({"oracle_rule": score(predicted_records(oracle_rule_logits(val), val))}), flush=True)
    if args.readout == "frame":
        readout: FrameReadout | GenerativeReadout = FrameReadout(FrameProbe(tokens, token_dim, per_frame, vocabulary))
    else:
        directory = ROOT / "runs" / "frame_probe_lm"
        readout = GenerativeReadout(tokens, token_dim, args.time_input, directory, args.readout == "saliency")
    optimizer = torch.optim.AdamW(readout.parameters(), lr=1e-3)
    started, curve = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        if args.fresh:
            batch = [train[index] for index in range((step - 1) * args.batch_size, step * args.batch_size)]
        else:
            batch = [train[index] for index in torch.randint(0, len(train), (args.batch_size,)).tolist()]
        loss = readout.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            records = [record for i in range(0, len(val), 50) for record in readout.records(val[i : i + 50])]
            metrics = score(records)
            curve.append(
                {
                    "step": step,
                    "seconds": round(time.perf_counter() - started),
                    "loss": round(loss.item(), 3),
                    "val_mIoU": metrics["mIoU"],
                    "val_R1@0.5": metrics["R1@0.5"],
                }
            )
            print(json.dumps(curve[-1]), flush=True)
    print(
        json.dumps(
            {
                "tokens": args.tokens,
                "readout": args.readout,
                "synthetic": settings,
                "render_seconds": round(render_seconds, 1),
                "train_videos": len(train),
                "curve": curve,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
