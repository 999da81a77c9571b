"""Feature cache: each video's encoder tokens and frame timestamps in safetensors shards with a JSON index.

Layout of a cache folder: `shard-rank{R}-{S}.safetensors` hold `{video_id}/tokens` `[T, N, D]`,
`{video_id}/timestamps` `[T]` and, from an encoder that `provides_attention` (config `attention: true`), float32
`{video_id}/attention` `[T, N]` (VisionZip's input) for up to `videos_per_shard` videos; `index-rank{R}.json` maps
every video of rank R to its shard and keys. Each rank writes only its own files, so processes launched by
`torchrun` or `accelerate launch` never touch the same file; `FeatureCache` merges all indices on read.

Writes are atomic and ordered: a shard is written to a temporary file, synced and renamed, and only then is the
index rewritten (the same way). A run killed at any point leaves a consistent cache; the next run skips the
videos in any index and rewrites the shard numbers that follow, so it produces the same files as an
uninterrupted run (stray `*.tmp` files of a killed write can be deleted).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from vtc.data.base import VIDEO_EXTENSIONS, locate_video
from vtc.encoders.base import VisionEncoder
from vtc.utils.io import atomic_save_safetensors, atomic_write_text, read_jsonl
from vtc.video import VideoDecodeError, load_video

logger = logging.getLogger(__name__)

INDEX_VERSION = 1
_INDEX_NAME = re.compile(r"index-rank(\d+)\.json")


def index_name(rank: int) -> str:
    return f"index-rank{rank:05d}.json"


def shard_name(rank: int, number: int) -> str:
    return f"shard-rank{rank:05d}-{number:05d}.safetensors"


def rank_and_world_size() -> tuple[int, int]:
    """This process's `(rank, world_size)`: `RANK`/`WORLD_SIZE` (set by torchrun and accelerate launch), else
    `accelerate.PartialState`, which is `(0, 1)` in a single process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


# ---------------------------------------------------------------------------------------------------- listing


@dataclass
class VideoList:
    """Videos to extract, `video_id -> file`, and the entries that named no readable video."""

    videos: dict[str, Path]
    missing: list[str] = field(default_factory=list)


def list_video_directory(directory: str | os.PathLike, pattern: str | None = None) -> VideoList:
    """Video files under `directory` matching the glob `pattern` (default: any known video extension).

    A video's id is its path relative to `directory`, without the extension.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"not a directory: {directory}")
    if pattern is None:
        paths = [path for path in directory.rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS]
    else:
        paths = list(directory.glob(pattern))
    videos: dict[str, Path] = {}
    for path in sorted(path for path in paths if path.is_file()):
        video_id = path.relative_to(directory).with_suffix("").as_posix()
        if video_id in videos:
            raise ValueError(f"two files have the video id {video_id!r}: {videos[video_id]} and {path}")
        videos[video_id] = path
    return VideoList(videos)


def list_annotated_videos(annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None) -> VideoList:
    """The distinct videos of a JSON-lines annotation file.

    Each line names its video in `video` (a file path, or an id), else `vid` or `video_id` (an id); paths and
    ids are resolved under `video_dir` (default: the annotation file's folder), ids with any known extension.
    Lines naming no video, or a video that is not found, are counted in `missing`.
    """
    annotations = Path(annotations)
    root = Path(video_dir) if video_dir is not None else annotations.parent
    videos: dict[str, Path] = {}
    missing: list[str] = []
    for line_number, record in enumerate(read_jsonl(annotations), start=1):
        name = record.get("video") or record.get("vid") or record.get("video_id")
        if not isinstance(name, str) or not name:
            missing.append(f"{annotations}:{line_number}: no `video`, `vid` or `video_id` field")
            continue
        video_id = Path(name).with_suffix("").as_posix() if Path(name).suffix else name
        if video_id in videos:
            continue
        path = locate_video(root, name, name if Path(name).suffix else None)
        if path is None:
            missing.append(f"{annotations}:{line_number}: video {name!r} not found under {root}")
            continue
        videos[video_id] = path
    return VideoList(videos, missing)


def split_for_rank(video_ids: list[str], rank: int, world_size: int) -> list[str]:
    """This rank's disjoint share of the sorted `video_ids` (round-robin)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return sorted(video_ids)[rank::world_size]


# ---------------------------------------------------------------------------------------------------- index


def read_index(path: Path) -> dict[str, Any]:
    """One rank's index; a `ValueError` naming the file when it is corrupt."""
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"feature cache index {path} is unreadable: {error}") from error
    if not isinstance(index, dict) or index.get("version") != INDEX_VERSION or "videos" not in index:
        raise ValueError(f"feature cache index {path} is not a version-{INDEX_VERSION} index")
    return index


def read_all_indices(directory: Path) -> dict[int, dict[str, Any]]:
    """`rank -> index` for every `index-rank*.json` in `directory`."""
    indices = {}
    for path in sorted(directory.glob("index-rank*.json")):
        match = _INDEX_NAME.fullmatch(path.name)
        if match:
            indices[int(match.group(1))] = read_index(path)
    return indices


def check_settings(directory: Path, indices: dict[int, dict[str, Any]], settings: dict[str, Any]) -> None:
    """Refuse to mix features made with other settings (encoder, sampling) into one cache."""
    for rank, index in indices.items():
        if index.get("settings") != settings:
            raise ValueError(
                f"{directory / index_name(rank)} was made with settings {index.get('settings')}, "
                f"not {settings}; extract into another folder"
            )


# ---------------------------------------------------------------------------------------------------- writing


@dataclass
class ExtractionReport:
    """What one extraction run did on this rank."""

    rank: int
    world_size: int
    assigned: int = 0
    extracted: int = 0
    already_cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = (
            f"rank {self.rank}/{self.world_size}: {self.extracted} extracted, {self.already_cached} already "
            f"cached, {len(self.failed)} failed of {self.assigned} assigned"
        )
        if self.failed:
            first = next(iter(self.failed.items()))
            text += f" (e.g. {first[0]}: {first[1]})"
        return text


def encode_video(
    encoder: VisionEncoder, path: Path, sampling: dict[str, Any], dtype: torch.dtype
) -> tuple[dict[str, Tensor], float]:
    """Decode `path` with `load_video(**sampling)` and encode it: `({"tokens": [T, N, D] in dtype, "timestamps": [T]},
    duration)`, with the float32 `"attention": [T, N]` too when the encoder `provides_attention`."""
    clip = load_video(path, **sampling)
    with torch.inference_mode():
        if encoder.provides_attention:
            tokens, attention = encoder.encode_with_attention(clip.frames)
        else:
            tokens, attention = encoder.encode(clip.frames), None
    frames = clip.frames.shape[0]
    if tokens.dim() != 3 or tokens.shape[0] != frames:
        raise ValueError(f"encoder must return [T={frames}, N, D] tokens, got shape {tuple(tokens.shape)}")
    tensors = {"tokens": tokens.detach().to("cpu", dtype).contiguous(), "timestamps": clip.timestamps.float()}
    if attention is not None:
        tensors["attention"] = attention.detach().to("cpu", torch.float32).contiguous()
    return tensors, clip.duration


def extract_features(
    videos: dict[str, Path],
    encoder: VisionEncoder,
    directory: str | os.PathLike,
    sampling: dict[str, Any] | None = None,
    videos_per_shard: int = 16,
    dtype: torch.dtype = torch.float32,
    rank: int | None = None,
    world_size: int | None = None,
    settings: dict[str, Any] | None = None,
) -> ExtractionReport:
    """Encode this rank's share of `videos` into the cache at `directory`, skipping videos already cached.

    Args:
        videos: `video_id -> file`.
        encoder: any `VisionEncoder`.
        directory: the cache folder (created).
        sampling: `load_video` arguments (`num_frames`, `fps`, `size`, ...).
        videos_per_shard: videos per safetensors shard.
        dtype: dtype the tokens are stored in.
        rank, world_size: this process's share; from the environment when None (`rank_and_world_size`).
        settings: what made the features (encoder, sampling, ...); stored in the index, and a cache made with
            other settings is refused. Defaults to the sampling, dtype and encoder class.

    Videos that fail to decode are counted in the report and skipped; any other error stops the run, and a
    rerun continues from the last shard written.
    """
    if videos_per_shard < 1:
        raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    if rank is None or world_size is None:
        rank, world_size = rank_and_world_size()
    sampling = dict(sampling or {})
    if settings is None:
        settings = {"encoder": type(encoder).__name__, "sampling": sampling, "dtype": str(dtype)}
        settings.update({"attention": True} if encoder.provides_attention else {})
    settings = json.loads(json.dumps(settings))  # plain JSON data, as read back from the index
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    indices = read_all_indices(directory)
    check_settings(directory, indices, settings)
    cached = {video_id for index in indices.values() for video_id in index["videos"]}
    index = indices.get(rank) or {"version": INDEX_VERSION, "settings": settings, "videos": {}}
    next_shard = 1 + max((entry["shard_number"] for entry in index["videos"].values()), default=-1)

    report = ExtractionReport(rank=rank, world_size=world_size)
    assigned = split_for_rank(list(videos), rank, world_size)
    report.assigned = len(assigned)
    pending: dict[str, Tensor] = {}
    entries: dict[str, dict[str, Any]] = {}
    for video_id in assigned:
        if video_id in cached:
            report.already_cached += 1
            continue
        try:
            tensors, duration = encode_video(encoder, videos[video_id], sampling, dtype)
        except VideoDecodeError as error:
            report.failed[video_id] = error.reason
            logger.warning("skipping %s: %s", video_id, error)
            continue
        pending.update({f"{video_id}/{name}": tensor for name, tensor in tensors.items()})
        entries[video_id] = {"frames": tensors["tokens"].shape[0], "duration": duration}
        entries[video_id].update({"attention": f"{video_id}/attention"} if "attention" in tensors else {})
        report.extracted += 1
        if len(entries) == videos_per_shard:
            write_shard(directory, rank, next_shard, pending, entries, index)
            pending, entries, next_shard = {}, {}, next_shard + 1
    if entries:
        write_shard(directory, rank, next_shard, pending, entries, index)
    return report


def write_shard(
    directory: Path,
    rank: int,
    number: int,
    tensors: dict[str, Tensor],
    entries: dict[str, dict[str, Any]],
    index: dict[str, Any],
) -> None:
    """Write one shard durably, then add its videos to `index` and write the index (both atomically)."""
    name = shard_name(rank, number)
    atomic_save_safetensors(tensors, directory / name)
    for video_id, entry in entries.items():
        index["videos"][video_id] = {
            "shard": name,
            "shard_number": number,
            "tokens": f"{video_id}/tokens",
            "timestamps": f"{video_id}/timestamps",
            **entry,
        }
    atomic_write_text(directory / index_name(rank), json.dumps(index, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------------------------- reading


class FeatureCache:
    """Read a feature cache: `cache[video_id] -> (tokens [T, N, D], timestamps [T])`, `cache.load(video_id)` (a
    sample with the attention too where stored), `len`, `in`.

    The indices of all ranks are merged; a video id in two indices is an error.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ValueError(f"no feature cache at {self.directory}")
        self.entries: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] | None = None
        for rank, index in read_all_indices(self.directory).items():
            self.settings = self.settings or index.get("settings")
            for video_id, entry in index["videos"].items():
                if video_id in self.entries:
                    raise ValueError(f"video {video_id!r} is in two indices of {self.directory} (rank {rank})")
                self.entries[video_id] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.entries

    def __iter__(self):
        return iter(sorted(self.entries))

    def __getitem__(self, video_id: str) -> tuple[Tensor, Tensor]:
        sample = self.load(video_id)
        return sample["features"], sample["timestamps"]

    def load(self, video_id: str) -> dict[str, Any]:
        """One video as a sample: `features [T, N, D]`, `timestamps [T]`, `duration` (seconds) and, where stored,
        `attention [T, N]` (for a compressor that uses it); `VideoLMM.predict` takes the sample as it is."""
        if video_id not in self.entries:
            raise KeyError(f"video {video_id!r} is not in the feature cache at {self.directory}")
        entry = self.entries[video_id]
        path = self.directory / entry["shard"]
        keys = {"features": entry["tokens"], "timestamps": entry["timestamps"], "attention": entry.get("attention")}
        try:
            with safe_open(str(path), framework="pt") as shard:
                sample = {name: shard.get_tensor(key) for name, key in keys.items() if key is not None}
        except (OSError, SafetensorError) as error:
            raise ValueError(f"feature cache shard {path} is unreadable for {video_id!r}: {error}") from error
        return {**sample, "duration": entry["duration"]}
