"""The embedded benchmark world: the core never imports it, says how to get its `synthetic` source and `scene`
encoder when they are missing, and `import vtc.world` registers them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import vtc.world  # noqa: F401  (registers the synthetic data source and the scene encoder)
from vtc.encoders import ENCODERS, register_encoder
from vtc.train.config import DataConfig
from vtc.train.data import DataSource, build_datasets, data_source, register_data_source
from vtc.world.scene_encoder import SceneEncoder
from vtc.world.source import SYNTHETIC_SOURCE, SyntheticSamples

ROOT = Path(__file__).resolve().parents[1]
CORE_WITHOUT_THE_WORLD = """
import json, sys
import vtc.bench.cost, vtc.encoders, vtc.eval.predict, vtc.lmm.model, vtc.train.evaluate, vtc.train.trainer
from vtc.encoders import build_encoder
from vtc.train.config import DataConfig
from vtc.train.data import build_datasets

errors = {}
for name, build in (
    ("data", lambda: build_datasets(DataConfig(source="synthetic"))),
    ("encoder", lambda: build_encoder({"type": "scene"})),
):
    try:
        build()
    except ValueError as error:
        errors[name] = str(error)
print(json.dumps({"world_imported": "vtc.world" in sys.modules, "errors": errors}))
"""


def test_the_core_without_the_world_names_what_is_registered_and_how_to_get_the_rest() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CORE_WITHOUT_THE_WORLD], cwd=ROOT, capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["world_imported"]
    data, encoder = report["errors"]["data"], report["errors"]["encoder"]
    assert "['files']" in data and "'synthetic'" in data and "import vtc.world" in data
    assert "'tiny'" in encoder and "'scene'" in encoder and "import vtc.world" in encoder


def test_importing_the_world_registers_its_source_and_encoder() -> None:
    assert data_source("synthetic") is SYNTHETIC_SOURCE and ENCODERS["scene"] is SceneEncoder
    config = DataConfig(source="synthetic", synthetic={"duration": 4.0, "fps": 1.0, "frame_size": 16})
    train, val = build_datasets(config)
    assert isinstance(train, SyntheticSamples) and len(train) == config.num_train and len(val) == config.num_val
    assert {"circle", "red", "moves left"} <= set(SYNTHETIC_SOURCE.words)


def test_unknown_and_repeated_registrations_are_errors() -> None:
    with pytest.raises(ValueError, match="got 'charades'") as unknown:
        data_source("charades")
    assert "'files'" in str(unknown.value) and "'synthetic'" in str(unknown.value)
    register_data_source("synthetic", SYNTHETIC_SOURCE)  # the same source again: nothing changes
    with pytest.raises(ValueError, match="already registered"):
        register_data_source("synthetic", DataSource(SYNTHETIC_SOURCE.build))
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("scene", lambda **options: SceneEncoder(**options))
