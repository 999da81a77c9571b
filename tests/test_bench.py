"""Cost measurement and the scaling / prefill / streaming benchmarks on tiny sizes: structure and sane figures."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn
from transformers import DynamicCache

from vtc.bench import cost, device, prefill, scaling, scan, shapes, streaming
from vtc.bench.measure import measure, measure_interleaved
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


def test_shape_presets_match_the_published_configs():
    from transformers import AutoModelForCausalLM

    expected = {  # layers, heads, KV heads, head width, MLP, frames per group, tokens per group, width
        "llava-onevision-0.5b": (24, 14, 2, 64, 4864, 1, 196, 896),
        "qwen2.5-vl-3b": (36, 16, 2, 128, 11008, 2, 256, 2048),
    }
    for name, (layers, heads, kv_heads, head_dim, mlp, frames, tokens, width) in expected.items():
        shape = shapes.SHAPES[name]
        with torch.device("meta"):
            llm = AutoModelForCausalLM.from_config(shape.language_model.config())
        assert type(llm).__name__ == "Qwen2ForCausalLM" and llm.config._attn_implementation == "sdpa"
        attention, mlp_layer = llm.model.layers[0].self_attn, llm.model.layers[0].mlp
        assert len(llm.model.layers) == layers and llm.config.vocab_size == 151936
        assert attention.q_proj.out_features == heads * head_dim == llm.config.hidden_size == width
        assert attention.k_proj.out_features == kv_heads * head_dim and mlp_layer.up_proj.out_features == mlp
        assert (shape.frames_per_group, shape.tokens_per_group, shape.vision_dim) == (frames, tokens, width)
    assert shapes.SHAPES["qwen2.5-vl-3b"].groups(64) == 32 and shapes.SHAPES["llava-onevision-0.5b"].groups(64) == 64
    with pytest.raises(ValueError, match="frames must be a positive multiple of 2, got 63"):
        shapes.SHAPES["qwen2.5-vl-3b"].groups(63)


def test_kv_cache_size_is_the_cache_the_model_fills():
    qwen = shapes.SHAPES["qwen2.5-vl-3b"].language_model
    assert shapes.kv_cache_bytes(qwen, 1000, 2) == 2 * 36 * 2 * 128 * 1000 * 2 == 36_864_000
    tiny = shapes.LanguageModelShape("qwen2", layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128, vocab=1)
    llm = prefill.build_llm(tiny, layers=2)
    cache = DynamicCache(config=llm.config)
    with torch.no_grad():
        llm(inputs_embeds=torch.randn(1, 7, 64), cache=cache, use_cache=True)
    filled = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert filled == shapes.kv_cache_bytes(tiny, 7, 4) == 2 * 2 * 2 * 16 * 7 * 4


def test_scaled_seconds_counts_the_layers_time_scale_times(monkeypatch):
    """Clock ticks 1 s per reading: start 0, first layer starts 1, last layer ends 2, end 3."""
    ticks = iter(range(10))
    monkeypatch.setattr(prefill, "now", lambda device: float(next(ticks)))
    tiny = shapes.LanguageModelShape("qwen2", layers=4, hidden=64, heads=4, kv_heads=2, intermediate=128, vocab=1)
    llm = prefill.build_llm(tiny, layers=2)
    with torch.no_grad():
        call = lambda: llm(inputs_embeds=torch.randn(1, 3, 64))  # noqa: E731
        assert prefill.scaled_seconds(llm, call, scale=2.0, device="cpu") == 3.0 + 1.0
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in llm.model.layers)


def test_prefill_stages_sum_to_the_time_to_first_token():
    args = namespace(
        prefill,
        compressors=["avgpool2d", "tome"],
        frames=4,
        tokens_per_frame=16,
        dim=16,
        layers=2,
        hidden=64,
        text_tokens=4,
        repeats=1,
        decode_steps=2,
        layers_measured=1,
        fractions=[0.5, 0.25],
    )
    result = prefill.run(args)
    assert result["layers_measured"] == 1 and result["llm"]["layers"] == 2 and result["head_s"] > 0
    assert [(row["compressor"], row["fraction"]) for row in result["rows"]] == [
        ("avgpool2d", 0.5),
        ("tome", 0.5),
        ("avgpool2d", 0.25),
        ("tome", 0.25),
    ]
    for row in result["rows"]:
        assert row["llm_tokens"] - 4 <= 64 * row["fraction"]
        assert row["ttft_s"] == row["compressor_s"] + row["prefill_s"]
        assert row["ttft_speedup"] == result["uncompressed"]["prefill_s"] / row["ttft_s"]
        assert row["kv_mb"] == 2 * 2 * 1 * 64 * row["llm_tokens"] * 4 / 2**20
        assert min(row["prefill_s"], row["first_decode_s"], row["decode_s"]) > result["head_s"]
    with pytest.raises(ValueError, match=r"--layers-measured must be in \[1, 2\], got 3"):
        prefill.run(namespace(prefill, layers=2, hidden=64, layers_measured=3))
    with pytest.raises(ValueError, match=r"--fractions must lie in \(0, 1\], got \[0.0\]"):
        prefill.run(
            namespace(
                prefill,
                compressors=["tome"],
                frames=2,
                tokens_per_frame=4,
                dim=16,
                layers=1,
                hidden=64,
                repeats=1,
                decode_steps=1,
                fractions=[0.0],
            )
        )


def test_streaming_benchmark():
    configs = streaming.streaming_configs()
    assert "none" in configs
    assert all(create_compressor(name, dim=16, **config).supports_streaming for name, config in configs.items())
    # 512 frames of 100 x 256 fp32 tokens are 52 MB: kept anywhere (a leak), the stream would not be flat
    args = namespace(streaming, compressors=["none"], frames=[8, 512], tokens_per_frame=100, dim=256)
    result = streaming.run(args)
    row = result["rows"][0]
    assert result["exact_host_memory"] and row["compressor"] == "none" and row["config"] == {}
    assert row["seconds_8"] > 0 and row["seconds_512"] > row["seconds_8"]
    assert row["flat"] and row["growth_mb"] < 10 and row["growth"] == row["peak_mb_512"] / row["peak_mb_8"] - 1


def test_measure_reports_an_allocation_past_the_memory_limit():
    args = {"method": "avgpool2d", "config": {}, "num_frames": 64, "tokens_per_frame": 256, "dim": 256}
    limited = measure("vtc.bench.cost:prepare_compressor", threads=1, memory_limit_mb=1, **args)
    assert "can't allocate memory" in limited["error"] and math.isnan(limited["seconds"])
    free = measure("vtc.bench.cost:prepare_compressor", threads=1, repeats=2, **args)
    assert "error" not in free and free["seconds"] > 0 and free["peak_mb"] > 1


def test_exact_host_memory_measures_the_live_peak_of_a_known_allocation():
    """With the allocator's thresholds fixed, the peak of a call that holds 128 x 256 x 256 fp32 tokens (32 MB) at
    once is those 32 MB and a little, in both modes; the mode only removes glibc's retention of freed blocks."""
    args = {"method": "none", "config": {}, "num_frames": 128, "tokens_per_frame": 256, "dim": 256}
    for exact in (True, False):
        result = measure("vtc.bench.cost:prepare_compressor", threads=1, exact_host_memory=exact, **args)
        assert "error" not in result and 32 <= result["peak_mb"] < 120, (exact, result)


def prepare_recorder(path: str, name: str) -> Callable[[], None]:
    """A call that appends `name` to the file at `path` (a target for `measure_interleaved`)."""

    def call() -> None:
        with open(path, "a") as handle:
            handle.write(name)

    return call


def test_interleaved_variants_are_called_in_turn_in_one_process(tmp_path):
    log = tmp_path / "calls"
    variants = {name: {"path": str(log), "name": name} for name in ("a", "b")}
    seconds = measure_interleaved("test_bench:prepare_recorder", variants, threads=1, repeats=3)
    assert log.read_text() == "ababab"
    assert set(seconds) == {"a", "b"} and all(0 < value < 10 for value in seconds.values())
    broken = measure_interleaved("test_bench:prepare_recorder", {"a": {"path": str(log)}}, threads=1)
    assert math.isnan(broken["a"])  # prepare failed in the child: NaN, not a hang


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
