"""The base video LLMs shipped in `bases/`: each loads from its folder alone, reads its tokens as its card says, and
answers held-out test videos better than the best blind answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vtc.world  # noqa: F401  (registers the synthetic source and the patch encoder)
from vtc.eval.predict import predict_windows, score
from vtc.lmm.base_model import BASE_CONFIG_NAME, load_base_model
from vtc.train.config import load_train_config
from vtc.world.base import BASE_CONFIGS, BASE_OVERRIDES
from vtc.world.compare.blind import blind_baseline
from vtc.world.compare.presets import PRESETS, SHIPPED_BASE
from vtc.world.source import synthetic_test_samples
from vtc.world.synthetic import SyntheticMoments

BASES = sorted(path.parent for path in (SHIPPED_BASE.parent).glob(f"*/{BASE_CONFIG_NAME}"))
NUM_TEST = 16


@pytest.fixture(scope="module")
def default_test():
    data = load_train_config(BASE_CONFIGS, BASE_OVERRIDES).data
    train = SyntheticMoments(num_videos=data.num_train, **data.synthetic)
    test = synthetic_test_samples(data, NUM_TEST)
    return test, blind_baseline(train, test)["mIoU"]


def test_the_presets_name_shipped_bases():
    assert SHIPPED_BASE in BASES
    assert {Path(preset["base"]) for preset in PRESETS.values() if "base" in preset} <= set(BASES)


@pytest.mark.parametrize("base", BASES, ids=[base.name for base in BASES])
def test_a_shipped_base_loads_and_answers_above_the_blind_answer(base, default_test):
    card = json.loads((base / BASE_CONFIG_NAME).read_text())["card"]
    model = load_base_model(base)
    assert (model.qformer is None) == ("Q-Former" not in card["model"])
    test, blind = default_test
    metrics = score(predict_windows(model, test, range(len(test)), batch_size=8))
    assert metrics["mIoU"] > blind + 10, (metrics, blind)
