"""Why does STAC score what it scores? Is the queried object's slot among the slots it keeps?

STAC (`vtc/compressors/stac.py`) keeps the same Top-`keep` scene slots for every frame of a video, chosen without
the query. For every STAC run of a `vtc compare` folder this re-scores its test videos and splits them by whether
the slot of the queried (colour, shape) was kept: how often it was, and the test mIoU of each part.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/stac_target_slot.py runs/compare_quick [--method stac]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vtc.data.batch import collate
from vtc.eval.predict import predict_windows, score
from vtc.train.checkpoint import load_model
from vtc.train.config import RESOLVED_CONFIG_NAME, load_train_config
from vtc.world.raster import COLOURS, SHAPES, object_class_index
from vtc.world.source import synthetic_test_samples


def queried_slot(query: str) -> int:
    """Scene slot of the (colour, shape) named in a synthetic query ("the red circle moves left")."""
    words = query.split()
    colour = next(word for word in words if word in COLOURS)
    shape = next(word for word in words if word in SHAPES)
    return int(object_class_index(colour, shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a `vtc compare` output folder (compare.json)")
    parser.add_argument("--method", default="stac")
    args = parser.parse_args()
    result = json.loads((args.folder / "compare.json").read_text())
    rows = []
    for run in (run for run in result["runs"] if run["method"] == args.method):
        checkpoint = Path(run["checkpoint"])
        config = load_train_config([checkpoint.parents[2] / RESOLVED_CONFIG_NAME])
        test = synthetic_test_samples(config.data, result["test_videos"], cache=True)  # rendered once, read twice
        model = load_model(checkpoint).eval()
        records = predict_windows(model, test, range(len(test)), batch_size=16)
        with torch.no_grad():
            kept_slots = model.visual_tokens(collate([test[i] for i in range(len(test))])).aux["kept_slots"].tolist()
        kept = [queried_slot(test[i]["query"]) in slots for i, slots in enumerate(kept_slots)]
        parts = {
            name: [r for r, k in zip(records, kept, strict=True) if k == flag]
            for name, flag in (("kept", True), ("dropped", False))
        }
        row = {
            "budget": run["budget"],
            "seed": run["seed"],
            "keep": run["compressor"].get("keep"),
            "target_kept_share": sum(kept) / len(kept),
            "mIoU": score(records)["mIoU"],
            **{f"mIoU_{name}": score(part)["mIoU"] if part else None for name, part in parts.items()},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
