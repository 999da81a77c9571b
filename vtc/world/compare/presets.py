"""The presets of `vtc compare` (what to compare, on which base, how long each run trains) and the shipped base
they adapt from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtc.compressors import list_compressors

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"
DEFAULT_CONFIGS = (CONFIG_DIR / "model" / "tiny.yaml", CONFIG_DIR / "data" / "synthetic.yaml")
# Adapting from a base (compressor, projector and LoRA trained; `model.init_from` set by the preset's base).
ADAPT_CONFIGS = [str(CONFIG_DIR / "model" / "world_adapt.yaml"), str(CONFIG_DIR / "data" / "synthetic.yaml")]
SHIPPED_BASE = CONFIG_DIR.parent / "bases" / "world-qformer"  # the embedded benchmark's base video LLM (issue #15)
# The second base (issue #15: "patch tokens as LLaVA-style models give MambaMia"): 5 x 5 patch tokens per frame, no
# Q-Former, so that the methods that pool or scan a frame's grid (TAA, avgpool2d, MambaMia) see one.
PATCH_BASE = CONFIG_DIR.parent / "bases" / "world-patch"
ISSUE_METHODS = ["none", "stac", "mambamia", "taa", "tome", "tokenlearner", "avgpool2d", "random", "uniform"]
# The adaptation of every row of a quick comparison: a few dozen steps on a few hundred videos, one validation at the
# end (the adapted model is the last step's), as `vtc demo`'s.
SHORT_ADAPTATION = ["optim.max_steps=45", "run.eval_every=45", "data.num_train=360", "data.num_val=16"]


def adapted_on_the_base(budgets: list[float], overrides: list[str], **extra: Any) -> dict[str, Any]:
    """A preset that adapts the issue's nine rows from the shipped base, three seeds, at `budgets` with `overrides`."""
    return {
        "methods": ISSUE_METHODS,
        "budgets": budgets,
        "seeds": [0, 1, 2],
        "config_files": ADAPT_CONFIGS,
        "overrides": overrides,
        "base": str(SHIPPED_BASE),
        **extra,
    }


PRESETS: dict[str, dict[str, Any]] = {
    # The default: on the shipped base, the papers' methods, the trained baselines, pooling, random and uniform rows
    # at 1/4 and 1/8, three seeds, each adapted briefly (compressor, projector, LoRA) and the training-free ones also
    # evaluated on the base untouched. Sized to finish within 30 minutes on a 2-core CPU, fresh machine included.
    "quick": adapted_on_the_base([1 / 4, 1 / 8], ["data.num_frames=8", *SHORT_ADAPTATION]),
    # The quick rows on the patch base: every method gets a 5 x 5 grid per frame (200 tokens for 8 frames), so TAA
    # and avgpool2d, which the Q-Former's 32 queries per frame cannot feed, have rows.
    "patch": adapted_on_the_base([1 / 4, 1 / 8], ["data.num_frames=8", *SHORT_ADAPTATION], base=str(PATCH_BASE)),
    # The same rows adapted longer, and the field's training-free video methods evaluated on the base untouched only,
    # as they are deployed.
    "base": adapted_on_the_base(
        [1 / 4, 1 / 8],
        ["data.num_frames=8", "optim.max_steps=150", "run.eval_every=150", "data.num_train=1500"],
        untrained=["dycoke", "vidcom2", "fastvid", "holitom", "prunevid", "divprune", "visionzip"],
    ),
    # Long videos with short events, where a compressor that spreads its tokens evenly loses the event (issue #15):
    # 120 s, 64 frames, 2-4 s events, at 1/8 and 1/16. The window is read from the base's per-frame saliency head
    # (its auxiliary output), since its 8 LITA time tokens cut 120 s into 15 s steps, too coarse for a 3 s event.
    "long": adapted_on_the_base(
        [1 / 8, 1 / 16],
        [
            "data.num_frames=64",
            "data.synthetic.duration=120",
            "data.synthetic.event_length=[2.0, 4.0]",
            "model.lmm.readout=saliency",
            *SHORT_ADAPTATION,
        ],
    ),
    # Needles (issue #15): in each 30 s video a 2 s plain grey screen flashes one big shape, and the query asks for
    # that flash ("a red circle flashes on a plain grey screen"); 32 frames so that every needle is sampled, at 1/8
    # and 1/16, where a compressor that spreads its tokens evenly keeps one or two tokens of the flash. The window
    # is read from the saliency head, as in `long` (8 time tokens are 3.75 s apart).
    "needle": adapted_on_the_base(
        [1 / 8, 1 / 16],
        [
            "data.num_frames=32",
            "data.synthetic.variant=needle",
            "data.synthetic.needle_length=2.0",
            "model.lmm.readout=saliency",
            *SHORT_ADAPTATION,
        ],
    ),
    # With no base: every run trains its whole model from nothing (8 frames, 800 steps); the papers' SSM compressors
    # against the baselines they claim to beat, at one budget, three seeds.
    "scratch": {
        "methods": ["none", "stac", "mambamia", "tome", "tokenlearner"],
        "budgets": [1 / 4],
        "seeds": [0, 1, 2],
        "overrides": ["data.num_frames=8", "optim.max_steps=800", "run.eval_every=100", "data.num_train=1500"],
    },
    # Every registered method at 1/2, 1/8 and 1/32 of the tokens with the benchmark's full recipe, from scratch (hours).
    "full": {"methods": list_compressors(), "budgets": [1 / 2, 1 / 8, 1 / 32], "seeds": [0, 1], "overrides": []},
}
