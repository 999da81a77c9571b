"""The embedded benchmark's real-shaped tokens and its base model: the `patch` encoder, the Q-Former stage, the grid
handed to the compressors, and adapting a method from a saved base (only the trained parts change)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_runs import TINY_SYNTHETIC, tiny_base_overrides

import vtc.world  # noqa: F401  (registers the synthetic source and the patch encoder)
from vtc.data.batch import collate
from vtc.lmm.base_model import PARTS_NAME, base_model_config, load_base_model, load_base_weights, save_base_model
from vtc.lmm.model import build_model
from vtc.lmm.qformer import FrameQFormer, build_qformer
from vtc.lmm.tiny import save_tiny_lm
from vtc.train.checkpoint import load_model
from vtc.train.config import load_train_config
from vtc.train.trainer import Trainer
from vtc.world.patch_encoder import (
    MIN_DEVIATION,
    PatchEncoder,
    cell_classes,
    cell_contents,
    channel_statistics,
    grid_position_code,
    previous_frame_change,
)
from vtc.world.scene_encoder import SceneSegmenter
from vtc.world.source import SyntheticSamples
from vtc.world.synthetic import SyntheticMoments


@pytest.fixture(scope="module")
def segmenter_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("segmenter") / "segmenter.safetensors"
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in SceneSegmenter(4).state_dict().items()}, path)
    return path


def test_cell_contents_share_and_offset_by_hand():
    assignment = torch.zeros(1, 3, 4, 4)  # 3 classes, a 2 x 2 grid of 2 x 2 cells
    assignment[0, 0] = 1.0
    assignment[0, :, 0, 1] = torch.tensor([0.0, 1.0, 0.0])  # one object pixel: top-left cell, its right column
    cells = cell_contents(assignment, (2, 2))  # [1, 4, 3 + 2]
    assert cells.shape == (1, 4, 5)
    torch.testing.assert_close(cells[0, 0, :3], torch.tensor([0.75, 0.25, 0.0]))
    # object at x = 1 in a cell spanning x 0..1 (centre 0.5, half size 1): offset +0.5; y = 0 (centre 0.5): -0.5
    torch.testing.assert_close(cells[0, 0, 3:], torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(cells[0, 1:], torch.tensor([[1.0, 0, 0, 0, 0]] * 3))


def test_position_code_is_distinct_per_cell_and_change_is_zero_first():
    code = grid_position_code((3, 5))
    assert code.shape == (15, 4) and len({tuple(row.round(decimals=5).tolist()) for row in code}) == 15
    contents = torch.arange(6.0).reshape(3, 1, 2)
    torch.testing.assert_close(previous_frame_change(contents), torch.tensor([[[0.0, 0]], [[2, 2]], [[2, 2]]]))


def test_patch_encoder_gives_a_grid_of_tokens_and_refuses_missing_weights(segmenter_weights):
    encoder = PatchEncoder(grid=(2, 4), width=4, path=str(segmenter_weights))
    frames = torch.from_numpy(SyntheticMoments(num_videos=1, **TINY_SYNTHETIC).render(0).frames)
    tokens = encoder.encode(frames)
    assert tokens.shape == (len(frames), 8, encoder.output_dim) and encoder.grid == (2, 4)
    torch.testing.assert_close(tokens[..., :25].sum(-1), torch.ones(len(frames), 8))  # every pixel counted once
    with pytest.raises(FileNotFoundError, match="not found"):
        PatchEncoder(path=str(segmenter_weights.with_name("missing.safetensors")))
    with pytest.raises(ValueError, match=r"cannot fill a \(20, 20\) grid"):
        PatchEncoder(grid=20, width=4, path=str(segmenter_weights)).encode(frames)


def test_standardized_patch_tokens_are_shifted_and_scaled_per_channel_and_travel_with_a_checkpoint(
    segmenter_weights,
):
    raw = PatchEncoder(grid=(2, 4), width=4, path=str(segmenter_weights))
    encoder = PatchEncoder(grid=(2, 4), width=4, path=str(segmenter_weights), standardize=True)
    mean, deviation = channel_statistics(str(segmenter_weights), (2, 4), 4)
    assert mean.shape == deviation.shape == (encoder.output_dim,) and (deviation >= MIN_DEVIATION).all()
    assert deviation.max() > 2 * deviation.min()  # the raw channels are not of one scale
    frames = torch.from_numpy(SyntheticMoments(num_videos=1, **TINY_SYNTHETIC).render(0).frames)
    tokens = encoder.encode(frames)
    torch.testing.assert_close(tokens, (raw.encode(frames) - mean) / deviation)
    restored = PatchEncoder(grid=(2, 4), width=4, standardize=True)  # no weights: a checkpoint's to load
    restored.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(restored.encode(frames), tokens)


def test_qformer_gives_num_queries_per_frame_and_can_be_frozen():
    qformer = build_qformer({"num_queries": 3, "hidden": 8, "depth": 1, "num_heads": 2}, dim=5)
    assert isinstance(qformer, FrameQFormer)
    assert qformer(torch.randn(2, 4, 6, 5)).shape == (2, 4, 3, 8)
    frozen = build_qformer({"num_queries": 3, "hidden": 8, "depth": 1, "num_heads": 2, "frozen": True}, dim=5)
    assert not any(parameter.requires_grad for parameter in frozen.parameters())
    with pytest.raises(ValueError, match="unknown qformer keys"):
        build_qformer({"queries": 3}, dim=5)
    with pytest.raises(ValueError, match=r"patch tokens \[B, T, N, D=5\]"):
        qformer(torch.randn(2, 6, 5))


def model_config(tmp_path: Path, segmenter: Path, **changes) -> dict:
    lm = save_tiny_lm(tmp_path / "lm", "t5", 16, 1, 2, extra_words=["red", "circle"])
    config = {
        "encoder": {"type": "patch", "grid": [2, 4], "width": 4, "path": str(segmenter)},
        "compressor": {"name": "none"},
        "projector": "mlp",
        "llm": {"path": str(lm), "mode": "full"},
        "time_tokens": 4,
        "saliency_loss": 1.0,
    }
    return {**config, **changes}


def batch_of(samples: SyntheticSamples) -> dict:
    return collate([samples[index] for index in range(len(samples))])


def test_the_encoder_grid_reaches_the_compressors_that_read_it(tmp_path, segmenter_weights):
    config = model_config(tmp_path, segmenter_weights, compressor={"name": "avgpool2d", "pool": 2})
    model = build_model(config)
    assert model.compressor.config["grid"] == [2, 4]  # a non-square 2 x 4 grid, not the square root of 8
    samples = SyntheticSamples(SyntheticMoments(num_videos=2, **TINY_SYNTHETIC), num_frames=3)
    assert model.visual_tokens(batch_of(samples)).tokens.shape[1] == 3 * 1 * 2
    with_qformer = build_model({**config, "qformer": {"num_queries": 4, "hidden": 8, "num_heads": 2}})
    assert with_qformer.compressor.config["grid"] is None  # queries have no grid: the square root of 4 is used


def test_a_saved_base_answers_as_the_model_it_was_saved_from(tmp_path, segmenter_weights):
    config = model_config(tmp_path, segmenter_weights, qformer={"num_queries": 4, "hidden": 8, "num_heads": 2})
    model = build_model(config).eval()
    base = save_base_model(model, tmp_path / "base", card={"steps": 0})
    assert sorted(p.name for p in base.iterdir()) == ["base.json", "encoder.safetensors", "llm", PARTS_NAME]
    assert sorted({key.split(".")[0] for key in load_file(base / PARTS_NAME)}) == [
        "projector",
        "qformer",
        "saliency_head",
    ]
    with pytest.raises(FileExistsError, match="never overwritten"):
        save_base_model(model, base, card={})
    rebuilt = build_model(base_model_config(base, {})).eval()
    assert load_base_weights(rebuilt, base) == ["qformer", "projector", "saliency_head"]
    samples = SyntheticSamples(SyntheticMoments(num_videos=2, **TINY_SYNTHETIC), num_frames=3)
    batch = batch_of(samples)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(batch), model(batch))
        assert rebuilt.generate_text(batch) == model.generate_text(batch)
    other = build_model(base_model_config(base, {"qformer": {"num_queries": 4, "hidden": 16, "num_heads": 2}}))
    with pytest.raises(ValueError, match="the model's qformer differs from the base's"):
        load_base_weights(other, base)


def test_adapting_from_a_base_trains_only_the_compressor_projector_and_lora(tmp_path, segmenter_weights):
    config = model_config(tmp_path, segmenter_weights, qformer={"num_queries": 4, "hidden": 8, "num_heads": 2})
    base = save_base_model(build_model(config), tmp_path / "base", card={})
    adapt = {
        "model": {
            "init_from": str(base),
            "lmm": {
                "compressor": {"name": "stac", "keep": 2, "num_heads": 2, "d_state": 4},
                "qformer": {"frozen": True},
                "llm": {"mode": "lora"},
            },
        },
        "data": {"source": "synthetic", "synthetic": TINY_SYNTHETIC, "num_train": 4, "num_val": 2, "num_frames": 3},
        "optim": {"lr": 1e-2, "batch_size": 2, "max_steps": 3},
        "run": {"output_dir": str(tmp_path / "run"), "eval_every": 3, "progress": False},
    }
    (tmp_path / "adapt.yaml").write_text(json.dumps(adapt))
    trainer = Trainer(load_train_config([tmp_path / "adapt.yaml"]))
    trainer.fit()
    model, before = trainer.model, build_model(base_model_config(base, {}))
    load_base_weights(before, base)

    def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    assert same(model.qformer, before.qformer)  # frozen: the base's Q-Former
    assert same(model.encoder, before.encoder)
    base_lm = before.language_model.state_dict()
    lm_weights = {
        k.replace("base_layer.", ""): v for k, v in model.language_model.state_dict().items() if "lora" not in k
    }
    assert all(torch.equal(lm_weights[key], value) for key, value in base_lm.items() if key in lm_weights)
    assert not same(model.projector, before.projector)  # trained
    assert any(param.requires_grad for param in model.compressor.parameters())
    with pytest.raises(ValueError, match="brings its own language model"):
        load_train_config([tmp_path / "adapt.yaml"], ["model.tiny_lm={kind: t5}"])


def test_adapting_settings_of_a_part_the_base_lacks_are_left_out(tmp_path):
    """world_adapt.yaml freezes the Q-Former; over a base of patch tokens that must not build a fresh one."""
    (tmp_path / "base.json").write_text(json.dumps({"model": {"encoder": {"type": "patch"}, "qformer": None}}))
    config = base_model_config(tmp_path, {"qformer": {"frozen": True}, "compressor": {"name": "avgpool2d"}})
    assert config["qformer"] is None and config["compressor"] == {"name": "avgpool2d"}


def test_probe_targets_label_cells_by_their_majority_object():
    labels = np.zeros((1, 4, 4), dtype=np.int64)
    labels[0, :2, :2] = 5  # the top-left 2 x 2 cell is wholly class 5
    labels[0, 2, 2] = 7  # a quarter of the bottom-right cell is class 7
    assert cell_classes(labels, (2, 2), min_share=0.5).tolist() == [[5, 0, 0, 0]]
    assert cell_classes(labels, (2, 2), min_share=0.25).tolist() == [[5, 0, 0, 7]]


def test_vtc_base_trains_scores_and_exports_a_base_with_its_card(tmp_path, capsys):
    from vtc.cli import main

    tiny = tiny_base_overrides(tmp_path / "cache", num_train=4, num_val=2)
    command = ["base", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "base"), "--num-test", "2"]
    assert main([*command, *[item for value in tiny for item in ("--set", value)]]) == 0
    card = json.loads((tmp_path / "base" / "base.json").read_text())["card"]
    assert card["steps"] == 2 and set(card["test"]) == {"text", "saliency", "blind"}
    assert card["model"].startswith("frozen patch encoder (2 x 2 tokens per frame) -> Q-Former (4 queries per frame)")
    assert "| text |" in (tmp_path / "base" / "README.md").read_text()
    patch_base = ["base", "--run", str(tmp_path / "patch_run"), "--out", str(tmp_path / "patch"), "--num-test", "2"]
    patch_overrides = [*tiny, "model.lmm.qformer=null", "model.lmm.encoder.standardize=true"]
    assert main([*patch_base, *[item for value in patch_overrides for item in ("--set", value)]]) == 0
    card = json.loads((tmp_path / "patch" / "base.json").read_text())["card"]
    assert card["model"].startswith(
        "frozen patch encoder (2 x 2 tokens per frame, standardized per channel) -> MLP projector"
    )
    summary = json.loads((tmp_path / "patch_run" / "results.json").read_text())
    trained = load_model(Path(summary["best_checkpoint"]) / "model")
    exported = load_base_model(tmp_path / "patch")  # its statistics recomputed from the copied segmenter weights
    torch.testing.assert_close(exported.encoder.channel_mean, trained.encoder.channel_mean)
    assert main([*command[:3], "--out", str(tmp_path / "again"), "--set", "optim.max_steps=3"]) == 2
    assert "holds a run with another config" in capsys.readouterr().err


def test_an_adapting_run_takes_its_encoder_from_the_base_without_pretraining_one(tmp_path):
    from vtc.world.source import pretrained_scene_encoder

    overrides = ["data.source=synthetic", f"model.init_from={tmp_path}", f"run.cache_dir={tmp_path / 'cache'}"]
    config = load_train_config([], overrides)
    assert pretrained_scene_encoder({"type": "patch"}, config) == {"type": "patch"}  # the base's weights load later
    assert not (tmp_path / "cache").exists()
    plain = load_train_config([], [overrides[0], overrides[2]])
    assert "path" in pretrained_scene_encoder({"type": "patch", "pretrain_steps": 1, "width": 4}, plain)
