"""`vtc info [NAME]`: list compressors, or show one's family, configuration, parameter count and output token count.

Everything comes from what each compressor declares in its `MethodCard`: `vtc info NAME --paper` builds the declared
paper configuration (and names where in the paper it comes from), so a user sees the cost before building.

`vtc info --config MODEL.yaml --meta` is a full-size dry run of a whole model: the configured `VideoLMM` is built on
the meta device from its folders' `config.json` (no weights, no memory; `vtc.lmm.meta`) and its total and trainable
parameters, tokens per frame, tokens to the language model and FLOPs / MACs per sample (`vtc.bench.cost`) printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from vtc.compressors import compressor_class, create_compressor, list_compressors
from vtc.utils.options import parse_key_values

DEFAULT_FRAMES = 128


def describe(name: str, config: dict, num_frames: int, tokens_per_frame: int) -> dict:
    """Build compressor `name` with `config`; its family, resolved config, parameter counts and output token count."""
    model = create_compressor(name, **config)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    output_tokens = model.num_output_tokens(num_frames, tokens_per_frame)
    return {
        "name": name,
        "family": model.card.family.value,
        "config": model.config,
        "parameters": parameters,
        "trainable_parameters": trainable,
        "input_tokens": num_frames * tokens_per_frame,
        "output_tokens": output_tokens,
        "streaming": model.supports_streaming,
        "num_frames": num_frames,
        "tokens_per_frame": tokens_per_frame,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="a registered compressor; omit to list them all")
    parser.add_argument("--dim", type=int, default=1024, help="token width D (ignored with --paper)")
    parser.add_argument("--paper", action="store_true", help="the paper-sized configuration, where one is declared")
    parser.add_argument(
        "--frames", type=int, help=f"frames T for the token count (default {DEFAULT_FRAMES}; --meta: the config's)"
    )
    parser.add_argument("--tokens-per-frame", type=int, default=100, help="tokens per frame N for the token count")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (JSON values; --meta: dotted paths)"
    )
    parser.add_argument("--config", action="append", default=[], help="model or train YAML (repeat to merge)")
    parser.add_argument("--meta", action="store_true", help="dry run of --config's whole model on the meta device")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def model_config(paths: list[str], overrides: list[str]) -> dict[str, Any]:
    """The `VideoLMM` config of YAML files merged in order with dotted `overrides`: a train config's `model.lmm`,
    or the file's whole mapping."""
    from vtc.train.config import merge, parse_override

    raw: dict[str, Any] = {}
    for path in paths:
        raw = merge(raw, yaml.safe_load(Path(path).read_text()) or {})
    for text in overrides:
        raw = merge(raw, parse_override(text))
    return raw["model"].get("lmm", {}) if isinstance(raw.get("model"), dict) else raw


def describe_model(config: dict[str, Any], num_frames: int | None) -> dict[str, Any]:
    """Dry run of the model of `config` on the meta device: parameters by part, trainable share, tokens per frame
    and to the LLM, and FLOPs / MACs of one forward pass per sample (`vtc.bench.cost.lmm_sample_flops`)."""
    from vtc.bench.cost import lmm_sample_flops, text_lengths
    from vtc.lmm.meta import build_meta_model, parameter_counts, tokens_per_frame, visual_tokens

    model = build_meta_model(config)
    frames = int(model.config["num_frames"] if num_frames is None else num_frames)
    parameters = parameter_counts(model)
    flops = lmm_sample_flops(model, frames)
    return {
        "parameters": parameters,
        "trainable_share": parameters["all"]["trainable"] / parameters["all"]["total"],
        "num_frames": frames,
        "tokens_per_frame": tokens_per_frame(model),
        "visual_tokens": visual_tokens(model, frames),
        "text_tokens": text_lengths(model),
        "flops": flops,
        "macs": {part: None if value is None else value / 2 for part, value in flops.items()},
        "load_in_4bit_ignored": bool(config.get("llm", {}).get("load_in_4bit")),
    }


def print_model(row: dict[str, Any]) -> None:
    """`describe_model`'s figures as a table."""
    print(f"{'part':<15}{'parameters':>16}{'trainable':>16}{'TFLOPs':>10}")
    for part, counts in row["parameters"].items():
        flops = row["flops"].get("total" if part == "all" else "language_model" if part == "llm" else part)
        shown = "-" if flops is None else f"{flops / 1e12:.3f}"
        print(f"{part:<15}{counts['total']:>16,}{counts['trainable']:>16,}{shown:>10}")
    print(f"trainable share: {100 * row['trainable_share']:.3f}%")
    print(
        f"tokens: {row['num_frames']} frames x {row['tokens_per_frame']} per frame -> {row['visual_tokens']:,} "
        "visual tokens to the LLM, with "
        + ", ".join(f"{n} {part}" for part, n in row["text_tokens"].items() if n)
        + " text tokens"
    )
    print(f"per sample: {row['flops']['total'] / 1e12:.3f} TFLOPs, {row['macs']['total'] / 1e12:.3f} TMACs")
    if row["flops"]["compressor"] is None:
        print("the compressor's FLOPs are not counted: it cannot run on the meta device and is too large to run here")
    if row["load_in_4bit_ignored"]:
        print("load_in_4bit is ignored on the meta device: the counts are those of the full-precision model")


def run(args: argparse.Namespace) -> int:
    if args.meta or args.config:
        if not (args.meta and args.config):
            raise ValueError("--meta needs --config MODEL.yaml, and --config is only read with --meta")
        row = describe_model(model_config(args.config, args.set), args.frames)
        if args.json:
            print(json.dumps(row, indent=2))
        else:
            print_model(row)
        return 0
    frames = DEFAULT_FRAMES if args.frames is None else args.frames
    names = [args.name] if args.name else list_compressors()
    rows = []
    for name in names:
        card = compressor_class(name).card
        paper = args.paper and card.paper_config is not None
        config = dict(card.paper_config) if paper else {"dim": args.dim}
        config.update(parse_key_values(args.set))
        row = describe(name, config, frames, args.tokens_per_frame)
        rows.append(row | {"paper_config": paper, "paper_source": card.paper_source if paper else None})
    if args.json:
        print(json.dumps(rows if args.name is None else rows[0], indent=2))
        return 0
    print(f"{'name':<14}{'family':<21}{'parameters':>14}{'tokens in':>11}{'tokens out':>12}  streaming  config")
    for row in rows:
        config = {k: v for k, v in row["config"].items() if k != "dim"}
        print(
            f"{row['name']:<14}{row['family']:<21}{row['parameters']:>14,}{row['input_tokens']:>11,}"
            f"{row['output_tokens']:>12,}  {'yes' if row['streaming'] else 'no':<9}  "
            f"dim={row['config']['dim']} {json.dumps(config)}"
        )
        if row["paper_source"]:
            print(f"{'':<14}paper: {row['paper_source']}")
    return 0
