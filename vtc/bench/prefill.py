"""`vtc bench prefill`: LLM prefill latency for the uncompressed and each compressor's token count.

The LLM is a `LlamaForCausalLM` of a realistic shape with random weights (default 24 layers x 1024 hidden, SDPA
attention, logits of the last position only, as a generation prefill computes); nothing is downloaded. Its input is
the compressed visual tokens plus `--text-tokens` prompt tokens, as embeddings. Per compressor: prefill seconds, the
measured speedup over no compression, the token-reduction ratio of the LLM input, their ratio (goal >= 0.8), and the
compressor's own forward time as a share of the prefill time it saves (goal <= 10%).
"""

from __future__ import annotations

import argparse

import torch

from vtc.bench import format_table
from vtc.bench.cost import compressor_inputs, median_seconds
from vtc.bench.device import add_device_arguments, check_device, synchronized, torch_dtype
from vtc.budget import configure
from vtc.compressors import create_compressor, list_compressors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compressors", nargs="+", default=None, help="default: every registered compressor")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--tokens-per-frame", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1024, help="visual token width the compressors take")
    parser.add_argument("--budget", type=int, default=None, help="configure every compressor to this token budget")
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    add_device_arguments(parser)


def build_llm(layers: int, hidden: int, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A random-weight Llama causal LM: `hidden / 64` heads, MLP 2.75 x hidden (Llama's ratio), 32k vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden % 64:
        raise ValueError(f"hidden must be a multiple of 64 (head width), got {hidden}")
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=int(2.75 * hidden),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64,
        vocab_size=32000,
        max_position_embeddings=1 << 17,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device, dtype).eval()


def prefill_seconds(llm: torch.nn.Module, length: int, repeats: int, device: str) -> float:
    """Median seconds of one prefill of `length` input embeddings (batch 1)."""
    embeddings = torch.randn(1, length, llm.config.hidden_size, device=device, dtype=llm.dtype)

    def call() -> None:
        with torch.no_grad():
            llm(inputs_embeds=embeddings, logits_to_keep=1, use_cache=True)

    return median_seconds(synchronized(call, device), repeats=repeats, warmup=1)


def compressor_seconds(method: str, config: dict, args: argparse.Namespace) -> float:
    """Median seconds of the compressor's no-grad forward on one random video."""
    torch.manual_seed(0)
    dtype = torch_dtype(args.dtype)
    model = create_compressor(method, dim=args.dim, **config).to(args.device, dtype).eval()
    tokens = compressor_inputs(args.frames, args.tokens_per_frame, args.dim).to(args.device, dtype)

    def call() -> None:
        with torch.no_grad():
            model(tokens)

    return median_seconds(synchronized(call, args.device), repeats=args.repeats, warmup=1)


def run(args: argparse.Namespace) -> dict:
    check_device(args.device)
    torch.set_num_threads(args.threads)
    methods = args.compressors or list_compressors()
    llm = build_llm(args.layers, args.hidden, args.device, torch_dtype(args.dtype))
    full_length = args.frames * args.tokens_per_frame + args.text_tokens
    baseline = prefill_seconds(llm, full_length, args.repeats, args.device)
    prefill_by_length = {full_length: baseline}
    rows, skipped = [], []
    for method in methods:
        try:
            config, tokens = (
                configure(method, args.frames, args.tokens_per_frame, args.budget) if args.budget else ({}, None)
            )
        except ValueError as error:
            skipped.append({"compressor": method, "reason": str(error)})
            continue
        if tokens is None:
            tokens = (
                create_compressor(method, dim=args.dim).eval().num_output_tokens(args.frames, args.tokens_per_frame)
            )
        length = tokens + args.text_tokens
        if length not in prefill_by_length:
            prefill_by_length[length] = prefill_seconds(llm, length, args.repeats, args.device)
        seconds = prefill_by_length[length]
        compress_s = compressor_seconds(method, config, args)
        speedup, reduction = baseline / seconds, full_length / length
        saved = baseline - seconds
        rows.append(
            {
                "compressor": method,
                "llm_tokens": length,
                "prefill_s": seconds,
                "speedup": speedup,
                "reduction": reduction,
                "speedup_per_reduction": speedup / reduction,
                "compressor_s": compress_s,
                "compressor_share_of_saved": compress_s / saved if saved > 0 else float("nan"),
            }
        )
        if not args.json:
            print(format_table(rows[-1:], list(rows[-1])), flush=True)
    result = {
        "benchmark": "prefill",
        "llm": {"layers": args.layers, "hidden": args.hidden, "text_tokens": args.text_tokens},
        "frames": args.frames,
        "tokens_per_frame": args.tokens_per_frame,
        "dim": args.dim,
        "budget": args.budget,
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
        "uncompressed_tokens": full_length,
        "uncompressed_prefill_s": baseline,
        "rows": rows,
        "skipped": skipped,
    }
    if not args.json:
        print(
            f"\nuncompressed: {full_length} LLM tokens, prefill {baseline:.3g} s ({args.layers} x {args.hidden} Llama)"
        )
        print(format_table(rows, list(rows[0])) if rows else "no compressor measured")
        for skip in skipped:
            print(f"skipped {skip['compressor']}: {skip['reason']}")
    return result
