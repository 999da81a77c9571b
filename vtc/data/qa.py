"""Multiple-choice video QA annotations as JSON lines.

One object a line: `question`, `options` (two or more strings), `answer` (index, letter or the option's text),
a video id (`vid`, `video_id` or `video`), optional `qid` (default: line position), `duration`, `video_path`
and `circular_group` (the source question of a rotated copy, see `vtc.eval.qa.circular_variants`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vtc.data.base import LoadReport, locate_video, record_video_id
from vtc.data.choices import parse_choice
from vtc.utils.io import read_jsonl


@dataclass(frozen=True)
class QAItem:
    """One multiple-choice question; `answer` indexes `options`; `group` ties rotated copies together."""

    qid: str
    video_id: str
    video_path: Path | None
    question: str
    options: tuple[str, ...]
    answer: int
    duration: float | None = None
    group: str | None = None


def choice_item_from_record(record: Mapping[str, Any], default_qid: str) -> QAItem:
    """One JSON-lines record as a `QAItem` (video not resolved); `ValueError` saying what is wrong."""
    options = record.get("options")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise ValueError(f"`options` must be a list of two or more strings, got {options!r}")
    answer = parse_choice(record.get("answer"), options)
    if answer is None:
        raise ValueError(f"`answer` {record.get('answer')!r} names none of the {len(options)} options")
    question = record.get("question", record.get("query"))
    if not isinstance(question, str) or not question.strip():
        raise ValueError("needs a non-empty `question`")
    video_id = record_video_id(record) or ""
    duration = record.get("duration")
    group = record.get("circular_group")
    return QAItem(
        qid=str(record.get("qid", default_qid)),
        video_id=video_id,
        video_path=None,
        question=question.strip(),
        options=tuple(options),
        answer=answer,
        duration=float(duration) if isinstance(duration, (int, float)) else None,
        group=None if group is None else str(group),
    )


def load_choice_jsonl(
    annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None
) -> tuple[list[QAItem], LoadReport]:
    """Multiple-choice JSON lines; bad lines and missing videos are skipped and counted in the report."""
    report = LoadReport(source=str(annotations))
    items: list[QAItem] = []
    for line_number, record in enumerate(read_jsonl(annotations), start=1):
        report.read += 1
        try:
            item = choice_item_from_record(record, default_qid=str(line_number - 1))
        except ValueError as error:
            report.skipped_bad_line += 1
            report.note(line_number, str(error))
            continue
        video_path = record.get("video_path")
        if video_dir is not None or video_path is not None:
            path = locate_video(video_dir, item.video_id, video_path)
            if path is None:
                report.note_missing_video(item.video_id)
                continue
            item = replace(item, video_path=path)
        items.append(item)
        report.loaded += 1
    return items, report.log()
