"""The best video-blind answer: the constant window of highest mean IoU with the training windows, predicted for
every test query. A model that reads the video has to beat it."""

from __future__ import annotations

from typing import Any

import numpy as np

from vtc.eval.predict import score
from vtc.world.compare.report import METRIC_KEYS
from vtc.world.source import SyntheticSamples
from vtc.world.synthetic import SyntheticMoments


def best_constant_window(windows: np.ndarray, duration: float, step: float = 0.5) -> tuple[float, float]:
    """Of the windows on a `step`-second grid of `[0, duration]`, the one with the highest mean IoU with the ground
    truth `windows [N, 2]`: the strongest answer that ignores the video."""
    grid = np.arange(0.0, duration + step / 2, step)
    starts, ends = np.meshgrid(grid, grid, indexing="ij")
    starts, ends = starts[ends > starts], ends[ends > starts]  # [C] candidates
    overlap = np.minimum(ends[:, None], windows[None, :, 1]) - np.maximum(starts[:, None], windows[None, :, 0])
    overlap = overlap.clip(min=0.0)
    union = (ends - starts)[:, None] + (windows[:, 1] - windows[:, 0])[None, :] - overlap
    best = int((overlap / union).mean(axis=1).argmax())
    return float(starts[best]), float(ends[best])


def blind_baseline(train: SyntheticMoments, test: SyntheticSamples) -> dict[str, Any]:
    """The best video-blind answer: the constant window of highest mean IoU on the training windows
    (`best_constant_window`), predicted for every test query; a table row (no spread: it has no seed)."""
    windows = np.array([train.window(index) for index in range(len(train))], dtype=np.float64)
    start, end = best_constant_window(windows, train.duration)
    records = [
        {
            "qid": sample["qid"],
            "pred_relevant_windows": [[start, end, 1.0]],
            "relevant_windows": [list(sample["window"])],
        }
        for sample in (test[index] for index in range(len(test)))
    ]
    metrics = score(records)
    row: dict[str, Any] = {"seeds": 1, "llm_tokens": 0, "window": [start, end]}
    for key in (*METRIC_KEYS, "mAP"):
        row[key], row[f"{key}_std"] = metrics[key], 0.0
    return row
