"""Multiple-choice video QA annotations as JSON lines.

One object a line: `question`, `options` (two or more strings), `answer` (index, letter or the option's text),
a video id (`vid`, `video_id` or `video`), optional `qid` (default: line position), `duration`, `video_path`
and `circular_group` (the source question of a rotated copy, see `vtc.eval.qa.circular_variants`).

A line that is not UTF-8 or not a JSON object, or whose `duration` is a number that is not finite, is skipped and
counted; a qid given on two lines is an error naming the qid and both lines (as for moment annotations).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vtc.data.base import LoadReport, annotation_records, finite_float, locate_video, record_video_id
from vtc.data.choices import parse_choice


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


def optional_duration(value: Any) -> float | None:
    """A record's optional `duration`: None when absent or not a number; `ValueError` for a number that is not
    finite (`Infinity`, `1e400`, an integer beyond the float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = finite_float(value)
    if number is None:
        raise ValueError(f"`duration` must be a finite number of seconds, got {value!r}")
    return number


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
    group = record.get("circular_group")
    return QAItem(
        qid=str(record.get("qid", default_qid)),
        video_id=video_id,
        video_path=None,
        question=question.strip(),
        options=tuple(options),
        answer=answer,
        duration=optional_duration(record.get("duration")),
        group=None if group is None else str(group),
    )


def load_choice_jsonl(
    annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None
) -> tuple[list[QAItem], LoadReport]:
    """Multiple-choice JSON lines; bad lines and missing videos are skipped and counted in the report.

    Raises:
        ValueError: a qid given on two lines (naming the qid and both lines).
    """
    report = LoadReport(source=str(annotations))
    items: list[QAItem] = []
    for line_number, record in annotation_records(annotations, report):
        try:
            item = choice_item_from_record(record, default_qid=str(report.read - 1))
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
