"""What every annotation loader shares: the `LoadReport` (what was read, fixed, skipped) and video lookup."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtc.utils.io import iter_jsonl

logger = logging.getLogger("vtc.data")

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mkv", ".webm", ".mov", ".avi")
VIDEO_ID_KEYS: tuple[str, ...] = ("vid", "video_id", "video")  # the names annotation files give a video id
MAX_REPORTED_IDS = 5


@dataclass
class LoadReport:
    """Counts of one load: lines `read`, items `loaded`, windows `clamped` to the duration, and every skip.

    Attributes:
        source: the annotation file.
        read: non-blank lines read.
        loaded: items returned.
        clamped: lines with a window past the duration (or before 0), clamped to it; counted before any skip.
        skipped_bad_window: lines skipped because a window has end <= start (after clamping), is not a pair, or
        is not finite (`1e400`, `Infinity`, an integer beyond the float range).
        skipped_bad_line: lines skipped because they are not UTF-8 or not a JSON object, or a field is missing
        or unreadable (`reasons` holds the first few).
        missing_duration: lines skipped because their video has no known positive, finite duration.
        missing_video: lines skipped because no video file was found under the video directory.
        missing_video_ids: the first few of those video ids.
        reasons: the first few skip reasons, `"line N: why"`.
    """

    source: str
    read: int = 0
    loaded: int = 0
    clamped: int = 0
    skipped_bad_window: int = 0
    skipped_bad_line: int = 0
    missing_duration: int = 0
    missing_video: int = 0
    missing_video_ids: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Lines read but not loaded."""
        return self.skipped_bad_window + self.skipped_bad_line + self.missing_duration + self.missing_video

    def note(self, line_number: int, reason: str) -> None:
        """Keep the first few skip reasons."""
        if len(self.reasons) < MAX_REPORTED_IDS:
            self.reasons.append(f"line {line_number}: {reason}")

    def note_missing_video(self, video_id: str) -> None:
        """Count one missing video file and keep the first few ids."""
        self.missing_video += 1
        if len(self.missing_video_ids) < MAX_REPORTED_IDS and video_id not in self.missing_video_ids:
            self.missing_video_ids.append(video_id)

    def __str__(self) -> str:
        text = (
            f"{self.source}: read {self.read}, loaded {self.loaded}, clamped {self.clamped}, "
            f"skipped {self.skipped} (end <= start {self.skipped_bad_window}, "
            f"bad line {self.skipped_bad_line}, "
            f"no duration {self.missing_duration}, missing video {self.missing_video})"
        )
        if self.missing_video_ids:
            text += f"; missing videos e.g. {', '.join(self.missing_video_ids)}"
        if self.reasons:
            text += f"; e.g. {'; '.join(self.reasons)}"
        return text

    def log(self) -> LoadReport:
        """Log the report (warning level when anything was skipped) and return it."""
        logger.log(logging.WARNING if self.skipped else logging.INFO, "%s", self)
        return self


def locate_video(video_dir: str | os.PathLike | None, video_id: str, video_path: str | None = None) -> Path | None:
    """A video's file: `video_path` (under `video_dir` when given), else `video_dir/video_id.<ext>` for the
    first known extension that exists; None when not found."""
    if video_path is not None:
        candidates = [Path(video_dir or "") / video_path]
    elif video_dir is not None:
        candidates = [Path(video_dir) / f"{video_id}{extension}" for extension in VIDEO_EXTENSIONS]
    else:
        return None
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def record_video_id(record: Mapping[str, Any]) -> str | None:
    """The video id of an annotation record, under the first of `VIDEO_ID_KEYS` it has; None when it has none."""
    return next((str(record[key]) for key in VIDEO_ID_KEYS if key in record), None)


def finite_float(value: Any) -> float | None:
    """`value` as a float when it is a number (not a bool) that is finite within the float range, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) else None


def _claim_qid(first_lines: dict[str, int], qid: Any, line_number: int, source: str) -> None:
    """Record that `qid` is on `line_number`; a `ValueError` naming the qid and both lines when it was already
    on an earlier line (a ground-truth file holds each query once: moment_detr keys queries by qid)."""
    key = str(qid)
    if key in first_lines:
        raise ValueError(
            f"{source}:{line_number}: qid {key!r} is already on line {first_lines[key]}; "
            f"every qid of a ground-truth file must be unique"
        )
    first_lines[key] = line_number


def annotation_records(annotations: str | os.PathLike, report: LoadReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, record)` for every JSON-object line of `annotations`, each counted in `report.read`; a line
    that is not UTF-8 or not a JSON object is counted in `report.skipped_bad_line` instead.

    Raises:
        ValueError: a qid given on two lines (naming the qid and both lines).
    """
    qid_lines: dict[str, int] = {}
    for line_number, record in iter_jsonl(annotations):
        report.read += 1
        if isinstance(record, ValueError):
            report.skipped_bad_line += 1
            report.note(line_number, str(record))
            continue
        if record.get("qid") is not None:
            _claim_qid(qid_lines, record["qid"], line_number, str(annotations))
        yield line_number, record
