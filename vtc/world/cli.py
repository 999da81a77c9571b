"""`vtc data synth --out DIR`: write the synthetic benchmark as mp4 files plus Charades-style and JSON-lines
annotations, so that the real loaders and the video decoder are exercised end to end.

Writes `DIR/videos/<video_id>.mp4`, `DIR/annotations.txt` (`VIDEOID start end##query`), `DIR/durations.csv`
(`id,length`), `DIR/annotations.jsonl` (moment_detr format) and, for the choice and needle variants,
`DIR/qa.jsonl`.

`vtc data check CONFIG.yaml [--set KEY=VALUE ...] [--json]`: load every split of a data config
(`vtc.train.data.check_data`) and print its counts, clamped windows, skipped lines and missing videos, and the
videos that splits share, without training; exit status 1 when a split is empty or two splits share a video.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

from vtc.train.config import load_train_config
from vtc.train.data import check_data
from vtc.utils.io import atomic_write_text, write_jsonl
from vtc.world.raster import write_mp4
from vtc.world.synthetic import VARIANTS, SyntheticMoments


def write_synthetic(dataset: SyntheticMoments, out: Path) -> dict[str, int | str]:
    """Render every sample of `dataset` under `out`; returns a summary."""
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    lines, moments, questions = [], [], []
    durations = io.StringIO()
    writer = csv.writer(durations, lineterminator="\n")
    writer.writerow(["id", "length"])
    for index in range(len(dataset)):
        video = dataset.render(index)
        write_mp4(videos / f"{video.video_id}.mp4", video.frames, dataset.fps)
        start, end = video.window
        lines.append(f"{video.video_id} {start:.2f} {end:.2f}##{video.query}\n")
        writer.writerow([video.video_id, f"{video.duration:.2f}"])
        record = {
            "qid": index,
            "query": video.query,
            "duration": video.duration,
            "vid": video.video_id,
            "relevant_windows": [[start, end]],
        }
        moments.append(record)
        if video.options is not None:
            questions.append(
                {
                    "qid": index,
                    "vid": video.video_id,
                    "question": video.question,
                    "options": video.options,
                    "answer": video.answer,
                    "duration": video.duration,
                }
            )
    atomic_write_text(out / "annotations.txt", "".join(lines))
    atomic_write_text(out / "durations.csv", durations.getvalue())
    write_jsonl(out / "annotations.jsonl", moments)
    if questions:
        write_jsonl(out / "qa.jsonl", questions)
    return {"out": str(out), "videos": len(dataset), "questions": len(questions)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    synth = commands.add_parser("synth", help="write the synthetic benchmark as mp4 files and annotations")
    synth.add_argument("--out", type=Path, required=True, help="output directory")
    synth.add_argument("--num-videos", type=int, default=16)
    synth.add_argument("--duration", type=float, default=30.0, help="seconds per video")
    synth.add_argument("--fps", type=float, default=2.0)
    synth.add_argument("--frame-size", type=int, nargs="+", default=[64], metavar="PIXELS", help="side or H W")
    synth.add_argument("--num-distractors", type=int, default=4)
    synth.add_argument("--event-length", type=float, nargs=2, default=[4.0, 12.0], metavar=("MIN", "MAX"))
    synth.add_argument("--variant", choices=VARIANTS, default="moment")
    synth.add_argument("--needle-length", type=float, default=1.0, help="seconds")
    synth.add_argument("--seed", type=int, default=0)
    check = commands.add_parser("check", help="load every split of a data config and print what it holds")
    check.add_argument("config", nargs="+", type=Path, help="YAML config(s) holding a data section, merged in order")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. data.video_dir=null")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")


CHECK_COLUMNS = (
    ("items", "items"),
    ("videos", "videos"),
    ("read", "read"),
    ("loaded", "loaded"),
    ("clamped", "clamped"),
    ("end<=start", "skipped_bad_window"),
    ("bad line", "skipped_bad_line"),
    ("no duration", "missing_duration"),
    ("no video", "missing_video"),
)


def check_table(summary: dict[str, Any]) -> str:
    """`check_data`'s summary as a text table: one row a split, then the files, shared videos and missing ids."""
    widths = [max(len(title), 8) for title, _ in CHECK_COLUMNS]
    lines = ["split  " + " ".join(title.rjust(width) for (title, _), width in zip(CHECK_COLUMNS, widths, strict=True))]
    for split, entry in summary["splits"].items():
        cells = [str(entry.get(key, "-")).rjust(width) for (_, key), width in zip(CHECK_COLUMNS, widths, strict=True)]
        lines.append(f"{split:<6} " + " ".join(cells))
    for split, entry in summary["splits"].items():
        source = f"carved from {entry['carved_from']}" if "carved_from" in entry else entry.get("file")
        if source is not None:
            lines.append(
                f"{split}: {source}" + (f" (durations {entry['durations']})" if entry.get("durations") else "")
            )
        if entry.get("missing_video_ids"):
            lines.append(f"{split}: missing videos e.g. {', '.join(entry['missing_video_ids'])}")
    if "shared_videos" in summary:
        pairs = ", ".join(f"{pair} {count}" for pair, count in summary["shared_videos"].items())
        lines.append(f"videos shared between splits: {pairs}")
    if summary.get("videos_checked") is False:
        lines.append("video files not checked: data.video_dir is not set")
    return "\n".join(lines)


def check_failed(summary: dict[str, Any]) -> bool:
    """Whether a split is empty or two splits share a video."""
    empty = any(entry["items"] == 0 for entry in summary["splits"].values())
    return empty or any(summary.get("shared_videos", {}).values())


def run_check(args: argparse.Namespace) -> int:
    """`vtc data check`: print the summary (table or JSON); 1 when `check_failed`."""
    summary = check_data(load_train_config(args.config, args.set).data)
    print(json.dumps(summary, indent=2) if args.json else check_table(summary))
    return 1 if check_failed(summary) else 0


def run(args: argparse.Namespace) -> int:
    if args.action == "check":
        return run_check(args)
    if len(args.frame_size) not in (1, 2):
        raise ValueError(f"--frame-size takes one side or H W, got {len(args.frame_size)} numbers")
    dataset = SyntheticMoments(
        num_videos=args.num_videos,
        duration=args.duration,
        fps=args.fps,
        frame_size=args.frame_size[0] if len(args.frame_size) == 1 else tuple(args.frame_size),
        num_distractors=args.num_distractors,
        event_length=tuple(args.event_length),
        variant=args.variant,
        needle_length=args.needle_length,
        seed=args.seed,
    )
    print(json.dumps(write_synthetic(dataset, args.out)))
    return 0
