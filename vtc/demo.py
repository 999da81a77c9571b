"""`vtc demo`, the main job: a reduced `vtc compare` on the embedded synthetic benchmark.

No compression vs STAC vs MambaMia vs ToMe vs TokenLearner, at one token budget, each trained with the same frozen
tiny encoder, tiny language model, recipe and seed; then the table, the accuracy-vs-tokens plot, and a timeline of one
test video: the ground-truth window, every method's predicted window, and STAC's saliency scores that decided which
query slots were kept. Sized to finish in about 10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from vtc.bench import save_figure
from vtc.compare import CompareSettings, base_config, compare, markdown
from vtc.data.synthetic import SyntheticMoments
from vtc.train.checkpoint import load_model
from vtc.train.data import SyntheticSamples
from vtc.train.trainer import predict_windows

DEMO_METHODS = ["none", "stac", "mambamia", "tome", "tokenlearner"]
DEMO_OVERRIDES = [
    "optim.max_steps=300",
    "run.eval_every=150",
    "data.num_train=600",
    "data.num_val=32",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", type=float, default=1 / 8, help="fraction of the uncompressed token count")
    parser.add_argument("--methods", nargs="+", default=DEMO_METHODS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    parser.add_argument("--num-test", type=int, default=40)
    parser.add_argument("--out", default="runs/demo")


def timeline(result: dict[str, Any], test: SyntheticSamples, path: Path) -> None:
    """Plot one test video: ground truth, each method's predicted window, and STAC's slot saliency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = test[0]
    duration = float(sample["duration"])
    runs = {run["method"]: run for run in result["runs"] if run["seed"] == result["settings"]["seeds"][0]}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), gridspec_kw={"height_ratios": [3, 2]})
    top.axvspan(*sample["window"], color="tab:green", alpha=0.25, label="ground truth")
    labels = []
    for row, (method, run) in enumerate(runs.items()):
        record = predict_windows(load_model(Path(run["checkpoint"])), [sample], [0], batch_size=1)[0]
        window = record["pred_relevant_windows"]
        if window:
            top.plot(window[0][:2], [row, row], linewidth=8, solid_capstyle="butt")
        labels.append(method if window else f"{method} (no parseable answer)")
    top.set_xlim(0, duration)
    top.set_ylim(-0.7, len(runs) - 0.3)
    top.set_yticks(range(len(runs)), labels=labels, fontsize=8)
    top.set_xlabel("seconds")
    top.set_title(f'Test video 0: "{sample["query"]}"')
    top.legend(loc="upper left", fontsize=8)
    if "stac" in runs:
        model = load_model(Path(runs["stac"]["checkpoint"])).eval()
        with torch.no_grad():
            tokens = model.encoder.encode(sample["frames"]).unsqueeze(0)
            out = model.compressor(tokens, sample["timestamps"].float().unsqueeze(0))
        scores = out.aux["slot_scores"]
        kept = set(out.aux["kept_slots"][0].tolist())
        colors = ["tab:red" if slot in kept else "tab:gray" for slot in range(scores.shape[1])]
        bottom.bar(range(scores.shape[1]), scores[0].tolist(), color=colors)
        bottom.set_xlabel("query slot (red: kept for every frame)")
        bottom.set_ylabel("STAC saliency")
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    settings = CompareSettings(
        methods=args.methods,
        budgets=[args.budget],
        seeds=[0],
        overrides=[*DEMO_OVERRIDES, *args.set],
        num_test=args.num_test,
        output_dir=args.out,
    )
    result = compare(settings)
    output = Path(args.out)
    probe = base_config(settings, output / "probe", 0, {"name": "none"})
    synthetic = {**probe.data.synthetic, "seed": probe.data.val_seed + 1}
    test = SyntheticSamples(SyntheticMoments(num_videos=1, **synthetic), probe.data.num_frames)
    timeline(result, test, output / "timeline.png")
    print()
    print(markdown(result))
    print(f"results:  {output / 'compare.json'}")
    print(f"plots:    {output / 'accuracy_vs_tokens.png'}")
    print(f"          {output / 'timeline.png'}")
    return 0
