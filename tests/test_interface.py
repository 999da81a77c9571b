"""The compressor interface, registry, shared token ops and the `vtc info` command."""

from __future__ import annotations

import json

import pytest
import torch

import vtc
from vtc.cli import main
from vtc.compressors import Compressor, Family, MethodCard, compressor_class, register_compressor
from vtc.compressors.ops import gather_rows, masked_mean, pack_kept, per_frame_output, topk_in_order
from vtc.compressors.validation import validate_inputs

EXPECTED = {
    "none", "stac", "tstar", "mambamia", "taa", "storm", "tome", "tokenlearner", "avgpool2d", "bilinear",
    "avgpool3d", "frame-mean", "cabstractor", "resampler2d", "resampler3d",
}  # fmt: skip


def test_registry_lists_every_method_of_the_issues():
    assert set(vtc.list_compressors()) >= EXPECTED
    assert vtc.list_compressors() == sorted(vtc.list_compressors())
    with pytest.raises(KeyError, match="unknown compressor 'nope'"):
        vtc.create_compressor("nope", dim=8)


def test_none_passes_tokens_through_and_drops_padded_frames():
    tokens = torch.randn(2, 3, 4, 8)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    out = vtc.create_compressor("none", dim=8)(tokens, torch.tensor([[0.0, 1.0, 2.0]] * 2), mask)
    assert out.tokens.shape == (2, 12, 8)
    assert out.num_tokens.tolist() == [8, 12]
    assert torch.equal(out.tokens[0, :4], tokens[0, 0]) and torch.equal(out.tokens[0, 4:8], tokens[0, 2])
    assert out.frame_index[0].tolist() == [0] * 4 + [2] * 4 + [-1] * 4
    assert out.timestamps[0, 4:8].tolist() == [2.0] * 4
    assert (out.tokens[0, 8:] == 0).all()


@pytest.mark.parametrize(
    ("tokens", "kwargs", "message"),
    [
        (torch.randn(2, 3, 8), {}, r"\[B, T, N, D=8\], got shape \(2, 3, 8\)"),
        (torch.randn(2, 3, 4, 6), {}, "got D=6"),
        (torch.randn(2, 0, 4, 8), {}, "non-empty"),
        (torch.full((1, 2, 2, 8), float("nan")), {}, "NaN"),
        (torch.randn(1, 2, 2, 8), {"timestamps": torch.zeros(1, 3)}, r"timestamps must be \[B=1, T=2\]"),
        (torch.randn(1, 2, 2, 8), {"frame_mask": torch.zeros(1, 2, dtype=torch.bool)}, "at least one valid frame"),
        (torch.randint(0, 5, (1, 2, 2, 8)), {}, "floating-point"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_shapes(tokens, kwargs, message):
    with pytest.raises(ValueError, match=message):
        vtc.create_compressor("none", dim=8)(tokens, **kwargs)


def test_default_timestamps_are_frame_indices():
    timestamps, mask = validate_inputs(torch.randn(2, 3, 1, 4), 4, None, None)
    assert timestamps.tolist() == [[0.0, 1.0, 2.0]] * 2 and mask.all()


def test_save_and_load_round_trip(tmp_path):
    model = vtc.create_compressor("tokenlearner", dim=16, num_tokens=2)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["compressor"] == "tokenlearner"
    loaded = Compressor.from_pretrained(tmp_path)
    tokens = torch.randn(1, 2, 4, 16)
    assert torch.equal(loaded(tokens).tokens, model(tokens).tokens)
    with pytest.raises(TypeError, match="not a"):
        compressor_class("none").from_pretrained(tmp_path)


def test_presets_build_the_base_class_with_other_defaults():
    preset, base = vtc.create_compressor("mambamia", dim=16), compressor_class("tstar")
    assert isinstance(preset, base) and preset.registry_name == "tstar"


def test_config_is_recorded_from_any_constructor_call():
    model = compressor_class("avgpool2d")(16, (2, 1))
    assert model.config == {"dim": 16, "pool": [2, 1], "grid": None}
    assert vtc.create_compressor("mambamia", dim=16).config["block"] == "mambamia"


def test_registering_needs_a_card_a_new_name_and_presets_naming_arguments():
    class NoCard(Compressor):
        pass

    class Duplicate(Compressor):
        card = MethodCard(family=Family.TRAINING_FREE)

    class BadPreset(Compressor):
        card = MethodCard(family=Family.TRAINING_FREE, presets={"bad-preset": {"no_such_argument": 1}})

    with pytest.raises(TypeError, match="MethodCard"):
        register_compressor("no-card")(NoCard)
    with pytest.raises(ValueError, match="already registered: none"):
        register_compressor("none")(Duplicate)
    with pytest.raises(TypeError, match="no_such_argument"):
        register_compressor("bad-preset-base")(BadPreset)
    assert not {"no-card", "bad-preset", "bad-preset-base"} & set(vtc.list_compressors())


def test_a_paper_config_needs_its_source():
    with pytest.raises(ValueError, match="paper_source"):
        MethodCard(family=Family.STATE_SPACE, paper_config={"dim": 8})


def test_topk_in_order_returns_sorted_indices_and_never_prefers_invalid():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [5.0, 4.0, 3.0, 2.0]])
    valid = torch.tensor([[True, True, True, True], [False, True, False, True]])
    index, chosen_valid = topk_in_order(scores, 3, valid)
    assert index[0].tolist() == [1, 2, 3]
    assert set(index[1, chosen_valid[1]].tolist()) == {1, 3} and chosen_valid[1].sum() == 2


def test_gather_pack_and_masked_mean():
    x = torch.arange(12.0).view(1, 4, 3)
    assert gather_rows(x, torch.tensor([[2, 0]]))[0, :, 0].tolist() == [6.0, 0.0]
    keep = torch.tensor([[False, True, False, True], [True, False, False, False]])
    mask, (packed,) = pack_kept(keep, torch.arange(8.0).view(2, 4))
    assert mask.tolist() == [[True, True], [True, False]]
    assert packed.tolist() == [[1.0, 3.0], [4.0, 0.0]]
    values = torch.tensor([[1.0, 2.0, 100.0]])
    assert masked_mean(values, torch.tensor([[True, True, False]]), dim=1).item() == 1.5


def test_per_frame_output_is_frame_major():
    tokens = torch.randn(1, 2, 3, 4)
    out = per_frame_output(tokens, torch.tensor([[0.5, 1.5]]), torch.ones(1, 2, dtype=torch.bool))
    assert out.frame_index.tolist() == [[0, 0, 0, 1, 1, 1]]
    assert torch.equal(out.tokens, tokens.reshape(1, 6, 4))


def test_info_command_prints_counts(capsys):
    assert main(["info", "avgpool2d", "--dim", "16", "--frames", "4", "--tokens-per-frame", "16", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["output_tokens"] == 16 and row["input_tokens"] == 64 and row["parameters"] == 0
    assert main(["info", "--dim", "32"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("none", "tome", "tokenlearner"))
    assert "state-space trained" in listing and "training-free" in listing


def test_info_paper_builds_the_declared_paper_config(capsys):
    assert main(["info", "stac", "--paper", "--frames", "4", "--tokens-per-frame", "32", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["paper_config"] and row["paper_source"] and row["family"] == "state-space trained"
    assert row["config"]["dim"] == 768 and row["output_tokens"] == 4 * 16
