"""Which frames a compressor leaves to the language model: frame coverage of each method on the base's tokens.

The shipped base reads time from the frames of its tokens (a time token before each frame's tokens), so a method
that drops whole frames takes the event's time away. For each method at each budget (the budget solver's config),
on the Q-Former tokens of `--videos` held-out test videos of the default benchmark: the mean and least number of
the 8 frames that keep at least one token, and the share of kept tokens whose frame lies inside the query's window.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/frame_coverage.py [--base bases/world-qformer] [--json]
"""

from __future__ import annotations

import argparse
import json

import torch

from vtc.budget import configure
from vtc.compressors import CompressedTokens, create_compressor
from vtc.data.batch import collate
from vtc.lmm.base_model import base_model_config, load_base_weights
from vtc.lmm.batches import batch_visuals
from vtc.lmm.model import build_model
from vtc.train.config import load_train_config
from vtc.world.compare.presets import PRESETS, SHIPPED_BASE
from vtc.world.source import synthetic_test_samples

METHODS = ["random", "uniform", "tome", "dycoke", "vidcom2", "fastvid", "holitom", "prunevid", "divprune"]


def coverage(out: CompressedTokens, windows: torch.Tensor) -> dict[str, float]:
    """Frames kept per video (mean, least) and the share of kept tokens inside each video's `windows [B, 2]`."""
    frames = out.frame_index.masked_fill(~out.mask, -1)
    covered = [len(set(row.tolist()) - {-1}) for row in frames]
    inside = (out.timestamps >= windows[:, :1]) & (out.timestamps <= windows[:, 1:]) & out.mask
    return {
        "frames_mean": sum(covered) / len(covered),
        "frames_min": min(covered),
        "in_window_share": float((inside.sum(1) / out.mask.sum(1)).mean()),
    }


def base_queries(base: str, videos: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The Q-Former tokens `[videos, frames, queries, D]` of the base in `base` on `videos` held-out test videos of
    the quick preset's benchmark, their timestamps and frame mask `[videos, frames]`, and the collated batch."""
    model = build_model(base_model_config(base, {"compressor": {"name": "none"}}))
    load_base_weights(model, base)
    model.eval()
    config = load_train_config(PRESETS["quick"]["config_files"], [*PRESETS["quick"]["overrides"]])
    test = synthetic_test_samples(config.data, videos)
    batch = collate([test[index] for index in range(len(test))])
    with torch.no_grad():
        features, times, mask, _ = batch_visuals(batch, model.encoder, False, model.device)
        return model.qformer(features), times, mask, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(SHIPPED_BASE))
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--budgets", nargs="+", type=float, default=PRESETS["quick"]["budgets"])
    parser.add_argument("--methods", nargs="+", default=METHODS, help="any registered; untrained weights")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    features, times, mask, batch = base_queries(args.base, args.videos)
    windows = torch.tensor([list(window) for window in batch["window"]])
    frames, per_frame = features.shape[1:3]
    rows = []
    for fraction in args.budgets:
        for method in args.methods:
            compressor_config, tokens = configure(method, frames, per_frame, int(frames * per_frame * fraction))
            compressor = create_compressor(method, dim=features.shape[-1], **compressor_config).eval()
            with torch.no_grad():
                out = compressor(features, times, mask)
            rows.append({"budget": fraction, "method": method, "tokens": tokens, **coverage(out, windows)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.videos} test videos, {frames} frames x {per_frame} Q-Former tokens")
    print("| budget | method | tokens | frames kept (mean, least) | kept tokens inside the window |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['budget']:g} | {row['method']} | {row['tokens']} | {row['frames_mean']:.2f}, {row['frames_min']} "
            f"| {row['in_window_share']:.2f} |"
        )


if __name__ == "__main__":
    main()
