"""Cost measurement and the scaling / prefill / streaming benchmarks on tiny sizes: structure and sane figures."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from torch import nn

from vtc.bench import cost, device, prefill, scaling, scan, streaming
from vtc.bench.measure import measure
from vtc.compressors import create_compressor


def namespace(module, tmp_path=None, **overrides) -> argparse.Namespace:
    """The benchmark's parsed defaults with `overrides` (and `--json`)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    module.add_arguments(parser)
    args = parser.parse_args(["--json"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_flops_and_parameters_of_a_linear_layer():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    assert cost.count_parameters(layer) == 4 * 3 + 3
    assert cost.count_flops(lambda: layer(x)) == 2 * 2 * 4 * 3
    per_sample = cost.module_cost(layer, x, repeats=2)
    assert per_sample["flops"] == 2 * 4 * 3 and per_sample["macs"] == 4 * 3
    assert per_sample["latency_s"] > 0


def test_module_cost_is_per_sample():
    model = create_compressor("resampler2d", dim=16, num_queries=2, depth=1, num_heads=2).eval()
    one = cost.module_cost(model, torch.randn(1, 3, 4, 16), repeats=1)
    two = cost.module_cost(model, torch.randn(2, 3, 4, 16), repeats=1)
    assert one["flops"] == two["flops"] > 0
    with pytest.raises(ValueError, match="batched"):
        cost.module_cost(model)


def test_compressor_cost_counts_tokens_and_measures_memory():
    result = cost.compressor_cost("resampler2d", {"num_queries": 2, "depth": 1, "num_heads": 2}, 4, 16, 16)
    model = create_compressor("resampler2d", dim=16, num_queries=2, depth=1, num_heads=2)
    assert result["output_tokens"] == model.num_output_tokens(4, 16) == 8
    assert result["parameters"] == cost.count_parameters(model)
    assert result["flops"] == 2 * result["macs"] > 0
    assert "error" not in result and result["peak_mb"] >= 0


def test_a_compressor_that_uses_attention_is_costed_with_one():
    model = create_compressor("visionzip", dim=16)
    attention = cost.compressor_extras(model, 4, 16, batch=2)["attention"]
    assert attention.shape == (2, 4, 16)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(2, 4))
    assert cost.compressor_extras(create_compressor("tome", dim=16), 4, 16) == {}
    result = cost.compressor_cost("visionzip", {}, 4, 16, 16)
    assert "error" not in result and result["output_tokens"] == model.num_output_tokens(4, 16)


def test_frame_counts_and_growth_exponent():
    assert scaling.frame_counts(16, 100) == [16, 32, 64]
    assert scaling.growth_exponent([(16, 1.0), (32, 2.0), (64, 8.0)]) == pytest.approx(2.0)
    assert math.isnan(scaling.growth_exponent([(16, 1.0)]))
    with pytest.raises(ValueError, match="min_frames <= max_frames, got 32 and 16"):
        scaling.frame_counts(32, 16)


def test_scaling_benchmark(tmp_path):
    out = tmp_path / "scaling.png"
    args = namespace(scaling, compressors=["avgpool2d"], dim=16, tokens_per_frame=16, min_frames=4, max_frames=8)
    args.out = str(out)
    result = scaling.run(args)
    assert [(row["frames"], row["status"]) for row in result["rows"]] == [(4, "ok"), (8, "ok")]
    assert all(row["seconds"] > 0 and row["peak_mb"] >= 0 for row in result["rows"])
    assert result["summary"][0]["max_frames_ok"] == 8
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scaling_stops_a_method_at_its_limit():
    rows = scaling.scale_compressor("avgpool2d", [4, 8, 16], 16, 16, limit_seconds=0.0, limit_mb=1024, threads=1)
    assert [(row["frames"], row["status"]) for row in rows] == [(4, scaling.LIMIT)]


def test_prefill_benchmark_ratios_are_exact():
    args = namespace(
        prefill,
        compressors=["none", "avgpool2d", "frame-mean"],
        frames=4,
        tokens_per_frame=16,
        dim=16,
        layers=1,
        hidden=64,
        text_tokens=4,
        repeats=1,
    )
    result = prefill.run(args)
    full = 4 * 16 + 4
    assert result["uncompressed_tokens"] == full
    rows = {row["compressor"]: row for row in result["rows"]}
    assert rows["none"]["speedup"] == 1.0 and rows["none"]["reduction"] == 1.0
    for method in ("avgpool2d", "frame-mean"):
        tokens = create_compressor(method, dim=16).num_output_tokens(4, 16) + 4
        assert rows[method]["llm_tokens"] == tokens
        assert rows[method]["reduction"] == full / tokens
        assert rows[method]["speedup_per_reduction"] == pytest.approx(rows[method]["speedup"] / (full / tokens))
        assert rows[method]["prefill_s"] > 0 and rows[method]["compressor_s"] > 0


def test_prefill_with_a_budget_skips_methods_that_cannot_fit():
    args = namespace(
        prefill,
        compressors=["none", "tome"],
        frames=4,
        tokens_per_frame=16,
        dim=16,
        layers=1,
        hidden=64,
        text_tokens=0,
        repeats=1,
        budget=8,
    )
    result = prefill.run(args)
    assert [row["compressor"] for row in result["rows"]] == ["tome"]
    assert result["rows"][0]["llm_tokens"] == 8
    assert result["skipped"][0]["compressor"] == "none" and "cannot fit" in result["skipped"][0]["reason"]


def test_streaming_benchmark():
    configs = streaming.streaming_configs()
    assert "none" in configs
    assert all(create_compressor(name, dim=16, **config).supports_streaming for name, config in configs.items())
    # 512 frames of 100 x 256 fp32 tokens are 52 MB: kept anywhere (a leak), the stream would not be flat
    args = namespace(streaming, compressors=["none"], frames=[8, 512], tokens_per_frame=100, dim=256)
    row = streaming.run(args)["rows"][0]
    assert row["compressor"] == "none" and row["config"] == {}
    assert row["seconds_8"] > 0 and row["seconds_512"] > row["seconds_8"]
    assert row["flat"] and row["growth_mb"] < 10 and row["growth"] == row["peak_mb_512"] / row["peak_mb_8"] - 1


def test_measure_reports_an_allocation_past_the_memory_limit():
    args = {"method": "avgpool2d", "config": {}, "num_frames": 64, "tokens_per_frame": 256, "dim": 256}
    limited = measure("vtc.bench.cost:prepare_compressor", threads=1, memory_limit_mb=1, **args)
    assert "can't allocate memory" in limited["error"] and math.isnan(limited["seconds"])
    free = measure("vtc.bench.cost:prepare_compressor", threads=1, repeats=2, **args)
    assert "error" not in free and free["seconds"] > 0 and free["peak_mb"] > 1


def test_measured_peak_is_the_call_s_own_not_the_parent_s():
    args = {"method": "avgpool2d", "config": {}, "num_frames": 8, "tokens_per_frame": 16, "dim": 16}
    parent_memory = torch.ones(200 * 2**20)  # 800 MB resident in this process when the child is spawned
    peak = measure("vtc.bench.cost:prepare_compressor", threads=1, **args)["peak_mb"]
    assert parent_memory[-1] == 1 and 0 <= peak < 100


@pytest.mark.parametrize("module", [scan, scaling, prefill, streaming])
def test_every_benchmark_takes_device_and_dtype_and_refuses_cuda_without_a_gpu(module, monkeypatch):
    args = namespace(module)
    assert (args.device, args.dtype) == ("cpu", "float32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args.device = "cuda"
    with pytest.raises(ValueError, match=r"--device cuda: torch\.cuda\.is_available\(\) is False"):
        module.run(args)


def test_device_and_dtype_checks():
    assert device.torch_dtype("bfloat16") is torch.bfloat16 and device.check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="dtype must be one of 'float32', 'float16', 'bfloat16', got 'int8'"):
        device.torch_dtype("int8")
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'cuda', got 'tpu'"):
        device.check_device("tpu")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_calls_run_in_that_dtype(dtype, monkeypatch):
    """The prepared calls put the model and its inputs in `--dtype` (seen by the compressor's forward)."""
    seen = []
    original = torch.nn.Module.__call__

    def spy(module, *inputs, **kwargs):
        if inputs and isinstance(inputs[0], torch.Tensor):
            seen.append(inputs[0].dtype)
        return original(module, *inputs, **kwargs)

    scaling_call = cost.prepare_compressor("avgpool2d", {}, 2, 16, 16, dtype=dtype)
    stream_call = streaming.prepare_stream("none", {}, 2, 16, 16, dtype=dtype)
    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    scaling_call()
    stream_call()
    assert seen and set(seen) == {device.DTYPES[dtype]}
