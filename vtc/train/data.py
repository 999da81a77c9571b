"""Training data: the registry of data sources (`files` built in; others, such as the embedded benchmark's
`synthetic`, registered by their package), moment and multiple-choice samples read from files, a resumable sharded
batch order, and the frozen encoder's in-memory feature cache."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from vtc.data.base import LoadReport
from vtc.data.moment import MomentItem, load_moments
from vtc.data.qa import QAItem, load_choices
from vtc.lmm.answers import choice_fields
from vtc.train.config import DataConfig, TrainConfig
from vtc.train.mixture import MIXTURE_TASK

Item = MomentItem | QAItem


def item_targets(item: Item, duration: float, choice_answer: str = "letter") -> dict[str, Any]:
    """What a sample asks of its video (decoded `duration` seconds): a moment's `query`, `window` (the first, the
    training target) and every window as ground truth; a question's `choice_fields` (answered with the option's
    letter or text, `choice_answer`), its `circular_group` and duration (the annotation's, else the decoded one)."""
    if isinstance(item, QAItem):
        fields = choice_fields(item.question, item.options, item.answer, choice_answer)
        return {**fields, "circular_group": item.group, "duration": item.duration or duration}
    windows = [list(window) for window in item.windows]
    return {"query": item.query, "window": item.windows[0], "windows": windows, "duration": item.duration}


class VideoFileSamples(Dataset):
    """Moment or multiple-choice items read from annotation files; each video decoded with `num_frames` frames
    (`item_targets` says what each sample asks)."""

    def __init__(
        self, items: Sequence[Item], num_frames: int, frame_size: int | None, choice_answer: str = "letter"
    ) -> None:
        self.items = list(items)
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.choice_answer = choice_answer

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from vtc.video import load_video

        item = self.items[index]
        clip = load_video(item.video_path, num_frames=self.num_frames, size=self.frame_size)
        visual = {"qid": item.qid, "frames": clip.frames, "timestamps": clip.timestamps.float()}
        return {**visual, **item_targets(item, clip.duration, self.choice_answer)}


SPLITS = ("train", "val", "test")


def split_files(config: DataConfig) -> dict[str, tuple[str, str | None]]:
    """Split name -> (annotation file, durations csv) for each split that has its own file (`train` always)."""
    if config.task == MIXTURE_TASK:
        raise ValueError(
            "data.task 'mixture' is built by the synthetic source (data.source: synthetic); the files source reads "
            "one task per run: set data.task to 'moment' or 'choice'"
        )
    if config.train is None:
        raise ValueError("data.source 'files' needs data.train, the training annotation file")
    if config.val is None and config.val_fraction is None and config.val_count is None:
        raise ValueError(
            "data.source 'files' needs a validation split: data.val (a file), or data.val_fraction / "
            "data.val_count to carve one from the training videos"
        )
    paths = {split: getattr(config, split) for split in SPLITS}
    return {split: (path, config.split_durations(split)) for split, path in paths.items() if path is not None}


def carve_validation(
    items: Sequence[Item], fraction: float | None, count: int | None, seed: int
) -> tuple[list[Item], list[Item]]:
    """`(train, val)` from one training split, by whole videos: `count` videos, or `round(fraction * videos)` (at
    least 1), drawn with `seed` from the sorted video ids go to validation and the rest stay for training, so no
    video is in both; item order is kept; no items give two empty splits. The papers name no validation split:
    this is our protocol."""
    videos = sorted({item.video_id for item in items})
    if (count is None) == (fraction is None):
        raise ValueError(
            f"carving a validation split needs a fraction or a count of the videos, got {fraction=}, {count=}"
        )
    if not videos:
        return [], []
    wanted = count if fraction is None else max(round(fraction * len(videos)), 1)
    if wanted >= len(videos):
        raise ValueError(
            f"carving {wanted} validation videos needs more than the {len(videos)} training videos: lower "
            "data.val_fraction / data.val_count"
        )
    random.Random(seed).shuffle(videos)
    held_out = set(videos[:wanted])
    train = [item for item in items if item.video_id not in held_out]
    return train, [item for item in items if item.video_id in held_out]


def load_split_items(config: DataConfig) -> tuple[dict[str, list[Item]], dict[str, LoadReport]]:
    """Every split's items (moments, or questions when `data.task` is `choice`; the validation split carved from
    training when it has no file) and the load report of each file read."""
    items, reports = {}, {}
    for split, (path, durations) in split_files(config).items():
        if config.task == "choice":
            items[split], reports[split] = load_choices(path, config.video_dir, config.layout)
        else:
            items[split], reports[split] = load_moments(path, durations, config.video_dir)
    if "val" not in items:
        items["train"], items["val"] = carve_validation(
            items["train"], config.val_fraction, config.val_count, config.val_seed
        )
    return {split: items[split] for split in SPLITS if split in items}, reports


def file_splits(config: DataConfig) -> dict[str, VideoFileSamples]:
    """The `files` source's splits (`train`, `val` and, when `data.test` is set, `test`), items without a video
    file dropped; `ValueError` for a split left empty."""
    items, reports = load_split_items(config)
    splits = {}
    for split, loaded in items.items():
        usable = [item for item in loaded if item.video_path is not None]
        if not usable:
            report = reports.get(split, reports["train"])
            hint = "" if config.video_dir is not None else "; data.video_dir is not set"
            raise ValueError(f"data.{split}: no usable item ({report}){hint}")
        splits[split] = VideoFileSamples(usable, config.num_frames, config.frame_size, config.choice_answer)
    return splits


def file_datasets(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The `files` source's train and validation datasets (`file_splits`)."""
    splits = file_splits(config)
    return splits["train"], splits["val"]


CHECK_COUNTS = (
    "read",
    "loaded",
    "clamped",
    "skipped_bad_window",
    "skipped_bad_line",
    "missing_duration",
    "missing_video",
    "missing_video_ids",
)


def check_data(config: DataConfig) -> dict[str, Any]:
    """What every split of a data config holds, without training. For the `files` source: each split's file and
    durations csv, the load counts of `CHECK_COUNTS` (a carved split says `carved_from`), its items and videos, and
    `shared_videos` between each pair of splits (0 when disjoint); `videos_checked` says whether video files were
    looked for (`data.video_dir` set; without it nothing counts as missing). Other sources give each split's size."""
    if config.source != "files":
        sizes = {split: len(data) for split, data in zip(("train", "val"), build_datasets(config), strict=True)}
        return {"source": config.source, "splits": {split: {"items": size} for split, size in sizes.items()}}
    files = split_files(config)
    items, reports = load_split_items(config)
    splits: dict[str, dict[str, Any]] = {}
    for split, loaded in items.items():
        if split in reports:
            counts = asdict(reports[split])
            entry = {
                "file": files[split][0],
                "durations": files[split][1],
                **{key: counts[key] for key in CHECK_COUNTS},
            }
        else:
            entry = {"carved_from": "train"}
        splits[split] = {**entry, "items": len(loaded), "videos": len({item.video_id for item in loaded})}
    videos = {split: {item.video_id for item in loaded} for split, loaded in items.items()}
    shared = {f"{a}/{b}": len(videos[a] & videos[b]) for a, b in itertools.combinations(videos, 2)}
    return {
        "source": "files",
        "videos_checked": config.video_dir is not None,
        "splits": splits,
        "shared_videos": shared,
    }


EncoderHook = Callable[[dict[str, Any], TrainConfig], dict[str, Any]]


@dataclass(frozen=True)
class DataSource:
    """A named source of training samples (`data.source`).

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
