"""`vtc predict VIDEO QUERY [QUERY ...] --model DIR`: answer queries about one video, encoding it once; prints each
answer, the window it names, the video tokens the language model received and the seconds of each stage."""

from __future__ import annotations

import argparse
import json

from vtc.integrations.predictor import STAGES, Predictor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file")
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="one or more questions or moment queries")
    parser.add_argument("--model", required=True, help="a vtc checkpoint folder or a local Hugging Face video LLM")
    parser.add_argument("--compressor", help="registered compressor name (default: the checkpoint's, or none)")
    parser.add_argument("--budget", type=float, help="fraction of the video's tokens to keep, in (0, 1]")
    parser.add_argument("--num-frames", type=int, default=8, help="frames of a Hugging Face model (default 8)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="answer length of a Hugging Face model")
    parser.add_argument("--json", action="store_true", help="one JSON object per query instead of text")


def run(args: argparse.Namespace) -> int:
    predictor = Predictor.from_pretrained(
        args.model, args.compressor, args.budget, num_frames=args.num_frames, max_new_tokens=args.max_new_tokens
    )
    predictor.encode_video(args.video)
    for query in args.queries:
        prediction = predictor.answer(query)
        if args.json:
            print(json.dumps({"query": query, **vars(prediction)}))
            continue
        times = ", ".join(f"{stage} {prediction.seconds.get(stage, 0.0):.3f}" for stage in STAGES)
        print(f"query: {query}\nanswer: {prediction.text}\nwindow: {prediction.window}")
        print(f"video tokens: {prediction.video_tokens}\nseconds: {times}")
    return 0
