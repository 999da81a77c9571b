"""The papers' settings (configs/paper/*.yaml): each loads and validates, states where its values come from, and holds
the values the papers state; compressors are built on the meta device (no weights) to count tokens and parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.encoders.patch.tokenlearner import tokenlearner_options, tokens_per_layer
from vtc.lmm.config import load_config
from vtc.train.config import TrainConfig, load_train_config
from vtc.train.data import check_data

ROOT = Path(__file__).resolve().parents[1]
PAPERS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))
CHARADES = ROOT.parent / "shared" / "data" / "charades_sta"
# The paper encoder's tokens a frame and width, and the tokens to the LLM of each config's frame count.
EXPECTED = {
    "stac_charades_sta": {"tokens_per_frame": 32, "dim": 768, "llm_tokens": 16 * 16},
    "stac_baseline_tome": {"tokens_per_frame": 32, "dim": 768, "llm_tokens": 16 * 32},
    "stac_baseline_tokenlearner": {"tokens_per_frame": 32, "dim": 768, "llm_tokens": 16 * 32},
    "mambamia_tstar": {"tokens_per_frame": 576, "dim": 1024, "llm_tokens": 24 * 43},
    "storm": {"tokens_per_frame": 729, "dim": 1152, "llm_tokens": 8 * 14 * 14},
    "taa_hierarchical": {"tokens_per_frame": 576, "dim": 1024, "llm_tokens": 128 * 24},
}


BLIP2_PATCHES, BLIP2_LAYERS = 16 * 16, 39  # BLIP-2's ViT-g/14 at 224 px


def paper(name: str, *overrides: str) -> TrainConfig:
    return load_train_config([ROOT / "configs" / "paper" / f"{name}.yaml"], overrides)


def meta_compressor(config: TrainConfig, dim: int) -> torch.nn.Module:
    """The config's compressor at width `dim` on the meta device, in inference mode."""
    options = dict(config.model.lmm["compressor"])
    with torch.device("meta"):
        return create_compressor(options.pop("name"), dim=dim, **options).eval()


def llm_tokens(config: TrainConfig, tokens_per_frame: int, dim: int) -> int:
    return meta_compressor(config, dim).num_output_tokens(config.data.num_frames, tokens_per_frame)


def test_every_paper_config_is_covered():
    assert sorted(path.stem for path in PAPERS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", PAPERS, ids=lambda path: path.stem)
def test_paper_config_loads_validates_and_counts_its_tokens(path):
    config = load_train_config([path])
    assert load_config(config.model.lmm)["llm"]["path"].startswith("/path/to/")
    assert config.data.num_frames == config.model.lmm["num_frames"]
    expected = EXPECTED[path.stem]
    assert llm_tokens(config, expected["tokens_per_frame"], expected["dim"]) == expected["llm_tokens"]
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    text = " ".join(header)
    assert "From the paper" in text and "Not in the paper" in text and "../shared/papers/" in text


@pytest.mark.parametrize("path", PAPERS, ids=lambda path: path.stem)
def test_paper_frames_win_over_the_data_config_loaded_before(path):
    config = load_train_config([ROOT / "configs/data/charades_sta.yaml", path])
    assert config.data.num_frames == paper(path.stem).data.num_frames
    assert config.data.val_fraction == 0.1 and config.data.train_durations.endswith("Charades_v1_train.csv")


def test_stac_holds_the_values_its_paper_states():
    config = paper("stac_charades_sta")
    lmm = config.model.lmm
    assert lmm["encoder"]["type"] == "blip2" and lmm["llm"]["load_in_4bit"] is True and lmm["llm"]["mode"] == "lora"
    assert (lmm["compressor"]["name"], lmm["compressor"]["keep"], lmm["compressor"]["num_heads"]) == ("stac", 16, 4)
    assert lmm["timestamp_tokens"] is False and config.data.num_frames == 16
    optim = config.optim
    assert (optim.lr, optim.weight_decay, optim.warmup_ratio) == (1e-5, 0.01, 0.1)
    assert optim.max_steps == 20 * config.run.eval_every  # 20 epochs, validated once an epoch
    assert config.run.patience is not None


@pytest.mark.parametrize("keep", [4, 8, 16])
def test_stac_top_k_sweep_sends_k_tokens_a_frame(keep):
    config = paper("stac_charades_sta", f"model.lmm.compressor.keep={keep}")
    assert llm_tokens(config, 32, 768) == 16 * keep


def test_stac_epoch_is_the_carved_training_split_in_batches():
    if not CHARADES.exists():
        pytest.skip(f"real data not available: {CHARADES} (the shared data folder ../shared/data is absent)")
    overrides = [
        f"data.train={CHARADES / 'charades_sta_train.txt'}",
        f"data.train_durations={CHARADES / 'Charades_v1_train.csv'}",
        f"data.test={CHARADES / 'charades_sta_test.txt'}",
        f"data.test_durations={CHARADES / 'Charades_v1_test.csv'}",
        "data.video_dir=null",
    ]
    files = [ROOT / "configs/data/charades_sta.yaml", ROOT / "configs/paper/stac_charades_sta.yaml"]
    config = load_train_config(files, overrides)
    train_items = check_data(config.data)["splits"]["train"]["items"]
    assert config.run.eval_every == train_items // config.optim.batch_size == 1392


def test_stac_model_config_is_the_paper_system_without_the_compressor():
    model = load_train_config([ROOT / "configs/model/stac_blip2_flant5.yaml"])
    stac = paper("stac_charades_sta")
    assert {**model.model.lmm, "compressor": stac.model.lmm["compressor"]} == stac.model.lmm
    assert model.model.lmm["compressor"] == {"name": "none"}
    assert (model.optim, model.data.num_frames) == (stac.optim, 16)
    header = (ROOT / "configs/model/stac_blip2_flant5.yaml").read_text()
    assert "the LoRA settings (the paper gives none" in " ".join(header.replace("#", " ").split())


def test_mambamia_holds_the_values_its_paper_states():
    config = paper("mambamia_tstar")
    compressor = meta_compressor(config, 1024)
    assert compressor.config["block"] == "mambamia" and compressor.frame_stride == 3
    assert 90e6 < sum(parameter.numel() for parameter in compressor.parameters()) < 110e6  # ~100M (supplement C)
    assert config.data.num_frames == 128 and config.model.lmm["encoder"]["type"] == "clip"
    optim = config.optim
    assert (optim.lr, optim.weight_decay, optim.warmup_ratio) == (2e-5, 0.0, 0.03)
    main_setting = paper("mambamia_tstar", "model.lmm.compressor.query_interval=10")
    assert llm_tokens(main_setting, 100, 1024) == 430  # CLIP-ConvNeXt-Large: 100 tokens a frame, k = 10, s = 1/3
    alignment = paper("mambamia_tstar", "model.lmm.llm.mode=frozen", "optim.lr=1.0e-4")
    assert load_config(alignment.model.lmm)["llm"]["mode"] == "frozen" and alignment.optim.lr == 1e-4


def test_taa_uses_the_gated_query_stage_before_the_time_axis_aggregator():
    config = paper("taa_hierarchical")
    assert config.model.lmm["compressor"]["spatial"] == "mambamia"
    assert meta_compressor(config, 1024).num_output_tokens(256, 576) == 128 * 24


@pytest.mark.parametrize(
    ("name", "after_layers"),
    [("stac_baseline_tome", {1: 252, 20: 176, 39: 100}), ("stac_baseline_tokenlearner", {19: 256, 20: 8, 39: 8})],
)
def test_stac_baselines_compress_inside_the_vit_and_keep_the_recipe(name, after_layers):
    config, stac = paper(name), paper("stac_charades_sta")
    encoder = config.model.lmm["encoder"]
    counts = tokens_per_layer(
        BLIP2_PATCHES, BLIP2_LAYERS, encoder.get("tome_r", 0), tokenlearner_options(encoder.get("tokenlearner"))
    )
    assert {layer: counts[layer] for layer in after_layers} == after_layers
    assert config.model.lmm["compressor"] == {"name": "none"} and encoder["type"] == "blip2"
    lmm = {key: value for key, value in config.model.lmm.items() if key != "encoder_trainable"}
    assert {**lmm, "encoder": {"type": "blip2"}, "compressor": stac.model.lmm["compressor"]} == stac.model.lmm
    assert config.model.lmm.get("encoder_trainable", False) == ("tokenlearner" in encoder)  # only the learner trains
    assert (config.optim, config.data, config.run.eval_every) == (stac.optim, stac.data, stac.run.eval_every)
