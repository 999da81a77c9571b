"""`vtc bench prefill`: time to first token and decode speed of an LLM fed uncompressed or compressed video tokens.

The LLM has random weights and SDPA attention; nothing is downloaded. `--shape` takes a published video LLM's
language model (`Qwen2ForCausalLM`, grouped-query attention) and its visual tokens per frame (`vtc.bench.shapes`:
`llava-onevision-0.5b`, `qwen2.5-vl-3b`); without it the LLM is a `LlamaForCausalLM` of `--layers` x `--hidden` fed
`--frames` x `--tokens-per-frame` tokens of width `--dim`. Its input is the (compressed) visual tokens plus
`--text-tokens` prompt tokens, as embeddings. The stages, each a median over `--repeats`:

- `compressor_s`: the compressor's no-grad forward on one random video.
- `prefill_s`: one forward over every LLM input token through all layers, with the logits of the last position only
  (what generation computes): it yields the first output token.
- `ttft_s` (time to first token) = `compressor_s` + `prefill_s`. The vision encoder runs before the compressor and
  costs the same for every method, so it is left out of every figure.
- `first_decode_s`: the first decode step (one token in, the KV cache of the prompt, the second output token out).
- `decode_s`: the median of the next `--decode-steps` decode steps, per token.
- `kv_mb`: the KV cache after the prefill, 2 x layers x KV heads x head width x tokens x bytes per value, in MiB.

The timed model's vocabulary has one word: the LM head (the projection of one position onto the full vocabulary) is
timed apart and added to the prefill and to each decode step, so that a 3B model's 1.2 GB embedding matrix is never in
memory beside the layers; the compressors all run before the model is built. With `--layers-measured K` the model has
only K of its identical decoder layers: the time spent inside them (hooks on the first and the last) is multiplied by
layers / K, the rest (rotary tables, masks, the final norm) is counted once. The ratios between token counts barely
depend on K (only through what is counted once). The table also has the prefill speedup over no compression, the
token-reduction ratio of the LLM input, their ratio (goal >= 0.8), the speedup of the time to first token, and the
compressor's time as a share of the prefill time it saves (goal <= 10%).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from vtc.bench import format_table
from vtc.bench.cost import median_seconds, prepare_compressor
from vtc.bench.device import add_device_arguments, check_device, synchronized, torch_dtype
from vtc.bench.shapes import SHAPES, LanguageModelShape, kv_cache_bytes, llama_shape
from vtc.budget import configure
from vtc.compressors import create_compressor, list_compressors

WARMUP_TOKENS = 16  # the prompt length of the one untimed generation that warms the model up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", choices=tuple(SHAPES), default=None, help="a video LLM's LM and visual tokens")
    parser.add_argument("--compressors", nargs="+", default=None, help="default: every registered compressor")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--tokens-per-frame", type=int, default=100, help="ignored with --shape")
    parser.add_argument("--dim", type=int, default=1024, help="visual token width the compressors take (not --shape)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=int, default=None, help="configure every compressor to this token budget")
    budget.add_argument(
        "--fractions", type=float, nargs="+", default=None, help="budgets as fractions of the uncompressed tokens"
    )
    parser.add_argument("--layers", type=int, default=24, help="Llama layers (ignored with --shape)")
    parser.add_argument("--hidden", type=int, default=1024, help="Llama width (ignored with --shape)")
    parser.add_argument("--layers-measured", type=int, default=None, help="time K layers, scale to all (default all)")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--decode-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    add_device_arguments(parser)


def video_setting(args: argparse.Namespace) -> tuple[LanguageModelShape, int, int, int]:
    """`(LM shape, groups, tokens per group, width)` of the run: the compressor's input is `[1, groups, tokens per
    group, width]` (a group is a frame, or Qwen2.5-VL's pair of frames)."""
    if args.shape is None:
        return llama_shape(args.layers, args.hidden), args.frames, args.tokens_per_frame, args.dim
    shape = SHAPES[args.shape]
    return shape.language_model, shape.groups(args.frames), shape.tokens_per_group, shape.vision_dim


def budgets(args: argparse.Namespace, visual_tokens: int) -> list[tuple[float | None, int | None]]:
    """`(fraction, token budget)` of each setting measured: `--fractions` of `visual_tokens`, `--budget`, or one
    setting with every compressor's default config (`(None, None)`)."""
    if args.fractions is None:
        return [(None, args.budget)]
    if not all(0 < fraction <= 1 for fraction in args.fractions):
        raise ValueError(f"--fractions must lie in (0, 1], got {args.fractions}")
    return [(fraction, int(fraction * visual_tokens)) for fraction in args.fractions]


def build_llm(
    shape: LanguageModelShape, layers: int, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """A random-weight causal LM of `shape` with `layers` of its decoder layers and a one-word vocabulary (its head is
    timed apart, `head_seconds`), in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(shape.config(layers=layers, vocab=1)).to(device, dtype).eval()


def head_seconds(shape: LanguageModelShape, repeats: int, device: str, dtype: torch.dtype) -> float:
    """Median seconds of the LM head on one position: `[1, 1, hidden] -> [1, 1, vocab]` logits."""
    torch.manual_seed(0)
    head = torch.nn.Linear(shape.hidden, shape.vocab, bias=False, device=device, dtype=dtype)
    position = torch.randn(1, 1, shape.hidden, device=device, dtype=dtype)

    def call() -> None:
        with torch.no_grad():
            head(position)

    return median_seconds(synchronized(call, device), repeats=repeats, warmup=1)


def now(device: str) -> float:
    """`time.perf_counter()` once the device's queued work is done."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter()


def scaled_seconds(llm: torch.nn.Module, call: Callable[[], None], scale: float, device: str) -> float:
    """Wall seconds of `call()`, with the time inside `llm`'s decoder layers (first layer's start to last layer's
    end) counted `scale` times: `llm` holds 1 / `scale` of the real model's identical layers."""
    marks: list[float] = []
    layers = llm.model.layers
    handles = [
        layers[0].register_forward_pre_hook(lambda *_: marks.append(now(device))),
        layers[-1].register_forward_hook(lambda *_: marks.append(now(device))),
    ]
    try:
        start = now(device)
        call()
        total = now(device) - start
    finally:
        for handle in handles:
            handle.remove()
    return total + (scale - 1) * (marks[1] - marks[0])


def generation_seconds(
    llm: torch.nn.Module, length: int, scale: float, head_s: float, decode_steps: int, repeats: int, device: str
) -> dict[str, float]:
    """Median `prefill_s` of `length` input embeddings (batch 1), `first_decode_s` of the decode step after it and
    `decode_s` per step of the `decode_steps` steps after that, each with the KV cache, the layers' time scaled by
    `scale` (`scaled_seconds`) and the LM head's `head_s` added."""
    from transformers import DynamicCache

    if decode_steps < 1 or repeats < 1:
        raise ValueError(f"decode_steps and repeats must be >= 1, got {decode_steps}, {repeats}")
    hidden = llm.config.hidden_size
    prompt = torch.randn(1, length, hidden, device=device, dtype=llm.dtype)
    token = torch.randn(1, 1, hidden, device=device, dtype=llm.dtype)
    prefill, first, later = [], [], []
    for _ in range(repeats):
        cache = DynamicCache(config=llm.config)

        def forward(embeddings: torch.Tensor, cache: DynamicCache = cache) -> None:
            with torch.no_grad():
                llm(inputs_embeds=embeddings, cache=cache, use_cache=True, logits_to_keep=1)

        prefill.append(scaled_seconds(llm, lambda: forward(prompt), scale, device))
        steps = [scaled_seconds(llm, lambda: forward(token), scale, device) for _ in range(decode_steps + 1)]
        first.append(steps[0])
        later.append(statistics.median(steps[1:]))
    return {
        "prefill_s": statistics.median(prefill) + head_s,
        "first_decode_s": statistics.median(first) + head_s,
        "decode_s": statistics.median(later) + head_s,
    }


def compressor_seconds(
    method: str, config: dict, groups: int, tokens: int, dim: int, args: argparse.Namespace
) -> float:
    """Median seconds of the compressor's no-grad forward on one random video `[1, groups, tokens, dim]`."""
    call = prepare_compressor(method, config, groups, tokens, dim, device=args.device, dtype=args.dtype)
    return median_seconds(synchronized(call, args.device), repeats=args.repeats, warmup=1)


def run(args: argparse.Namespace) -> dict:
    check_device(args.device)
    torch.set_num_threads(args.threads)
    methods = args.compressors or list_compressors()
    dtype = torch_dtype(args.dtype)
    shape, groups, tokens_per_group, dim = video_setting(args)
    measured = shape.layers if args.layers_measured is None else args.layers_measured
    if not 1 <= measured <= shape.layers:
        raise ValueError(f"--layers-measured must be in [1, {shape.layers}], got {measured}")
    visual_tokens = groups * tokens_per_group
    full_length = visual_tokens + args.text_tokens
    planned, skipped = [], []  # every compressor runs before the LLM is built: their peaks never add up
    for fraction, budget in budgets(args, visual_tokens):
        for method in methods:
            try:
                config, tokens = configure(method, groups, tokens_per_group, budget) if budget else ({}, None)
            except ValueError as error:
                skipped.append({"compressor": method, "fraction": fraction, "reason": str(error)})
                continue
            if tokens is None:
                tokens = create_compressor(method, dim=dim).eval().num_output_tokens(groups, tokens_per_group)
            compress_s = compressor_seconds(method, config, groups, tokens_per_group, dim, args)
            planned.append((method, fraction, tokens + args.text_tokens, compress_s))
    head_s = head_seconds(shape, args.repeats, args.device, dtype)
    llm = build_llm(shape, measured, args.device, dtype)
    scale = shape.layers / measured

    def stages(length: int) -> dict[str, float]:
        seconds = generation_seconds(llm, length, scale, head_s, args.decode_steps, args.repeats, args.device)
        return {**seconds, "kv_mb": kv_cache_bytes(shape, length, dtype.itemsize) / 2**20}

    generation_seconds(llm, WARMUP_TOKENS, scale, head_s, 1, 1, args.device)
    baseline = stages(full_length)
    stages_by_length = {full_length: baseline}
    rows = []
    for method, fraction, length, compress_s in planned:
        if length not in stages_by_length:
            stages_by_length[length] = stages(length)
        measured_stages = stages_by_length[length]
        speedup, reduction = baseline["prefill_s"] / measured_stages["prefill_s"], full_length / length
        saved = baseline["prefill_s"] - measured_stages["prefill_s"]
        ttft_s = compress_s + measured_stages["prefill_s"]
        rows.append(
            {
                "compressor": method,
                **({} if fraction is None else {"fraction": fraction}),
                "llm_tokens": length,
                "compressor_s": compress_s,
                "prefill_s": measured_stages["prefill_s"],
                "ttft_s": ttft_s,
                "first_decode_s": measured_stages["first_decode_s"],
                "decode_s": measured_stages["decode_s"],
                "kv_mb": measured_stages["kv_mb"],
                "speedup": speedup,
                "ttft_speedup": baseline["prefill_s"] / ttft_s,
                "reduction": reduction,
                "speedup_per_reduction": speedup / reduction,
                "compressor_share_of_saved": compress_s / saved if saved > 0 else float("nan"),
            }
        )
        if not args.json:
            print(format_table(rows[-1:], list(rows[-1])), flush=True)
    result = {
        "benchmark": "prefill",
        "shape": args.shape,
        "llm": {**dataclasses.asdict(shape), "text_tokens": args.text_tokens},
        "layers_measured": measured,
        "frames": args.frames,
        "groups": groups,
        "tokens_per_group": tokens_per_group,
        "dim": dim,
        "budget": args.budget,
        "fractions": args.fractions,
        "decode_steps": args.decode_steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
        "head_s": head_s,
        "uncompressed_tokens": full_length,
        "uncompressed_prefill_s": baseline["prefill_s"],
        "uncompressed": baseline,
        "rows": rows,
        "skipped": skipped,
    }
    if not args.json:
        name = args.shape or f"{shape.layers} x {shape.hidden} Llama"
        print(f"\nuncompressed: {full_length} LLM tokens into {name}, {measured} of {shape.layers} layers timed")
        print(
            format_table(
                [{"compressor": "uncompressed", "llm_tokens": full_length, **baseline}],
                ["compressor", "llm_tokens", *baseline],
            )
        )
        print(format_table(rows, list(rows[0])) if rows else "no compressor measured")
        for skip in skipped:
            print(f"skipped {skip['compressor']}: {skip['reason']}")
    return result
