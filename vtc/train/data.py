"""Training data: moment-retrieval samples (synthetic or from files), a resumable sharded batch order, collation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vtc.data.moment import load_moments
from vtc.data.synthetic import COLOURS, EVENTS, SHAPES, SyntheticMoments
from vtc.train.config import DataConfig
from vtc.utils.batching import pad_frames

SYNTHETIC_WORDS = (*SHAPES, *COLOURS, *EVENTS, "turns", "Query:", "When does it happen?", "Video:")


def uniform_frame_indices(total: int, count: int) -> np.ndarray:
    """Indices of the frame at the middle of each of `count` equal segments of `total` frames."""
    return np.floor((np.arange(count) + 0.5) * total / count).astype(np.int64).clip(0, total - 1)


class SyntheticSamples(Dataset):
    """`SyntheticMoments` items with `num_frames` frames sampled uniformly: `frames [num_frames, H, W, 3]` uint8,
    `timestamps [num_frames]`, `query`, `window (start, end)`, `duration`, `qid`. With `cache`, each sample is
    rendered once and kept in memory (num_frames * H * W * 3 bytes each)."""

    def __init__(self, moments: SyntheticMoments, num_frames: int, cache: bool = False) -> None:
        self.moments = moments
        self.indices = uniform_frame_indices(moments.num_frames, num_frames)
        self.cache: dict[int, dict[str, Any]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.moments)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.cache is None:
            return self.sample(index)
        if index not in self.cache:
            self.cache[index] = self.sample(index)
        return self.cache[index]

    def sample(self, index: int) -> dict[str, Any]:
        """Render the `num_frames` sampled frames of sample `index`."""
        video = self.moments.render(index, self.indices)
        return {
            "qid": video.video_id,
            "frames": torch.from_numpy(video.frames),
            "timestamps": torch.from_numpy(video.timestamps),
            "query": video.query,
            "window": video.window,
            "duration": video.duration,
        }


def synthetic_test_samples(data: DataConfig, num_videos: int, cache: bool = False) -> SyntheticSamples:
    """The held-out synthetic test split of a data config: `num_videos` videos with a seed of their own
    (`val_seed + 1`, so neither the training nor the validation split), `num_frames` frames each."""
    moments = SyntheticMoments(num_videos=num_videos, **{**data.synthetic, "seed": data.val_seed + 1})
    return SyntheticSamples(moments, data.num_frames, cache)


class VideoFileSamples(Dataset):
    """Moment items read from annotation files; each video decoded with `num_frames` frames (first window kept
    as the training target; every window kept as ground truth)."""

    def __init__(self, items: Sequence[Any], num_frames: int, frame_size: int | None) -> None:
        self.items = list(items)
        self.num_frames = num_frames
        self.frame_size = frame_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from vtc.video import load_video

        item = self.items[index]
        clip = load_video(item.video_path, num_frames=self.num_frames, size=self.frame_size)
        return {
            "qid": item.qid,
            "frames": clip.frames,
            "timestamps": clip.timestamps.float(),
            "query": item.query,
            "window": item.windows[0],
            "windows": [list(window) for window in item.windows],
            "duration": item.duration,
        }


def build_datasets(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The train and validation datasets of a data config."""
    if config.source == "synthetic":
        train = SyntheticMoments(num_videos=config.num_train, **config.synthetic)
        val = SyntheticMoments(num_videos=config.num_val, **{**config.synthetic, "seed": config.val_seed})
        return (
            SyntheticSamples(train, config.num_frames, config.cache_in_memory),
            SyntheticSamples(val, config.num_frames, config.cache_in_memory),
        )
    if config.source == "files":
        if config.train is None or config.val is None:
            raise ValueError("data.source 'files' needs data.train and data.val annotation paths")
        splits = []
        for path in (config.train, config.val):
            items, report = load_moments(path, config.durations, config.video_dir)
            items = [item for item in items if item.video_path is not None]
            if not items:
                raise ValueError(f"{path}: no usable item ({report})")
            splits.append(VideoFileSamples(items, config.num_frames, config.frame_size))
        return splits[0], splits[1]
    raise ValueError(f"data.source must be 'synthetic' or 'files', got {config.source!r}")


@dataclass
class BatchOrder:
    """The data order: a fresh permutation per epoch from `(seed, epoch)`; `position` counts the global batches
    already taken this epoch. Rank `r` of `world` takes rows `[r * B, (r + 1) * B)` of each global batch of
    `world * B` samples (the incomplete last global batch of an epoch is dropped), so the order does not depend on
    how many steps ran in this process and resumes exactly from `(epoch, position)`."""

    num_samples: int
    batch_size: int
    seed: int
    world_size: int = 1
    rank: int = 0
    epoch: int = 0
    position: int = 0

    def __post_init__(self) -> None:
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_samples} training samples cannot fill one global batch of "
                f"{self.batch_size} x {self.world_size} processes"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // (self.batch_size * self.world_size)

    def next_indices(self) -> list[int]:
        """This rank's sample indices of the next batch (advancing the position, and the epoch when done)."""
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator)
        start = (self.position * self.world_size + self.rank) * self.batch_size
        self.position += 1
        return order[start : start + self.batch_size].tolist()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"checkpoint data order has seed {state['seed']}, this run {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


class EncodedSamples(Dataset):
    """A dataset's samples with `frames` replaced by the frozen `encoder`'s `features [T, N, D]`, each video
    encoded once and kept in memory (T * N * D floats each): the frozen, cached stage-1 encoder of the papers.
    Runs that share the same data and the same frozen encoder weights may share `cache` (see `features_key`)."""

    def __init__(self, samples: Dataset, encoder: torch.nn.Module, cache: dict[int, dict[str, Any]] | None = None):
        self.samples, self.encoder = samples, encoder
        self.cache: dict[int, dict[str, Any]] = {} if cache is None else cache

    def __len__(self) -> int:
        return len(self.samples)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index not in self.cache:
            sample = dict(self.samples[index])
            with torch.no_grad():
                sample["features"] = self.encoder.encode(sample.pop("frames")).cpu()
            self.cache[index] = sample
        return self.cache[index]


def features_key(split: str, encoder_config: dict[str, Any], data: DataConfig) -> str | None:
    """What determines a split's encoded features: the split, the encoder config and the data config. Only an
    encoder whose config names its weights file (`path`) gets a key (a random or LM-bundled one may differ between
    runs); runs with equal keys may share one `EncodedSamples` cache."""
    if "path" not in encoder_config:
        return None
    return json.dumps({"split": split, "encoder": encoder_config, "data": asdict(data)}, sort_keys=True, default=str)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> a `VideoLMM` batch: lists of `frames [T_i, H, W, 3]` and `timestamps [T_i]` (or, from
    `EncodedSamples`, `features [B, T, N, D]`, `timestamps [B, T]` and `frame_mask [B, T]`, padded over frames),
    `query`, `window` (start, end) pairs, `duration`, `qid` and ground-truth `windows`."""
    if "features" in samples[0]:
        features, frame_mask = pad_frames([sample["features"] for sample in samples])
        timestamps, _ = pad_frames([sample["timestamps"] for sample in samples])
        visual: dict[str, Any] = {"features": features, "frame_mask": frame_mask, "timestamps": timestamps}
    else:
        visual = {
            "frames": [sample["frames"] for sample in samples],
            "timestamps": [sample["timestamps"] for sample in samples],
        }
    return {
        **visual,
        "query": [sample["query"] for sample in samples],
        "window": [tuple(float(t) for t in sample["window"]) for sample in samples],
        "windows": [sample.get("windows", [list(map(float, sample["window"]))]) for sample in samples],
        "duration": [float(sample["duration"]) for sample in samples],
        "qid": [str(sample["qid"]) for sample in samples],
    }
