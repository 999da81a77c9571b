"""One row of the demo with a compressor config given by hand instead of the budget solver's: adapted from the
shipped base exactly as `vtc demo` adapts its rows (same settings, seed, steps and test videos), then scored.

The demo's MambaMia row keeps 3 of 8 frames at 1/4 (the solver keeps the paper's s = 1/3 and shrinks k); this runs
the same method with all frames kept at the same budget:

    .venv/bin/python benchmarks/demo_config_row.py '{"name": "mambamia", "query_interval": 4, "frame_ratio": 1.0}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import vtc.world  # noqa: F401  (registers the synthetic data source)
from vtc.world.compare.run import base_config, tokens_per_frame, train_and_evaluate
from vtc.world.demo import add_arguments, demo_settings
from vtc.world.source import synthetic_test_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compressor", type=json.loads, help='a compressor config, e.g. {"name": "tome", "r": 24}')
    add_arguments(parser)
    args = parser.parse_args()
    settings = demo_settings(args)
    settings.progress = False
    config = base_config(settings, Path(args.out) / "config_row", 0, args.compressor)
    test = synthetic_test_samples(config.data, settings.num_test)
    tokens = (config.data.num_frames, tokens_per_frame(config))
    result = train_and_evaluate(config, test, tokens, {}, measure_memory=False)
    print(json.dumps({"compressor": args.compressor, "llm_tokens": result["llm_tokens"], **result["metrics"]}))


if __name__ == "__main__":
    main()
