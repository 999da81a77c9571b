"""Video decoding with PyAV: `load_video` samples frames by their presentation timestamps.

The frame table comes from demuxing the packets (cheap, no decoding): every frame's presentation timestamp
and whether it is a keyframe. Sampling picks frames on that table, never from a header frame count or frame
rate (some files lie about both), so variable frame rate and containers without a duration need nothing
special. Decoding seeks to the keyframe before a wanted frame whenever that skips frames, else goes forward.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from vtc.utils.checks import is_count

# A seek is worth it only when it skips at least this many frames (a seek flushes the decoder).
MIN_FRAMES_SKIPPED_BY_SEEK = 8


class VideoDecodeError(ValueError):
    """A file that cannot be decoded: empty, not a video, no video stream, or no decodable frame."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot decode video {os.fspath(path)!r}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


@dataclass
class VideoClip:
    """Decoded frames of one video.

    Attributes:
        frames: `[T, H, W, 3]` uint8 RGB, rotation metadata already applied.
        timestamps: `[T]` float64 presentation times in seconds from the first frame, non-decreasing,
            within `[0, duration]`.
        duration: seconds of decodable video (from presentation timestamps, not the header).
        fps: native frame rate, frames per second of decodable video.
        path: the file the frames come from.
    """

    frames: Tensor
    timestamps: Tensor
    duration: float
    fps: float
    path: str


@dataclass(frozen=True)
class FrameTable:
    """Every frame of a video stream in presentation order, from its packets.

    Attributes:
        pts: `[F]` int64 sorted presentation timestamps in `time_base` units.
        keyframe: `[F]` bool, True where decoding can start.
        end_pts: presentation end of the last frame.
        time_base: seconds per pts unit.
        read_error: the demuxer's error when the file ended early, else None.
    """

    pts: np.ndarray
    keyframe: np.ndarray
    end_pts: int
    time_base: Fraction
    read_error: str | None

    def seconds(self, pts: np.ndarray | int) -> np.ndarray:
        """Presentation time(s) in seconds from the first frame."""
        return (np.asarray(pts, dtype=np.float64) - float(self.pts[0])) * float(self.time_base)

    @property
    def duration(self) -> float:
        return float(self.seconds(self.end_pts))


def load_video(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    start: float | None = None,
    end: float | None = None,
) -> VideoClip:
    """Decode frames of a video.

    Args:
        path: a video file any FFmpeg demuxer reads.
        num_frames: sample this many frames uniformly: the frame shown at the middle of each of `num_frames`
            equal segments of `[start, end)`. More than the video has: frames repeat, times non-decreasing.
        fps: instead of `num_frames`, a frame-rate cap: one frame per `1 / fps` seconds, never a frame twice.
            Neither given: every frame in `[start, end)`.
        size: an int is the output's shorter side (aspect kept), a pair is `(height, width)`; None keeps it.
        start: first second to sample from (default 0).
        end: last second (default and at most: the decodable duration).

    Returns:
        `VideoClip` with `frames [T, H, W, 3]` uint8 and `timestamps [T]`.

    Raises:
        FileNotFoundError: no such file.
        VideoDecodeError: empty, not a video, no video stream, or no frame decodes.
        ValueError: bad sampling arguments (see `check_sampling`), or not `0 <= start < end`.
    A truncated file gives the frames that decode and a `UserWarning` stating the decodable duration.
    """
    path = Path(path)
    check_sampling(num_frames, fps, size)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {os.fspath(path)!r}")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    with _open(path) as container:
        stream = container.streams.video[0]
        table = scan_frames(container, stream)
        if len(table.pts) == 0:
            raise VideoDecodeError(path, "the video stream has no frames")
        _warn_if_truncated(path, container, stream, table)
        start_time, end_time = _time_range(table.duration, start, end)
        wanted = select_frames(table.seconds(table.pts), start_time, end_time, num_frames, fps)
        decoded = decode_frames(container, stream, table, np.unique(wanted))
    if not decoded:
        raise VideoDecodeError(path, "no frame could be decoded")
    wanted = _nearest_decoded(path, wanted, sorted(decoded), table)
    frames = np.stack([_to_rgb(decoded[index], size) for index in wanted])
    return VideoClip(
        frames=torch.from_numpy(frames),
        timestamps=torch.from_numpy(table.seconds(table.pts[wanted])),
        duration=table.duration,
        fps=len(table.pts) / table.duration if table.duration > 0 else 0.0,
        path=os.fspath(path),
    )


def check_sampling(num_frames: int | None, fps: float | None, size: int | tuple[int, int] | None) -> None:
    """A `ValueError` naming the argument and what is allowed, for sampling arguments of `load_video` that it
    cannot honour (a zero size, an infinite fps, a fractional frame count, ...)."""
    if num_frames is not None and fps is not None:
        raise ValueError(f"give num_frames or fps, not both (got num_frames={num_frames!r}, fps={fps!r})")
    if num_frames is not None and not is_count(num_frames):
        raise ValueError(f"num_frames must be an integer >= 1, or None for every frame; got {num_frames!r}")
    finite = isinstance(fps, numbers.Real) and not isinstance(fps, bool) and math.isfinite(fps)
    if fps is not None and not (finite and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, or None; got {fps!r}")
    pair = isinstance(size, (tuple, list)) and len(size) == 2 and all(map(is_count, size))
    if size is not None and not (is_count(size) or pair):
        raise ValueError(
            f"size must be an integer >= 1 (the shorter side), a pair of integers >= 1 (height, width), or None; "
            f"got {size!r}"
        )


def _open(path: Path) -> av.container.InputContainer:
    """Open `path` for reading; a `VideoDecodeError` when it is not a media file or has no video stream."""
    try:
        container = av.open(os.fspath(path))
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"not a readable media file ({error.strerror})") from error
    if not container.streams.video:
        kinds = ", ".join(stream.type for stream in container.streams) or "none"
        container.close()
        raise VideoDecodeError(path, f"no video stream (streams: {kinds})")
    return container


def scan_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> FrameTable:
    """Demux (without decoding) every packet of `stream` into a `FrameTable`; rewinds the container after."""
    pts, keyframe, ends = [], [], []
    read_error = None
    try:
        for packet in container.demux(stream):
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None or packet.size == 0:
                continue
            pts.append(timestamp)
            keyframe.append(packet.is_keyframe)
            ends.append(timestamp + (packet.duration or 0))
    except av.error.FFmpegError as error:
        read_error = error.strerror
    container.seek(0)
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    pts_sorted = np.asarray(pts, dtype=np.int64)[order]
    # The last frame lasts its packet's duration, at least the median frame interval (encoders writing
    # timestamps in fine units often store 1-tick durations).
    step = int(np.median(np.diff(pts_sorted))) if len(pts_sorted) > 1 else 0
    end_pts = max([*ends, int(pts_sorted[-1]) + step]) if ends else 0
    keyframe_sorted = np.asarray(keyframe, dtype=bool)[order]
    if len(keyframe_sorted):
        keyframe_sorted[0] = True  # decoding always starts at the first packet
    return FrameTable(pts_sorted, keyframe_sorted, int(end_pts), stream.time_base, read_error)


def select_frames(
    frame_times: np.ndarray, start: float, end: float, num_frames: int | None, fps: float | None
) -> np.ndarray:
    """Indices of the frames shown at the sampled times of `[start, end)` (see `load_video`), in order."""
    if num_frames is not None:
        segment = (end - start) / num_frames
        targets = start + segment * (np.arange(num_frames) + 0.5)  # middle of each segment
    elif fps is not None:
        targets = np.arange(start + 0.5 / fps, end, 1.0 / fps)
        if len(targets) == 0:
            targets = np.array([(start + end) / 2])
    else:
        inside = np.flatnonzero((frame_times >= start) & (frame_times < end))
        return inside if len(inside) else np.array([_frame_shown_at(frame_times, start)])
    shown = np.searchsorted(frame_times, targets, side="right") - 1
    shown = np.clip(shown, 0, len(frame_times) - 1)
    return shown if num_frames is not None else np.unique(shown)


def _frame_shown_at(frame_times: np.ndarray, time: float) -> int:
    return int(np.clip(np.searchsorted(frame_times, time, side="right") - 1, 0, len(frame_times) - 1))


def decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    table: FrameTable,
    wanted: np.ndarray,
    allow_seek: bool = True,
) -> dict[int, av.VideoFrame]:
    """Decode the frames at sorted, unique table indices `wanted`; index -> frame for those that decode.

    Seeks to the keyframe before a wanted frame when that skips `MIN_FRAMES_SKIPPED_BY_SEEK` frames or more;
    if a seek lands past its target (a bad index), decodes again from the start without seeking.
    """
    last_keyframe = np.maximum.accumulate(np.where(table.keyframe, np.arange(len(table.pts)), 0))
    decoded: dict[int, av.VideoFrame] = {}
    frames, frame = None, None
    position = -1  # table index of `frame`, the last frame decoded
    for target in wanted.tolist():
        keyframe = int(last_keyframe[target])
        if frames is None or (allow_seek and keyframe - position > MIN_FRAMES_SKIPPED_BY_SEEK):
            container.seek(int(table.pts[keyframe]), stream=stream, backward=True, any_frame=False)
            frames, position = _decoded_frames(container, stream), -1
        while position < target:
            frame = next(frames, None)
            if frame is None:
                return decoded  # the stream ended before `target`: a truncated file
            position = _table_index(table, frame)
        if position > target and allow_seek:
            container.seek(0)
            return decode_frames(container, stream, table, wanted, allow_seek=False)
        decoded[target] = frame
    return decoded


def _decoded_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream):
    """Frames of `stream` in presentation order, stopping quietly at the first decoding error."""
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError:
        return


def _table_index(table: FrameTable, frame: av.VideoFrame) -> int:
    """Index of the table frame whose presentation interval holds `frame`."""
    timestamp = frame.pts if frame.pts is not None else frame.dts
    return int(np.clip(np.searchsorted(table.pts, timestamp, side="right") - 1, 0, len(table.pts) - 1))


def _nearest_decoded(path: Path, wanted: np.ndarray, decoded: list[int], table: FrameTable) -> np.ndarray:
    """Replace wanted frames that did not decode by the last decoded frame before them (warning once)."""
    available = np.asarray(decoded)
    position = np.clip(np.searchsorted(available, wanted, side="right") - 1, 0, len(available) - 1)
    replaced = available[position]
    if (replaced != wanted).any():
        decodable = float(table.seconds(table.pts[available[-1]]))
        warnings.warn(
            f"{os.fspath(path)}: frames after {decodable:.2f} s do not decode (a truncated or corrupt file); "
            f"using the last decodable frames",
            UserWarning,
            stacklevel=3,
        )
    return replaced


def _warn_if_truncated(
    path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream, table: FrameTable
) -> None:
    """Warn when the packets end well before the duration the header promises, or the demuxer failed."""
    promised = header_duration(container, stream)
    interval = table.duration / max(len(table.pts) - 1, 1)
    short = promised is not None and promised - table.duration > max(0.25, 2 * interval)
    if table.read_error is not None or short:
        expected = f" of the {promised:.2f} s in its header" if promised is not None else ""
        reason = f" ({table.read_error})" if table.read_error else ""
        warnings.warn(
            f"{os.fspath(path)} looks truncated{reason}: only {table.duration:.2f} s{expected} decode",
            UserWarning,
            stacklevel=3,
        )


def header_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The video duration the file's header states, or None when it states none.

    The stream's own duration first, then its `DURATION` tag (Matroska); the container duration only when the
    file has no other stream (it includes audio, which may legitimately run longer).
    """
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        hours, minutes, seconds = ([0.0, 0.0, *map(float, tag.split(":"))])[-3:]
        return hours * 3600 + minutes * 60 + seconds
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _time_range(duration: float, start: float | None, end: float | None) -> tuple[float, float]:
    """Validate `[start, end)` against `duration`; `end` is clamped to it."""
    start_time = 0.0 if start is None else float(start)
    end_time = duration if end is None else min(float(end), duration)
    if start_time < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start_time}")
    if duration > 0 and not end_time > start_time:
        raise ValueError(f"need start < end within the {duration:.2f} s video, got start={start}, end={end}")
    return start_time, max(end_time, start_time)


def _to_rgb(frame: av.VideoFrame, size: int | tuple[int, int] | None) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB of `frame`, rotated upright by its display matrix, resized to `size`."""
    turns = round((frame.rotation or 0) / 90) % 4  # counter-clockwise quarter turns to display it upright
    height, width = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
    if isinstance(size, numbers.Integral):
        scale = size / min(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    elif size is not None:
        height, width = size
    decoded_height, decoded_width = (width, height) if turns % 2 else (height, width)
    image = frame.to_ndarray(format="rgb24", width=decoded_width, height=decoded_height)
    return np.ascontiguousarray(np.rot90(image, turns))
