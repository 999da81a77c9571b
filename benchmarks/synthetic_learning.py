"""Does a small model learn the synthetic benchmark? Train with no compression on CPU, report held-out mIoU.

Trains `configs/model/tiny.yaml` on `configs/data/synthetic.yaml` (default benchmark settings), selects the best
checkpoint on the validation split, and scores it on a separate held-out test split, beside the best blind baseline:
the constant window of highest mean IoU on the training windows, predicted for every query without the video. The
scene encoder is pre-trained into a fresh cache under the run folder, so the reported wall time counts all the
training the model needs. The same
checkpoint is also scored with the other readout (generated text when the config reads the saliency head).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/synthetic_learning.py [--set optim.max_steps=600 ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vtc.eval.predict import predict_windows, score
from vtc.train.checkpoint import load_model
from vtc.train.config import load_train_config
from vtc.train.trainer import Trainer
from vtc.world.compare.blind import blind_baseline
from vtc.world.source import synthetic_test_samples
from vtc.world.synthetic import SyntheticMoments

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "configs" / "model" / "tiny.yaml", ROOT / "configs" / "data" / "synthetic.yaml"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--num-test", type=int, default=200, help="held-out test videos (a seed of their own)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    defaults = [
        "run.output_dir=runs/synthetic_learning",
        "run.cache_dir=runs/synthetic_learning/cache",
        "run.progress=false",
        "data.cache_in_memory=true",
    ]
    config = load_train_config(CONFIGS, [*defaults, *args.set])
    started = time.perf_counter()
    trainer = Trainer(config)
    summary = trainer.fit()
    train_seconds = time.perf_counter() - started
    test = synthetic_test_samples(config.data, args.num_test)
    model = load_model(Path(summary["best_checkpoint"]) / "model")
    train_moments = SyntheticMoments(num_videos=config.data.num_train, **config.data.synthetic)
    model_metrics = score(predict_windows(model, test, range(len(test)), config.run.eval_batch_size))
    readout = model.config["readout"]
    other = "text" if readout == "saliency" else "saliency"
    other_metrics = None
    if other == "text" or model.saliency_head is not None:
        model.config["readout"] = other
        other_metrics = score(predict_windows(model, test, range(len(test)), config.run.eval_batch_size))
    print(
        json.dumps(
            {
                "test_videos": len(test),
                "train_steps": summary["step"],
                "train_wall_seconds": round(train_seconds, 1),
                "threads": args.threads,
                "readout": readout,
                "model_no_compression": model_metrics,
                f"same_checkpoint_{other}_readout": other_metrics,
                "blind": blind_baseline(train_moments, test),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
