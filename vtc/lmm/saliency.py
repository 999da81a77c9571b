"""Moment-DETR-style saliency on a seq2seq LM's encoder states: a per-frame loss and a window readout.

`SaliencyHead` scores each visual position of the LM encoder's last hidden states; the mean score of a frame's
positions is its logit of lying inside the queried window. Trained with binary cross-entropy against the
ground-truth window (a dense signal that the answer text gives only through attention), it can also answer on its
own: `salient_window` reads the window from the first to the last salient time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SaliencyHead(nn.Linear):
    """A linear score `[..., H] -> [..., 1]` of LM hidden states, read per distinct visual time."""

    def __init__(self, hidden: int) -> None:
        super().__init__(hidden, 1)

    def time_scores(self, hidden: Tensor, times: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per video, its distinct visual times `[T_i]` and their saliency logits `[T_i]` (the mean logit of the
        positions at each time), from the LM encoder's states `[B, L, H]` (visual tokens first in each row, at
        times `[L_i]`)."""
        scores = []
        for row, position_times in zip(hidden, times, strict=True):
            logits = self(row[: len(position_times)]).squeeze(-1)
            unique_times, groups = torch.unique(position_times, return_inverse=True)
            sums = logits.new_zeros(len(unique_times)).index_add(0, groups, logits)
            counts = logits.new_zeros(len(unique_times)).index_add(0, groups, torch.ones_like(logits))
            scores.append((unique_times, sums / counts))
        return scores

    def loss(self, hidden: Tensor, times: list[Tensor], windows: list[tuple[float, float]]) -> Tensor:
        """Binary cross-entropy of per-time saliency on the LM's last hidden states `[B, L, H]`: the mean logit of
        the visual positions of each time (times `[L_i]` per video), 1 inside the ground-truth window, 0 outside
        (Moment-DETR's clip saliency). Averaging over a frame's tokens lets any one of them carry the evidence.
        Returns a scalar."""
        losses = []
        for (unique_times, scores), (start, end) in zip(self.time_scores(hidden, times), windows, strict=True):
            target = ((unique_times >= start) & (unique_times <= end)).to(scores.dtype)
            losses.append(nn.functional.binary_cross_entropy_with_logits(scores, target))
        return torch.stack(losses).mean()


def salient_window(times: Tensor, scores: Tensor, duration: float) -> tuple[float, float]:
    """`(start, end)` seconds from sorted times `[T]` and saliency logits `[T]`: first to last time with a positive
    logit (the best-scored time when none is), widened by half the times' spacing each side, within the video."""
    inside = torch.nonzero(scores > 0).flatten()
    first, last = (int(inside[0]), int(inside[-1])) if len(inside) else (int(scores.argmax()),) * 2
    half = float((times[1:] - times[:-1]).mean()) / 2 if len(times) > 1 else duration / 2
    return max(float(times[first]) - half, 0.0), min(float(times[last]) + half, duration)
