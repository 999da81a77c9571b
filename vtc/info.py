"""`vtc info [NAME]`: list compressors, or show one's family, configuration, parameter count and output token count.

Everything comes from what each compressor declares in its `MethodCard`: `vtc info NAME --paper` builds the declared
paper configuration (and names where in the paper it comes from), so a user sees the cost before building.
"""

from __future__ import annotations

import argparse
import json

from vtc.compressors import compressor_class, create_compressor, list_compressors
from vtc.utils.options import parse_key_values


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
    parser.add_argument("--frames", type=int, default=128, help="frames T for the token count")
    parser.add_argument("--tokens-per-frame", type=int, default=100, help="tokens per frame N for the token count")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (JSON values)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list_compressors()
    rows = []
    for name in names:
        card = compressor_class(name).card
        paper = args.paper and card.paper_config is not None
        config = dict(card.paper_config) if paper else {"dim": args.dim}
        config.update(parse_key_values(args.set))
        row = describe(name, config, args.frames, args.tokens_per_frame)
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
