"""What a linear probe reads of the frozen `patch` encoder's tokens: colour, shape and grid position per cell.

Tokens of held-out synthetic videos (a seed of their own) are labelled from the renderer's per-pixel classes: a
cell's object is the class covering most of its pixels when it covers at least `--min-share` of the cell, else
background. One multinomial logistic regression per target (colour: 6 + background, shape: 4 + background, row,
column) is fitted on the tokens of `--train-videos` videos and scored on `--test-videos` others; colour and shape
accuracy is reported over all cells and over the cells holding an object.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/patch_probe.py [--weights W.safetensors] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import Tensor, nn

from vtc.world.patch_encoder import PatchEncoder, cell_classes
from vtc.world.pretrain import cached_scene_encoder
from vtc.world.raster import SHAPES
from vtc.world.synthetic import SyntheticMoments

PROBE_SEED = 3_000_017  # videos neither the segmenter's pre-training nor any benchmark split uses


def tokens_and_targets(
    encoder: PatchEncoder, moments: SyntheticMoments, indices: range, min_share: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Tokens `[M, D]` of every frame of videos `indices` and their targets (colour, shape, row, column) `[M]`."""
    tokens, classes = [], []
    for index in indices:
        video = moments.render(index, labels=True)
        with torch.no_grad():
            tokens.append(encoder.encode(torch.from_numpy(video.frames)).flatten(0, 1))
        classes.append(cell_classes(video.labels, encoder.grid, min_share).flatten())
    cls = torch.cat(classes)
    rows, cols = encoder.grid
    cells = torch.arange(rows * cols).repeat(len(cls) // (rows * cols))
    colour = torch.where(cls > 0, (cls - 1) // len(SHAPES) + 1, 0)
    shape = torch.where(cls > 0, (cls - 1) % len(SHAPES) + 1, 0)
    return torch.cat(tokens), {"colour": colour, "shape": shape, "row": cells // cols, "column": cells % cols}


def fit_probe(features: Tensor, targets: Tensor, steps: int = 300) -> nn.Linear:
    """A linear classifier fitted by full-batch L-BFGS on standardised features (cross-entropy)."""
    probe = nn.Linear(features.shape[1], int(targets.max()) + 1)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(probe(features), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="segmenter weights (default: pre-trained into --cache-dir)")
    parser.add_argument("--cache-dir", default="runs/cache")
    parser.add_argument("--grid", type=int, default=10)
    parser.add_argument("--train-videos", type=int, default=24)
    parser.add_argument("--test-videos", type=int, default=12)
    parser.add_argument("--min-share", type=float, default=0.25, help="object share that labels a cell")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    moments = SyntheticMoments(num_videos=args.train_videos + args.test_videos, seed=PROBE_SEED)
    weights = args.weights
    if weights is None:
        settings = {k: getattr(moments, k) for k in ("duration", "fps", "num_distractors", "event_length")}
        weights = str(cached_scene_encoder(args.cache_dir, {**settings, "frame_size": moments.height})[0])
    encoder = PatchEncoder(args.grid, path=weights).eval()
    train_x, train_y = tokens_and_targets(encoder, moments, range(args.train_videos), args.min_share)
    test_x, test_y = tokens_and_targets(encoder, moments, range(args.train_videos, len(moments)), args.min_share)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    report: dict[str, float | int] = {"test_tokens": len(test_x), "object_cells": int((test_y["colour"] > 0).sum())}
    for name, targets in train_y.items():
        with torch.no_grad():
            predicted = fit_probe(train_x, targets)(test_x).argmax(dim=1)
        right = predicted == test_y[name]
        report[f"{name}_accuracy"] = round(right.float().mean().item() * 100, 2)
        if name in ("colour", "shape"):
            report[f"{name}_accuracy_object_cells"] = round(right[test_y[name] > 0].float().mean().item() * 100, 2)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<32} {value}")


if __name__ == "__main__":
    main()
