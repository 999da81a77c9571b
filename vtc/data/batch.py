"""Batch assembly: moment or multiple-choice samples -> one `VideoLMM` batch, for training and for prediction alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vtc.utils.batching import pad_frames

# A multiple-choice sample's fields (`vtc.lmm.answers.choice_fields`, and its circular group): `answer` is the
# target text, which `VideoLMM.forward` learns instead of a window; `answer_with` says whether it is a letter or text.
CHOICE_KEYS = ("question", "options", "answer_index", "answer", "answer_with", "circular_group")
# A task mixture's sample says what it asks (`task`: "moment" or "choice") and its task in the mixture.
TASK_KEYS = ("task", "mixture_task")


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> a `VideoLMM` batch: lists of `frames [T_i, H, W, 3]` and `timestamps [T_i]` (or, from encoded
    samples, `features [B, T, N, D]`, `timestamps [B, T]`, `frame_mask [B, T]` and, where the samples carry it, the
    encoder's `attention [B, T, N]`, padded over frames with 0), `query`, `duration`, `qid`; moment samples'
    `window` (start, end) pairs and ground-truth `windows`; multiple-choice samples' `CHOICE_KEYS` and a task
    mixture's `TASK_KEYS` as lists. Samples of a mixture may differ in their keys: a key that some sample lacks is
    None in that sample's entry (a multiple-choice sample's `window`, a moment sample's `answer`)."""
    if "features" in samples[0]:
        features, frame_mask = pad_frames([sample["features"] for sample in samples])
        timestamps, _ = pad_frames([sample["timestamps"] for sample in samples])
        visual: dict[str, Any] = {"features": features, "frame_mask": frame_mask, "timestamps": timestamps}
        if "attention" in samples[0]:
            visual["attention"] = pad_frames([sample["attention"] for sample in samples])[0]
    else:
        visual = {
            "frames": [sample["frames"] for sample in samples],
            "timestamps": [sample["timestamps"] for sample in samples],
        }
    batch = {
        **visual,
        "query": [sample["query"] for sample in samples],
        "duration": [float(sample["duration"]) for sample in samples],
        "qid": [str(sample["qid"]) for sample in samples],
    }
    windows = [sample.get("window") for sample in samples]
    if any(window is not None for window in windows):
        batch["window"] = [None if window is None else tuple(float(t) for t in window) for window in windows]
        batch["windows"] = [
            None if window is None else sample.get("windows", [list(map(float, window))])
            for sample, window in zip(samples, windows, strict=True)
        ]
    for key in (*CHOICE_KEYS, *TASK_KEYS):
        if any(key in sample for sample in samples):
            batch[key] = [sample.get(key) for sample in samples]
    return batch
