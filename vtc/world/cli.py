"""`vtc data synth --out DIR`: write the synthetic benchmark as mp4 files plus Charades-style and JSON-lines
annotations, so that the real loaders and the video decoder are exercised end to end.

Writes `DIR/videos/<video_id>.mp4`, `DIR/annotations.txt` (`VIDEOID start end##query`), `DIR/durations.csv`
(`id,length`), `DIR/annotations.jsonl` (moment_detr format) and, for the choice and needle variants,
`DIR/qa.jsonl`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

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


def run(args: argparse.Namespace) -> int:
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
