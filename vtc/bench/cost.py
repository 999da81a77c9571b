"""Per-sample cost of a module call: parameters, FLOPs and MACs, latency, and peak memory.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over the whole call: it counts the matrix products
(linear, matmul, bmm, convolutions, scaled-dot-product attention) at 2 FLOPs per multiply-accumulate, so
MACs = FLOPs / 2; element-wise work (norms, activations, the selective scan's recurrence) is not counted.
Latency is the median of a few timed calls in this process; peak memory needs a process of its own (a process's
high-water mark never goes down), so `compressor_cost` measures it through `vtc.bench.measure`.
`lmm_sample_flops` counts a whole `VideoLMM` per sample by part, also one built on the meta device (`vtc.lmm.meta`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vtc.bench.device import torch_dtype
from vtc.bench.measure import measure
from vtc.compressors import create_compressor

# The largest compressor (parameters) and input (elements) that `compressor_flops` runs for real beside a meta model.
REAL_RUN_LIMITS = {"parameters": 16_000_000, "inputs": 1_000_000}


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in module.parameters())


def count_flops(call: Callable[[], Any]) -> int:
    """FLOPs of one `call()` as counted by `FlopCounterMode` (2 per multiply-accumulate).

    The call runs with autograd enabled: the counter's module tracker fails on parameters fed to a submodule under
    `no_grad`. The forward FLOPs are the same; the graph is dropped with the output.
    """
    with FlopCounterMode(display=False) as counter, torch.enable_grad():
        call()
    return counter.get_total_flops()


def median_seconds(call: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def module_cost(module: nn.Module, *inputs: Any, repeats: int = 5, **kwargs: Any) -> dict[str, float]:
    """Cost of `module(*inputs, **kwargs)`, timed under `no_grad`, per sample (the first input's dim 0 is the batch).

    Returns:
        `{"parameters", "flops", "macs", "latency_s"}`: whole-module parameters, and FLOPs, MACs and median seconds
        of one call divided by the batch size.
    """
    if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() == 0:
        raise ValueError("the first input must be a batched tensor [B, ...]")
    batch = inputs[0].shape[0]

    def call() -> None:
        with torch.no_grad():
            module(*inputs, **kwargs)

    flops = count_flops(lambda: module(*inputs, **kwargs))
    return {
        "parameters": count_parameters(module),
        "flops": flops / batch,
        "macs": flops / 2 / batch,
        "latency_s": median_seconds(call, repeats) / batch,
    }


def compressor_inputs(num_frames: int, tokens_per_frame: int, dim: int, batch: int = 1) -> torch.Tensor:
    """Random visual tokens `[batch, num_frames, tokens_per_frame, dim]` (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, num_frames, tokens_per_frame, dim, generator=generator)


def compressor_extras(model: nn.Module, num_frames: int, tokens_per_frame: int, batch: int = 1) -> dict[str, Any]:
    """The keyword inputs a compressor needs besides its tokens: for one that `uses_attention`, a random attention
    of each frame's [CLS] over its patches, `[batch, num_frames, tokens_per_frame]` summing to 1 per frame (seed 1)."""
    if not getattr(model, "uses_attention", False):
        return {}
    generator = torch.Generator().manual_seed(1)
    return {"attention": torch.randn(batch, num_frames, tokens_per_frame, generator=generator).softmax(dim=-1)}


def prepare_compressor(
    method: str,
    config: dict[str, Any],
    num_frames: int,
    tokens_per_frame: int,
    dim: int,
    batch: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
) -> Callable[[], None]:
    """The call `vtc.bench.measure` times: one no-grad forward of `method` in eval mode on random tokens (and
    `compressor_extras`), drawn on the CPU, then moved to `device` in `dtype`."""
    torch.manual_seed(0)
    model = create_compressor(method, dim=dim, **config).eval().to(device, torch_dtype(dtype))
    tokens = compressor_inputs(num_frames, tokens_per_frame, dim, batch).to(device, torch_dtype(dtype))
    extras = {
        key: value.to(device, torch_dtype(dtype))
        for key, value in compressor_extras(model, num_frames, tokens_per_frame, batch).items()
    }

    def call() -> None:
        with torch.no_grad():
            model(tokens, **extras)

    return call


def compressor_cost(
    method: str,
    config: dict[str, Any],
    num_frames: int,
    tokens_per_frame: int,
    dim: int,
    batch: int = 1,
    repeats: int = 3,
    threads: int = 1,
) -> dict[str, float]:
    """Per-sample cost of one compressor forward: `module_cost`'s figures, output tokens, and `peak_mb` of the
    call measured in a fresh process (`nan` with an `"error"` key when that process failed)."""
    torch.manual_seed(0)
    model = create_compressor(method, dim=dim, **config).eval()
    extras = compressor_extras(model, num_frames, tokens_per_frame, batch)
    cost = module_cost(model, compressor_inputs(num_frames, tokens_per_frame, dim, batch), repeats=repeats, **extras)
    cost["output_tokens"] = model.num_output_tokens(num_frames, tokens_per_frame)
    memory = measure(
        "vtc.bench.cost:prepare_compressor",
        threads=threads,
        method=method,
        config=config,
        num_frames=num_frames,
        tokens_per_frame=tokens_per_frame,
        dim=dim,
        batch=batch,
    )
    cost["peak_mb"] = memory["peak_mb"]
    if "error" in memory:
        cost["error"] = memory["error"]
    return cost


def text_lengths(
    model: Any, query: str = "the person opens the door", window: tuple[float, float] = (2.0, 7.5)
) -> dict:
    """Token counts of the text around the visual tokens of `model` (a `VideoLMM`): `prompt` (causal LMs, with BOS),
    `question` (with EOS for seq2seq) and `answer` (with EOS) for an example `query` and answer `window`."""
    builder = model.sequence_builder

    def length(text: str) -> int:
        return len(model.tokenizer(text, add_special_tokens=False).input_ids)

    answer = builder.answer_text({"window": [window], "duration": [max(window[1], 1.0)]})[0]
    prompt = 0 if builder.is_seq2seq else length(builder.prompt) + int(model.tokenizer.bos_token_id is not None)
    return {
        "prompt": prompt,
        "question": length(builder.question.format(query=query)) + int(builder.is_seq2seq),
        "answer": length(answer) + 1,
    }


def compressor_flops(compressor: nn.Module, tokens: torch.Tensor) -> int | None:
    """FLOPs of `compressor.compress` on `tokens [1, T, N, D]` (all frames valid, timestamps 0..T-1), or None.

    On the meta device most compressors cannot run (their steps read values: a mask check, a data-dependent count),
    so a meta `compressor` is rebuilt with random weights on the CPU (same config) and run on random tokens of that
    shape, but only while that stays small (`REAL_RUN_LIMITS`: a full-size sequence model's activations reach
    gigabytes); else None: not counted.
    """
    times = torch.arange(tokens.shape[1], dtype=torch.float32)[None]
    mask = torch.ones(1, tokens.shape[1], dtype=torch.bool)
    if tokens.device.type != "meta":
        return count_flops(lambda: compressor.compress(tokens, times.to(tokens.device), mask.to(tokens.device)))
    parameters, inputs = count_parameters(compressor), tokens.numel()
    if parameters > REAL_RUN_LIMITS["parameters"] or inputs > REAL_RUN_LIMITS["inputs"]:
        return None
    torch.manual_seed(0)
    real = create_compressor(compressor.registry_name, **compressor.config).eval()
    random = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(0))
    return count_flops(lambda: real.compress(random, times, mask))


def language_model_flops(model: Any, visual: int) -> int:
    """FLOPs of one forward pass of a `VideoLMM`'s language model (LoRA included) over `visual` visual tokens and
    `text_lengths`' text: a seq2seq LM's encoder reads visual + question, its decoder the answer; a causal LM reads
    prompt, visual tokens, question and answer."""
    text = text_lengths(model)
    embeddings = model.language_model.get_input_embeddings()
    length = text["prompt"] + visual + text["question"] + (0 if model.is_seq2seq else text["answer"])
    embeds = torch.zeros(1, length, embeddings.embedding_dim, dtype=embeddings.weight.dtype, device=model.device)
    if not model.is_seq2seq:
        return count_flops(lambda: model.llm(inputs_embeds=embeds))
    decoder = torch.zeros(1, text["answer"], dtype=torch.long, device=model.device)
    return count_flops(lambda: model.llm(inputs_embeds=embeds, decoder_input_ids=decoder))


def lmm_sample_flops(model: Any, num_frames: int | None = None) -> dict[str, int | None]:
    """FLOPs of one forward pass (answer included, as in training) of a `VideoLMM`, built on the meta device by
    `vtc.lmm.meta` or real, on one video of `num_frames` frames (the config's when None), by part, counted with
    `FlopCounterMode` as `count_flops`.

    The encoder encodes `[T, h, w, 3]` frames at its image size (no resize), the qformer and the compressor run on
    its tokens, the projector on the compressed ones, and the language model on visual and text tokens
    (`language_model_flops`; frame-time markers, `timestamp_tokens`, are not counted). Returns `{"encoder",
    "qformer", "compressor", "projector", "language_model", "total"}`; `compressor` is None where `compressor_flops`
    could not count it, and `total` then leaves it out.
    """
    from vtc.lmm.meta import visual_tokens

    if model.encoder is None:
        raise ValueError("a model on cached features (feature_dim) has no encoder: its FLOPs per sample need frames")
    frames = int(model.config["num_frames"] if num_frames is None else num_frames)
    device, flops = model.device, {}
    height, width = model.encoder.settings.size if hasattr(model.encoder, "settings") else (224, 224)
    pixels = torch.zeros(frames, height, width, 3, dtype=torch.uint8, device=device)
    flops["encoder"] = count_flops(lambda: model.encoder.encode(pixels))
    with torch.no_grad():
        features = model.encoder.encode(pixels)[None].to(device)
    flops["qformer"] = 0 if model.qformer is None else count_flops(lambda: model.qformer(features))
    if model.qformer is not None:
        with torch.no_grad():
            features = model.qformer(features)
    flops["compressor"] = compressor_flops(model.compressor, features)
    visual = visual_tokens(model, frames)
    compressed = torch.zeros(1, visual, features.shape[-1], device=device)
    flops["projector"] = count_flops(lambda: model.projector(compressed, torch.zeros(1, visual, device=device)))
    flops["language_model"] = language_model_flops(model, visual)
    flops["total"] = sum(value for value in flops.values() if value is not None)
    return flops
