"""The `synthetic` data source: `SyntheticMoments` videos as training samples of `num_frames` uniformly sampled
frames (moment samples, multiple-choice samples of the `choice` and `needle` variants with `data.task: choice`, or
a mixture of the variants' tasks with `data.task: mixture`), the words of their queries (a tiny language model's
vocabulary), the held-out test split, and the pre-training of a `scene` encoder that a config names without
weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vtc.lmm.answers import choice_fields
from vtc.train.config import TASKS, DataConfig, TrainConfig
from vtc.train.data import DataSource
from vtc.train.mixture import MIXTURE_TASK, mixture_counts
from vtc.utils.checks import check_choice
from vtc.world.pretrain import DEFAULT_PRETRAIN_STEPS, cached_scene_encoder
from vtc.world.raster import COLOURS, SHAPES
from vtc.world.scene_encoder import DEFAULT_WIDTH
from vtc.world.synthetic import VARIANTS, SyntheticMoments
from vtc.world.tracks import EVENTS

SYNTHETIC_WORDS = (*SHAPES, *COLOURS, *EVENTS, "turns")  # the tiny tokenizer learns the prompt words itself


def uniform_frame_indices(total: int, count: int) -> np.ndarray:
    """Indices of the frame at the middle of each of `count` equal segments of `total` frames."""
    return np.floor((np.arange(count) + 0.5) * total / count).astype(np.int64).clip(0, total - 1)


class SyntheticSamples(Dataset):
    """`SyntheticMoments` items with `num_frames` frames sampled uniformly: `frames [num_frames, H, W, 3]` uint8,
    `timestamps [num_frames]`, `duration`, `qid`, and what the `task` asks: a moment's `query` and `window (start,
    end)`, or (`task="choice"`, the `choice` and `needle` variants) a question's `choice_fields`, answered with the
    option's letter or text (`choice_answer`). With `cache`, each sample is rendered once and kept in memory
    (num_frames * H * W * 3 bytes each)."""

    def __init__(
        self,
        moments: SyntheticMoments,
        num_frames: int,
        cache: bool = False,
        task: str = "moment",
        choice_answer: str = "letter",
    ) -> None:
        if task == "choice" and moments.variant == "moment":
            raise ValueError(
                "data.task 'choice' asks multiple-choice questions, which the synthetic 'moment' variant has none "
                "of: set data.synthetic.variant to 'choice' or 'needle'"
            )
        self.moments, self.task = moments, check_choice("task", task, TASKS)
        self.choice_answer = choice_answer
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
        visual = {
            "qid": video.video_id,
            "frames": torch.from_numpy(video.frames),
            "timestamps": torch.from_numpy(video.timestamps),
            "duration": video.duration,
        }
        if self.task == "choice":
            return {**visual, **choice_fields(video.question, video.options, video.answer, self.choice_answer)}
        return {**visual, "query": video.query, "window": video.window}


def variant_task(variant: str) -> str:
    """What a variant's samples ask in a task mixture: `moment` for the `moment` variant, else `choice`."""
    return "moment" if check_choice("mixture task", variant, VARIANTS) == "moment" else "choice"


class MixtureSamples(Dataset):
    """A task mixture's samples (`data.task: mixture`): each task of `mixture` is a synthetic variant (`moment`,
    `choice`, `needle`) with its share. Of the `num_videos` indices of one seed, each task gets a block of
    consecutive ones, its exact share (`mixture_counts`, blocks in the mixture's order), rendered by its variant's
    generator and asked as `variant_task` says; so no video is asked two tasks, and a split is a pure function of
    the settings and the seed. A sample is its `SyntheticSamples` sample with `task` (what it asks) and
    `mixture_task` (the variant). `synthetic` holds the `SyntheticMoments` settings (without `variant`);
    `choice_answer` says whether questions are answered with the option's letter or text."""

    def __init__(
        self,
        mixture: dict[str, float],
        num_videos: int,
        synthetic: dict[str, Any],
        num_frames: int,
        cache: bool,
        choice_answer: str = "letter",
    ) -> None:
        if "variant" in synthetic:
            raise ValueError(
                f"data.synthetic.variant is set ({synthetic['variant']!r}) but data.task 'mixture' takes each task's "
                "variant from data.mixture: remove it"
            )
        unknown = sorted(set(mixture) - set(VARIANTS))
        if unknown:
            raise ValueError(f"data.mixture names {unknown}: the synthetic tasks are its variants {VARIANTS}")
        counts = mixture_counts(mixture, num_videos)
        starved = [name for name, count in counts.items() if mixture[name] > 0 and count == 0]
        if starved:
            raise ValueError(
                f"{num_videos} videos leave the mixture's tasks {starved} without a sample: raise the split's size "
                "(data.num_train, data.num_val, the test videos) or their shares"
            )
        self.num_videos, end = num_videos, 0
        self.blocks: list[tuple[int, str, SyntheticSamples]] = []  # (end of the block, task, its samples)
        for name, count in counts.items():
            if count:
                moments = SyntheticMoments(num_videos=num_videos, **{**synthetic, "variant": name})
                end += count
                samples = SyntheticSamples(moments, num_frames, cache, variant_task(name), choice_answer)
                self.blocks.append((end, name, samples))

    def __len__(self) -> int:
        return self.num_videos

    def part(self, index: int) -> tuple[str, SyntheticSamples]:
        """The task of sample `index` and its variant's samples, without rendering it."""
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} samples")
        return next((name, samples) for end, name, samples in self.blocks if index < end)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, samples = self.part(index)
        return {**samples[index], "task": samples.task, "mixture_task": name}


def synthetic_split(
    data: DataConfig, num_videos: int, seed: int | None, cache: bool
) -> SyntheticSamples | MixtureSamples:
    """`num_videos` samples of a data config's task (`seed` replacing `synthetic.seed` when given)."""
    settings = {**data.synthetic, **({} if seed is None else {"seed": seed})}
    if data.task == MIXTURE_TASK:
        return MixtureSamples(data.mixture, num_videos, settings, data.num_frames, cache, data.choice_answer)
    moments = SyntheticMoments(num_videos=num_videos, **settings)
    return SyntheticSamples(moments, data.num_frames, cache, data.task, data.choice_answer)


def synthetic_datasets(config: DataConfig) -> tuple[Dataset, Dataset]:
    """The train (seed `synthetic.seed`) and validation (seed `val_seed`) splits of a data config."""
    return (
        synthetic_split(config, config.num_train, None, config.cache_in_memory),
        synthetic_split(config, config.num_val, config.val_seed, config.cache_in_memory),
    )


def synthetic_test_samples(data: DataConfig, num_videos: int, cache: bool = False) -> SyntheticSamples | MixtureSamples:
    """The held-out synthetic test split of a data config: `num_videos` videos with a seed of their own
    (`val_seed + 1`, so neither the training nor the validation split), `num_frames` frames each."""
    return synthetic_split(data, num_videos, data.val_seed + 1, cache)


def pretrained_scene_encoder(encoder: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """A `scene` or `patch` encoder config without a weights `path` gets its segmenter pre-trained on the run's
    synthetic settings (`pretrain_steps`, default `DEFAULT_PRETRAIN_STEPS`), trained once and cached in
    `run.cache_dir` (both types share the weights); any other encoder config, and any encoder of a run that adapts
    from a base (`model.init_from`: the base holds its encoder's weights), is returned as it is."""
    if encoder.get("type") not in ("scene", "patch") or "path" in encoder or config.model.init_from is not None:
        return encoder
    options = dict(encoder)
    steps = int(options.pop("pretrain_steps", DEFAULT_PRETRAIN_STEPS))
    width = int(options.get("width", DEFAULT_WIDTH))
    path, _ = cached_scene_encoder(config.run.cache_dir, config.data.synthetic, width, steps)
    return {**options, "path": str(path.resolve())}


SYNTHETIC_SOURCE = DataSource(synthetic_datasets, SYNTHETIC_WORDS, pretrained_scene_encoder)
