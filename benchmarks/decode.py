"""Decoding speed: `load_video(num_frames=...)` against decoding every frame, for each shared video.

    python benchmarks/decode.py [--num-frames 8] [--repeats 3] [--videos DIR] [--json]

Prints a table (or, with `--json`, one JSON object): per video, the frames it has, the best-of-repeats wall
time of sampling `num_frames` frames and of decoding all frames to RGB, and both rates in frames per second.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from vtc.video import load_video

DEFAULT_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(path: Path, num_frames: int, repeats: int) -> dict[str, float | int | str]:
    """Timings of sampled and full decoding of one video."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total_frames = load_video(path).frames.shape[0]
        sampled_s = best_time(lambda: load_video(path, num_frames=num_frames), repeats)
        all_s = best_time(lambda: load_video(path), repeats)
    return {
        "video": path.name,
        "frames": total_frames,
        "sampled_s": sampled_s,
        "sampled_fps": num_frames / sampled_s,
        "all_s": all_s,
        "all_fps": total_frames / all_s,
        "speedup": all_s / sampled_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    paths = sorted(path for path in args.videos.glob("*") if path.is_file())
    if not paths:
        raise SystemExit(f"no videos in {args.videos}")
    rows = [measure(path, args.num_frames, args.repeats) for path in paths]
    if args.json:
        print(json.dumps({"num_frames": args.num_frames, "repeats": args.repeats, "videos": rows}))
        return
    print(f"load_video(num_frames={args.num_frames}) vs decoding every frame (best of {args.repeats})")
    header = f"{'video':<32}{'frames':>7}{'sampled ms':>12}{'sampled f/s':>13}{'all ms':>9}{'all f/s':>9}{'speedup':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['video']:<32}{row['frames']:>7}{row['sampled_s'] * 1e3:>12.1f}{row['sampled_fps']:>13.1f}"
            f"{row['all_s'] * 1e3:>9.1f}{row['all_fps']:>9.1f}{row['speedup']:>8.1f}x"
        )


if __name__ == "__main__":
    main()
