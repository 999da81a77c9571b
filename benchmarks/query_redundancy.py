"""How much of a frame's Q-Former tokens a random few of them carry: why random dropping keeps up with the trained
compressors on the shipped base.

On the base's Q-Former tokens of `--videos` held-out test videos of the default benchmark, for `s` of the 32 queries
of every frame (`--draws` random draws of which `s`, and the mean of all 32 as one token): the share of the variance
of all 32 queries that a least-squares linear map from the `s` kept ones explains on held-out frames (fit on the
first half of the videos, scored on the second). High shares mean the queries are redundant summaries of the whole
frame, so any few of them keep what the language model can read.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/query_redundancy.py [--base bases/world-qformer] [--json]
"""

from __future__ import annotations

import argparse
import json

import torch
from frame_coverage import base_queries
from torch import Tensor

from vtc.world.compare.presets import SHIPPED_BASE


def explained_variance(inputs: Tensor, targets: Tensor, split: int) -> float:
    """Held-out R^2 of the least-squares map (with bias) from `inputs [M, a]` to `targets [M, b]`, fit on the first
    `split` rows and scored on the rest."""
    design = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=inputs.dtype)], dim=1)
    weights = torch.linalg.lstsq(design[:split], targets[:split]).solution
    residual = targets[split:] - design[split:] @ weights
    total = targets[split:] - targets[:split].mean(dim=0)
    return float(1 - residual.pow(2).sum() / total.pow(2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(SHIPPED_BASE))
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--kept", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    queries = base_queries(args.base, args.videos)[0].double()  # [videos, frames, 32, D]
    videos, frames, per_frame, width = queries.shape
    targets = queries.reshape(videos * frames, per_frame * width)
    split = (videos // 2) * frames  # frames of the first half of the videos
    generator = torch.Generator().manual_seed(0)
    rows = [{"kept": "mean of all", "r2": [explained_variance(queries.mean(dim=2).reshape(-1, width), targets, split)]}]
    for kept in args.kept:
        draws = [torch.randperm(per_frame, generator=generator)[:kept] for _ in range(args.draws)]
        rows.append(
            {
                "kept": kept,
                "r2": [
                    explained_variance(queries[:, :, draw].reshape(videos * frames, -1), targets, split)
                    for draw in draws
                ],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{videos} test videos, {frames} frames x {per_frame} Q-Former tokens of width {width}")
    print("| queries kept per frame | variance of all 32 explained (held-out R^2; mean, least over draws) |")
    print("|---|---|")
    for row in rows:
        print(f"| {row['kept']} | {sum(row['r2']) / len(row['r2']):.3f}, {min(row['r2']):.3f} |")


if __name__ == "__main__":
    main()
