"""Training data: the registry of data sources (`files` built in; others, such as the embedded benchmark's
`synthetic`, registered by their package), moment samples read from files, a resumable sharded batch order, and the
frozen encoder's in-memory feature cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from vtc.data.moment import load_moments
from vtc.train.config import DataConfig, TrainConfig


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


def file_datasets(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The `files` source: `train` / `val` annotation files read with `load_moments`, items without a video
    dropped."""
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


EncoderHook = Callable[[dict[str, Any], TrainConfig], dict[str, Any]]


@dataclass(frozen=True)
class DataSource:
    """A named source of moment samples (`data.source`).

    `build(config)` gives the train and validation datasets of a data config; `words` are the words its queries and
    prompts use (added to a tiny language model's vocabulary); `complete_encoder(encoder, config)`, when set, fills
    in an encoder config before the model is built (e.g. pre-trains weights that the config does not name, once,
    cached in `run.cache_dir`): it must return the same config when called again, as every process calls it.
    """

    build: Callable[[DataConfig], tuple[Dataset, Dataset]]
    words: tuple[str, ...] = ()
    complete_encoder: EncoderHook | None = None


DATA_SOURCES: dict[str, DataSource] = {"files": DataSource(file_datasets)}


def register_data_source(name: str, source: DataSource) -> None:
    """Make `source` the data source `name` (`data.source: name`); a name is registered once."""
    if DATA_SOURCES.get(name, source) is not source:
        raise ValueError(f"a data source named {name!r} is already registered")
    DATA_SOURCES[name] = source


def data_source(name: str) -> DataSource:
    """The registered data source `name`; `ValueError` naming the registered ones otherwise."""
    if name not in DATA_SOURCES:
        raise ValueError(
            f"data.source must be one of {sorted(DATA_SOURCES)}, got {name!r} (a package registers its sources when "
            "imported: `import vtc.world` registers the embedded benchmark's `synthetic` source)"
        )
    return DATA_SOURCES[name]


def build_datasets(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The train and validation datasets of a data config, from its registered source."""
    return data_source(config.source).build(config)


def complete_encoder(encoder: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """`encoder` completed by the data source's `complete_encoder` hook (unchanged when it has none)."""
    hook = data_source(config.data.source).complete_encoder
    return dict(encoder) if hook is None else hook(dict(encoder), config)


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
    """A dataset's samples with `frames` replaced by the frozen `encoder`'s `features [T, N, D]` (and its
    `attention [T, N]` when the encoder `provides_attention`), each video encoded once and kept in memory (T * N * D
    floats each): the frozen, cached stage-1 encoder of the papers. Runs that share the same data and the same
    frozen encoder weights may share `cache` (see `features_key`)."""

    def __init__(self, samples: Dataset, encoder: torch.nn.Module, cache: dict[int, dict[str, Any]] | None = None):
        self.samples, self.encoder = samples, encoder
        self.cache: dict[int, dict[str, Any]] = {} if cache is None else cache

    def __len__(self) -> int:
        return len(self.samples)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index not in self.cache:
            sample = dict(self.samples[index])
            frames = sample.pop("frames")
            with torch.no_grad():
                if getattr(self.encoder, "provides_attention", False):
                    features, attention = self.encoder.encode_with_attention(frames)
                    sample["attention"] = attention.cpu()
                else:
                    features = self.encoder.encode(frames)
            sample["features"] = features.cpu()
            self.cache[index] = sample
        return self.cache[index]


def features_key(split: str, encoder_config: dict[str, Any], data: DataConfig) -> str | None:
    """What determines a split's encoded features: the split, the encoder config and the data config. Only an
    encoder whose config names its weights file (`path`) gets a key (a random or LM-bundled one may differ between
    runs); runs with equal keys may share one `EncodedSamples` cache."""
    if "path" not in encoder_config:
        return None
    return json.dumps({"split": split, "encoder": encoder_config, "data": asdict(data)}, sort_keys=True, default=str)
