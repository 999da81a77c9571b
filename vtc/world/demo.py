"""`vtc demo`, the main job: a reduced `vtc compare` on the embedded benchmark's shipped base video LLM.

The shipped base (`bases/world-qformer`: frozen patch encoder -> Q-Former -> projector -> tiny T5, trained
uncompressed) is the ceiling, evaluated untouched; STAC, MambaMia and TokenLearner are inserted between its Q-Former
and projector at 1/4 of the tokens and adapt briefly (compressor, projector, LoRA; the papers' recipe, shortened), as
do the uncompressed model and ToMe; ToMe, random dropping and uniform frame subsampling are also evaluated on the base
as they are, with no training. Then the table (with the blind answer), the accuracy-vs-tokens plot, and a timeline of
one test video: the ground truth, every method's predicted window and per-frame saliency, and what STAC kept (slot
saliency). Sized to finish within 5 minutes on a 2-core CPU, set-up included.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from vtc.compressors import list_compressors
from vtc.data.batch import collate
from vtc.train.checkpoint import load_model
from vtc.utils.figures import save_figure
from vtc.world.compare.presets import SHIPPED_BASE
from vtc.world.compare.report import JSON_NAME, PLOT_NAME, markdown
from vtc.world.compare.run import CompareSettings, base_config, compare
from vtc.world.source import SyntheticSamples, synthetic_test_samples

DEMO_METHODS = ["none", "stac", "mambamia", "tome", "tokenlearner"]
DEMO_UNTRAINED = ["random", "uniform"]
TIMELINE_NAME = "timeline.png"


def demo_settings(args: argparse.Namespace) -> CompareSettings:
    """The quick preset on `args.base` with one seed, the untrained-only `DEMO_UNTRAINED`, and the command line's
    methods, budget, overrides, test videos and folder."""
    return CompareSettings.preset(
        "quick",
        base=str(args.base),
        methods=args.methods,
        untrained=list(DEMO_UNTRAINED),
        budgets=[args.budget],
        seeds=[0],
        overrides=args.set,
        num_test=args.num_test,
        output_dir=args.out,
        measure_memory=False,  # a fresh process per row: a minute of the five; `vtc compare` measures it
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", default=str(SHIPPED_BASE), help="the base model folder to adapt from")
    parser.add_argument("--budget", type=float, default=1 / 4, help="fraction of the uncompressed token count")
    parser.add_argument("--methods", nargs="+", choices=list_compressors(), default=list(DEMO_METHODS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    parser.add_argument("--num-test", type=int, default=40)
    parser.add_argument("--out", default="runs/demo")


def timeline(result: dict[str, Any], test: SyntheticSamples, path: Path) -> None:
    """Plot one test video: the ground truth and each method's predicted window; each method's per-frame saliency
    (the LM's saliency head, which the window is read from); and what the compressors kept: STAC's slot saliency
    (the Top-K slots kept for every frame) and TAA's per-frame delta-time (frames emitted where its sum crosses the
    threshold), for those of them that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = test[0]
    batch = collate([sample])
    duration = float(sample["duration"])
    runs = {run["method"]: run for run in result["runs"] if run["seed"] == result["settings"]["seeds"][0]}
    models = {method: load_model(Path(run["checkpoint"])).eval() for method, run in runs.items()}
    diagnostics = [method for method in ("stac", "taa") if method in models]
    figure, axes = plt.subplots(2 + len(diagnostics), 1, figsize=(9, 3 + 2.2 * (1 + len(diagnostics))))
    windows_axis, saliency_axis = axes[0], axes[1]
    for axis in (windows_axis, saliency_axis):
        axis.axvspan(*sample["window"], color="tab:green", alpha=0.2, label="ground truth")
        axis.set_xlim(0, duration)
    labels = []
    for row, (method, model) in enumerate(models.items()):
        color = f"C{row}"
        with torch.no_grad():
            ((_, parsed),) = model.answer_windows(batch)
            if parsed.valid:
                windows_axis.plot(parsed.window, [row, row], linewidth=8, solid_capstyle="butt", color=color)
            labels.append(method if parsed.valid else f"{method} (no parseable answer)")
            if model.saliency_head is not None:
                ((times, scores),) = model.saliency_scores(batch)
                saliency_axis.plot(times, torch.sigmoid(scores), marker=".", color=color, label=method)
    windows_axis.set_ylim(-0.7, len(models) - 0.3)
    windows_axis.set_yticks(range(len(models)), labels=labels, fontsize=8)
    windows_axis.set_title(f'Test video 0: "{sample["query"]}" (bars: predicted windows)')
    windows_axis.legend(loc="upper left", fontsize=8)
    saliency_axis.axhline(0.5, linestyle=":", color="gray")
    saliency_axis.set_ylabel("P(frame in window)")
    saliency_axis.legend(fontsize=7, ncol=3)
    for axis, method in zip(axes[2:], diagnostics, strict=True):
        with torch.no_grad():
            aux = models[method].visual_tokens(batch).aux
        if method == "stac":
            scores, kept = aux["slot_scores"][0], set(aux["kept_slots"][0].tolist())
            colors = ["tab:red" if slot in kept else "tab:gray" for slot in range(len(scores))]
            axis.bar(range(len(scores)), scores.tolist(), color=colors)
            axis.set_xlabel("query slot (red: kept for every frame)")
            axis.set_ylabel("STAC saliency")
        else:
            times, delta, kept = sample["timestamps"], aux["delta_time"][0], aux["kept_frames"][0]
            axis.plot(times, delta, marker=".", color="tab:purple")
            axis.scatter(times[kept], delta[kept], color="tab:red", zorder=3, label="frames kept")
            axis.set_xlim(0, duration)
            axis.set_xlabel("seconds")
            axis.set_ylabel("TAA delta-time")
            axis.legend(fontsize=8)
    saliency_axis.set_xlabel("seconds")
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    settings = demo_settings(args)
    result = compare(settings)
    output = Path(args.out)
    probe = base_config(settings, output / "probe", settings.seeds[0], {"name": "none"})
    timeline(result, synthetic_test_samples(probe.data, 1), output / TIMELINE_NAME)
    print()
    print(markdown(result))
    print(f"results:  {output / JSON_NAME}")
    print(f"plots:    {output / PLOT_NAME}")
    print(f"          {output / TIMELINE_NAME}")
    return 0
