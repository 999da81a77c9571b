"""Moment-retrieval annotation loaders: Charades-STA text + csv durations, and moment_detr-style JSON lines.

JSON lines cover the Charades-STA release (lighthouse), QVHighlights (moment_detr) and a generic format: one
object a line with `query`, `duration`, a video id (`vid`, `video_id` or `video`), windows (`relevant_windows`
or `windows`, `[[start, end], ...]`), optional `qid` (default: position among lines with a valid window) and
optional `video_path` (relative to the video directory when one is given).

Real quirks are fixed or skipped, always counted in the `LoadReport`: windows past the duration (or before 0)
are clamped; a line with a window of end <= start after clamping, or a number that is not finite (`1e400`,
`Infinity`, an integer beyond the float range), is skipped; a line that is not UTF-8 (or not a JSON object) is
skipped; a video without a positive finite duration, or without its file, is skipped.

A qid given twice is an error, not a skip: the loader refuses the file, naming the qid and both lines. moment_detr
keys ground truth by qid, so a repeated qid would silently merge two queries into one.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtc.data.base import LoadReport, annotation_records, finite_float, locate_video, record_video_id
from vtc.utils.io import iter_lines


@dataclass(frozen=True)
class MomentItem:
    """One moment-retrieval query; `windows` are `(start, end)` seconds in `[0, duration]`, end > start."""

    qid: str
    video_id: str
    video_path: Path | None
    query: str
    windows: tuple[tuple[float, float], ...]
    duration: float

    def to_record(self) -> dict[str, Any]:
        """The moment_detr-style JSON-lines record (`qid, query, duration, vid, relevant_windows`)."""
        return {
            "qid": self.qid,
            "query": self.query,
            "duration": self.duration,
            "vid": self.video_id,
            "relevant_windows": [list(window) for window in self.windows],
        }


class BadWindowError(ValueError):
    """Windows that are not a non-empty list of finite `[start, end]` pairs."""


def clamp_windows(windows: Any, duration: float) -> tuple[list[tuple[float, float]], bool]:
    """Clamp `[[start, end], ...]` to `[0, duration]`; returns the windows and whether any was clamped.

    Raises:
        BadWindowError: no windows, or a window that is not two finite numbers.
    """
    if not isinstance(windows, (list, tuple)) or not windows:
        raise BadWindowError(f"windows must be a non-empty list of [start, end], got {windows!r}")
    clamped = False
    result = []
    for window in windows:
        if not isinstance(window, (list, tuple)) or len(window) != 2:
            raise BadWindowError(f"a window must be [start, end], got {window!r}")
        try:
            start, end = float(window[0]), float(window[1])
        except OverflowError as error:
            raise BadWindowError(f"window {window!r} is beyond the float range") from error
        if not (math.isfinite(start) and math.isfinite(end)):
            raise BadWindowError(f"window {window!r} is not finite")
        fixed_start, fixed_end = max(start, 0.0), min(end, duration)
        clamped |= (fixed_start, fixed_end) != (start, end)
        result.append((fixed_start, fixed_end))
    return result, clamped


def read_durations(csv_path: str | os.PathLike) -> dict[str, float]:
    """Video id -> duration in seconds from a Charades-style csv (`id` and `length` columns); rows whose length
    is not a finite number are left out (their annotations are then counted as `missing_duration`).

    Raises:
        ValueError: the file is not UTF-8 (naming the file and line) or has no `id` and `length` columns.
    """
    data = Path(csv_path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{csv_path}:{line_number}: not UTF-8 (byte {data[error.start]:#04x})") from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or not {"id", "length"} <= set(reader.fieldnames):
        raise ValueError(f"{csv_path}: expected a csv with `id` and `length` columns, got {reader.fieldnames}")
    durations = {}
    for row in reader:
        try:
            length = finite_float(float(row["length"]))
        except (TypeError, ValueError):
            continue
        if length is not None:
            durations[row["id"]] = length
    return durations


def _add_item(
    report: LoadReport,
    items: list[MomentItem],
    line_number: int,
    fields: dict[str, Any],
    video_dir: str | os.PathLike | None,
    video_path: str | None = None,
) -> None:
    """Validate one annotation's fields and append its `MomentItem`, or count why it was skipped."""
    duration = finite_float(fields["duration"])
    if duration is None or not duration > 0:
        report.missing_duration += 1
        reason = f"video {fields['video_id']!r} has no positive finite duration ({fields['duration']!r})"
        report.note(line_number, reason)
        return
    try:
        windows, clamped = clamp_windows(fields["windows"], duration)
    except BadWindowError as error:
        report.skipped_bad_window += 1
        report.note(line_number, str(error))
        return
    except (TypeError, ValueError) as error:
        report.skipped_bad_line += 1
        report.note(line_number, f"unreadable windows ({error})")
        return
    report.clamped += clamped
    if any(end <= start for start, end in windows):
        report.skipped_bad_window += 1
        report.note(line_number, f"a window has end <= start within duration {duration}: {fields['windows']!r}")
        return
    qid = fields["qid"] if fields["qid"] is not None else str(report.loaded + report.missing_video)
    path = locate_video(video_dir, fields["video_id"], video_path)
    if path is None and (video_dir is not None or video_path is not None):
        report.note_missing_video(fields["video_id"])
        return
    items.append(MomentItem(str(qid), fields["video_id"], path, fields["query"], tuple(windows), duration))
    report.loaded += 1


def load_charades_sta(
    annotations: str | os.PathLike,
    durations: str | os.PathLike | dict[str, float],
    video_dir: str | os.PathLike | None = None,
) -> tuple[list[MomentItem], LoadReport]:
    """Charades-STA `VIDEOID start end##sentence` lines with durations from the Charades csv `length` column.

    qids number the lines with a valid window from 0, as the lighthouse JSON-lines release does.
    """
    durations = durations if isinstance(durations, dict) else read_durations(durations)
    report = LoadReport(source=str(annotations))
    items: list[MomentItem] = []
    for line_number, line in iter_lines(annotations):
        report.read += 1
        fields = line if isinstance(line, ValueError) else _charades_fields(line, durations)
        if isinstance(fields, ValueError):
            report.skipped_bad_line += 1
            report.note(line_number, str(fields))
            continue
        _add_item(report, items, line_number, fields, video_dir)
    return items, report.log()


def _charades_fields(line: str, durations: dict[str, float]) -> dict[str, Any] | ValueError:
    """The fields of one `VIDEOID start end##sentence` line, or a `ValueError` saying what is unreadable."""
    head, separator, query = line.rstrip("\r\n").partition("##")
    parts = head.split()
    if not separator or len(parts) != 3 or not query.strip():
        return ValueError(f"expected `VIDEOID start end##sentence`, got {line.strip()!r}")
    video_id, start, end = parts
    try:
        window = [float(start), float(end)]
    except ValueError:
        return ValueError(f"unreadable times {start!r} {end!r}")
    return {
        "qid": None,
        "video_id": video_id,
        "query": query.strip(),
        "windows": [window],
        "duration": durations.get(video_id),
    }


def load_moment_jsonl(
    annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None
) -> tuple[list[MomentItem], LoadReport]:
    """moment_detr-style JSON lines: the Charades-STA release, QVHighlights, generic (module docstring).

    Raises:
        ValueError: a qid given on two lines (naming the qid and both lines).
    """
    report = LoadReport(source=str(annotations))
    items: list[MomentItem] = []
    for line_number, record in annotation_records(annotations, report):
        video_id = record_video_id(record)
        windows = record.get("relevant_windows", record.get("windows"))
        query = record.get("query")
        if video_id is None or windows is None or not isinstance(query, str) or not query.strip():
            report.skipped_bad_line += 1
            report.note(line_number, "needs a video id, `query` and `relevant_windows` (or `windows`)")
            continue
        fields = {
            "qid": record.get("qid"),
            "video_id": video_id,
            "query": query.strip(),
            "windows": windows,
            "duration": record.get("duration"),
        }
        _add_item(report, items, line_number, fields, video_dir, record.get("video_path"))
    return items, report.log()


def load_moments(
    annotations: str | os.PathLike,
    durations: str | os.PathLike | None = None,
    video_dir: str | os.PathLike | None = None,
) -> tuple[list[MomentItem], LoadReport]:
    """Load either format: a `.txt` file is Charades-STA (needs `durations`), anything else JSON lines."""
    if Path(annotations).suffix == ".txt":
        if durations is None:
            raise ValueError(f"{annotations} is Charades-STA text: pass the csv with video durations")
        return load_charades_sta(annotations, durations, video_dir)
    return load_moment_jsonl(annotations, video_dir)
