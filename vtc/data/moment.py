"""Moment-retrieval annotation loaders: Charades-STA text + csv durations, and moment_detr-style JSON lines.

JSON lines cover the Charades-STA release (lighthouse), QVHighlights (moment_detr) and a generic format: one
object a line with `query`, `duration`, a video id (`vid`, `video_id` or `video`), windows (`relevant_windows`
or `windows`, `[[start, end], ...]`), optional `qid` (default: position among lines with a valid window) and
optional `video_path` (relative to the video directory when one is given).

Real quirks are fixed or skipped, always counted in the `LoadReport`: windows past the duration (or before 0)
are clamped; a line with a window of end <= start after clamping is skipped; a missing video file is skipped.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtc.data.base import LoadReport, locate_video, record_video_id
from vtc.utils.io import read_jsonl


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
        start, end = float(window[0]), float(window[1])
        if not (math.isfinite(start) and math.isfinite(end)):
            raise BadWindowError(f"window {window!r} is not finite")
        fixed_start, fixed_end = max(start, 0.0), min(end, duration)
        clamped |= (fixed_start, fixed_end) != (start, end)
        result.append((fixed_start, fixed_end))
    return result, clamped


def read_durations(csv_path: str | os.PathLike) -> dict[str, float]:
    """Video id -> duration in seconds from a Charades-style csv (`id` and `length` columns)."""
    with Path(csv_path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "length"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: expected a csv with `id` and `length` columns, got {reader.fieldnames}")
        durations = {}
        for row in reader:
            try:
                durations[row["id"]] = float(row["length"])
            except (TypeError, ValueError):
                continue
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
    duration = fields["duration"]
    if duration is None or not duration > 0:
        report.missing_duration += 1
        report.note(line_number, f"video {fields['video_id']!r} has no positive duration ({duration!r})")
        return
    try:
        windows, clamped = clamp_windows(fields["windows"], float(duration))
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
    items.append(MomentItem(str(qid), fields["video_id"], path, fields["query"], tuple(windows), float(duration)))
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
    with Path(annotations).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            report.read += 1
            head, separator, query = line.rstrip("\n").partition("##")
            parts = head.split()
            if not separator or len(parts) != 3 or not query.strip():
                report.skipped_bad_line += 1
                report.note(line_number, f"expected `VIDEOID start end##sentence`, got {line.strip()!r}")
                continue
            video_id, start, end = parts
            try:
                window = [float(start), float(end)]
            except ValueError:
                report.skipped_bad_line += 1
                report.note(line_number, f"unreadable times {start!r} {end!r}")
                continue
            fields = {
                "qid": None,
                "video_id": video_id,
                "query": query.strip(),
                "windows": [window],
                "duration": durations.get(video_id),
            }
            _add_item(report, items, line_number, fields, video_dir)
    return items, report.log()


def load_moment_jsonl(
    annotations: str | os.PathLike, video_dir: str | os.PathLike | None = None
) -> tuple[list[MomentItem], LoadReport]:
    """moment_detr-style JSON lines: the Charades-STA release, QVHighlights, generic (module docstring)."""
    report = LoadReport(source=str(annotations))
    items: list[MomentItem] = []
    for line_number, record in enumerate(read_jsonl(annotations), start=1):
        report.read += 1
        video_id = record_video_id(record)
        windows = record.get("relevant_windows", record.get("windows"))
        query = record.get("query")
        if video_id is None or windows is None or not isinstance(query, str) or not query.strip():
            report.skipped_bad_line += 1
            report.note(line_number, "needs a video id, `query` and `relevant_windows` (or `windows`)")
            continue
        duration = record.get("duration")
        fields = {
            "qid": record.get("qid"),
            "video_id": video_id,
            "query": query.strip(),
            "windows": windows,
            "duration": float(duration) if isinstance(duration, (int, float)) else None,
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
