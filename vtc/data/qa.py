"""Multiple-choice video QA annotations: vtc's JSON lines and the layouts that benchmarks publish.

vtc's layout (`jsonl`), one object a record: `question`, `options` (two or more strings), `answer` (index, letter or
the option's text), a video id (`vid`, `video_id` or `video`), optional `qid` (default: record position),
`duration`, `video_path` and `circular_group` (the source question of a rotated copy, see
`vtc.eval.qa.circular_variants`). The published layouts are renamings of it (`LAYOUT_RECORDS`):
- `videomme` (Video-MME's parquet / JSON records): `videoID` (the file stem), `question_id`, `question`,
  `options` as "A. text", `answer` a letter;
- `mlvu` and `mvbench` (one layout: MLVU's and MVBench's JSON lists): `video` (file name), `question`,
  `candidates`, `answer` the option's text, MLVU's `duration` seconds;
- `vnbench` (VNBench's JSON list): `video`, `question`, `options`, `gt` (text or index), `type` and `try`; its
  four tries of a question are rotations of one another, so `video_type` is their circular group.
Options that each open with their own letter ("A. text") lose that prefix once (`strip_option_letters`).

A file is JSON lines, a JSON list of records, or parquet (needs `pyarrow`). A record that is not a JSON object, or
lacks a field, or whose `duration` is a number that is not finite, is skipped and counted; a qid given twice is an
error naming the qid and both records (as for moment annotations).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from vtc.data.base import LoadReport, annotation_records, finite_float, locate_video, record_video_id
from vtc.data.choices import parse_choice, strip_option_letters
from vtc.utils.checks import check_choice


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
        options=tuple(strip_option_letters(options)),
        answer=answer,
        duration=optional_duration(record.get("duration")),
        group=None if group is None else str(group),
    )


def video_file_fields(record: Mapping[str, Any]) -> dict[str, str]:
    """`vid` (the file stem) and `video_file` (under the video folder) of a record that names its video file in
    `video`."""
    video = record.get("video")
    if not isinstance(video, str) or not video.strip():
        raise ValueError(f"needs `video`, the video's file name, got {video!r}")
    return {"vid": PurePosixPath(video).stem, "video_file": video}


def videomme_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A Video-MME record in vtc's layout (its `duration` is a length class, not seconds: dropped)."""
    return {
        "qid": record.get("question_id"),
        "vid": record.get("videoID", record.get("video_id")),
        "question": record.get("question"),
        "options": record.get("options"),
        "answer": record.get("answer"),
    }


def candidates_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """An MLVU or MVBench record (`video`, `question`, `candidates`, `answer`) in vtc's layout."""
    return {
        **video_file_fields(record),
        "qid": record.get("question_id"),
        "question": record.get("question"),
        "options": record.get("candidates"),
        "answer": record.get("answer"),
        "duration": record.get("duration"),
    }


def vnbench_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A VNBench record in vtc's layout; its tries share the circular group `video_type` and get the qid
    `video_type_try` unless they carry a `question_id`."""
    fields = video_file_fields(record)
    group = f"{fields['vid']}_{record.get('type')}"
    return {
        **fields,
        "qid": record.get("question_id", f"{group}_{record.get('try')}"),
        "question": record.get("question"),
        "options": record.get("options"),
        "answer": record.get("gt", record.get("answer")),
        "circular_group": group,
    }


LAYOUT_RECORDS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "jsonl": dict,
    "videomme": videomme_record,
    "mlvu": candidates_record,
    "mvbench": candidates_record,
    "vnbench": vnbench_record,
}
LAYOUTS: tuple[str, ...] = ("auto", *LAYOUT_RECORDS)


def detect_layout(record: Mapping[str, Any]) -> str:
    """The layout of a record by its keys: `gt` or `try` is VNBench, `videoID` Video-MME, `candidates` MLVU /
    MVBench, anything else vtc's own."""
    if "gt" in record or "try" in record:
        return "vnbench"
    if "videoID" in record:
        return "videomme"
    return "mlvu" if "candidates" in record else "jsonl"


def file_records(annotations: str | os.PathLike, report: LoadReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(position, record)` of every JSON object in a parquet file, a JSON list or JSON lines (each counted in
    `report.read`; anything else counted in `report.skipped_bad_line`)."""
    path = Path(annotations)
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet
        except ImportError as error:
            raise ValueError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from error
        records = pyarrow.parquet.read_table(path).to_pylist()
    else:
        with path.open("rb") as handle:
            opening = handle.read(64).lstrip()
        if not opening.startswith(b"["):
            yield from annotation_records(path, report)
            return
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable JSON list of records ({error})") from error
    for position, record in enumerate(records, start=1):
        report.read += 1
        if not isinstance(record, dict):
            report.skipped_bad_line += 1
            report.note(position, f"not a JSON object: {str(record)[:60]}")
            continue
        yield position, record


def load_choices(
    annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None, layout: str = "auto"
) -> tuple[list[QAItem], LoadReport]:
    """Multiple-choice questions of a file in one of `LAYOUTS` (`auto`: `detect_layout` of its first record);
    bad records and missing videos are skipped and counted in the report. Videos are looked for when `video_dir`
    is given or a vtc record gives a `video_path`: `video_dir/video_path` or, for a published layout,
    `video_dir/video` (its file name); else, or when that is missing, `video_dir/<video id>.<ext>`.

    Raises:
        ValueError: an unknown layout, an unreadable file, or a qid given twice (naming the qid and both records).
    """
    check_choice("layout", layout, LAYOUTS)
    report = LoadReport(source=str(annotations))
    items: list[QAItem] = []
    first_positions: dict[str, int] = {}
    for position, record in file_records(annotations, report):
        layout = detect_layout(record) if layout == "auto" else layout
        try:
            fields = {key: value for key, value in LAYOUT_RECORDS[layout](record).items() if value is not None}
            item = choice_item_from_record(fields, default_qid=str(report.read - 1))
        except ValueError as error:
            report.skipped_bad_line += 1
            report.note(position, str(error))
            continue
        if item.qid in first_positions:
            raise ValueError(
                f"{annotations}:{position}: qid {item.qid!r} is already on record {first_positions[item.qid]}; "
                "every qid of a ground-truth file must be unique"
            )
        first_positions[item.qid] = position
        video_path = fields.get("video_path")
        if video_dir is not None or video_path is not None:
            named = video_path or fields.get("video_file")
            path = locate_video(video_dir, item.video_id, named)
            if path is None and named is not None:
                path = locate_video(video_dir, item.video_id)
            if path is None:
                report.note_missing_video(item.video_id)
                continue
            item = replace(item, video_path=path)
        items.append(item)
        report.loaded += 1
    return items, report.log()


def load_choice_jsonl(
    annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None
) -> tuple[list[QAItem], LoadReport]:
    """Multiple-choice questions in vtc's own layout (`load_choices` with `layout="jsonl"`)."""
    return load_choices(annotations, video_dir, layout="jsonl")
