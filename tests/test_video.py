"""`vtc.video.load_video` on the shared real videos and on synthetic files written with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vtc.video import VideoDecodeError, load_video

VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
REAL_VIDEOS = sorted(VIDEOS.glob("*")) if VIDEOS.is_dir() else []


def needs_real_videos() -> None:
    if not REAL_VIDEOS:
        pytest.skip(f"shared videos not found at {VIDEOS} (the ../shared/data folder is absent)")


def write_video(
    path: Path, images: list[np.ndarray], times_ms: list[int], rotation: int | None = None, gop_size: int = 12
) -> Path:
    """Encode RGB `images` [H, W, 3] with H.264 at the given presentation times (milliseconds)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.gop_size = gop_size
        if rotation is not None:
            stream.set_display_rotation(rotation)
        ends_ms = [
            *times_ms[1:],
            2 * times_ms[-1] - times_ms[-2],
        ]  # the last frame lasts as long as the one before
        for image, time_ms, end_ms in zip(images, times_ms, ends_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base, frame.duration = time_ms, Fraction(1, 1000), end_ms - time_ms
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def gray(level: int, height: int = 32, width: int = 32) -> np.ndarray:
    return np.full((height, width, 3), level, dtype=np.uint8)


@pytest.mark.parametrize("num_frames", [1, 8, 16])
def test_real_videos_decode_to_the_asked_frame_count(num_frames: int) -> None:
    needs_real_videos()
    for path in REAL_VIDEOS:
        clip = load_video(path, num_frames=num_frames)
        assert clip.frames.shape[0] == num_frames, path.name
        assert clip.frames.dtype == torch.uint8 and clip.frames.shape[-1] == 3
        assert clip.timestamps.shape == (num_frames,)
        assert (clip.timestamps >= 0).all() and (clip.timestamps <= clip.duration).all(), path.name
        assert (clip.timestamps.diff() >= 0).all(), path.name
        assert clip.duration > 0 and clip.fps > 0


def assert_sampled_frames_match_full_decode(path: Path, num_frames: int) -> None:
    every = load_video(path)
    sampled = load_video(path, num_frames=num_frames)
    for frame, timestamp in zip(sampled.frames, sampled.timestamps, strict=True):
        position = int(torch.searchsorted(every.timestamps, timestamp))
        assert every.timestamps[position] == timestamp, path.name
        assert torch.equal(frame, every.frames[position]), f"{path.name} at {timestamp:.3f} s"


def test_seeking_gives_the_same_frames_as_decoding_everything(tmp_path: Path) -> None:
    images = [np.random.default_rng(index).integers(0, 256, (16, 16, 3), dtype=np.uint8) for index in range(60)]
    path = write_video(tmp_path / "short_gop.mp4", images, [40 * index for index in range(60)], gop_size=5)
    with av.open(str(path)) as container:
        assert sum(packet.is_keyframe for packet in container.demux(video=0)) >= 10  # seeks are worth it
    assert_sampled_frames_match_full_decode(path, num_frames=5)


def test_seeking_in_real_videos_gives_the_same_frames_as_decoding_everything() -> None:
    needs_real_videos()
    for path in REAL_VIDEOS:
        assert_sampled_frames_match_full_decode(path, num_frames=7)


def test_webm_without_header_duration_gets_its_duration_from_timestamps() -> None:
    needs_real_videos()
    path = VIDEOS / "imageio_test.webm"
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    clip = load_video(path, num_frames=6)
    all_frames = load_video(path)
    assert 2.5 < clip.duration < 4.0
    assert all_frames.frames.shape[0] == 94
    assert clip.timestamps[-1] > 0.8 * clip.duration  # the last segment's middle lies near the end


def test_more_frames_than_the_video_has_repeat_in_order() -> None:
    needs_real_videos()
    clip = load_video(VIDEOS / "decord_video_0.mov", num_frames=10)
    assert clip.frames.shape[0] == 10
    assert (clip.timestamps.diff() >= 0).all()
    assert len(set(clip.timestamps.tolist())) == 3  # only 3 distinct frames exist
    assert torch.equal(clip.frames[0], clip.frames[1])


def test_segment_middles_sample_the_shown_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "steady.mp4", [gray(10 * i) for i in range(20)], [100 * i for i in range(20)])
    clip = load_video(path, num_frames=4)
    assert clip.duration == pytest.approx(2.0)
    # Segment middles 0.25, 0.75, 1.25, 1.75 s are shown by the frames starting at 0.2, 0.7, 1.2, 1.7 s.
    assert clip.timestamps.tolist() == pytest.approx([0.2, 0.7, 1.2, 1.7])
    levels = clip.frames.float().mean(dim=(1, 2, 3))
    assert levels.tolist() == pytest.approx([20, 70, 120, 170], abs=3)


def test_variable_frame_rate_follows_presentation_timestamps(tmp_path: Path) -> None:
    times = [0, 100, 200, 300, 1000, 2000, 3000, 3100]  # 10 fps, then 1 fps, then 10 fps
    path = write_video(tmp_path / "vfr.mkv", [gray(30 * i) for i in range(len(times))], times)
    clip = load_video(path, num_frames=5)
    assert clip.duration == pytest.approx(3.2, abs=1e-3)  # the last frame lasts the median interval
    # Segment middles 0.32, 0.96, 1.6, 2.24, 2.88 s are shown by the frames starting at 0.3, 0.3, 1, 2, 2 s.
    assert clip.timestamps.tolist() == pytest.approx([0.3, 0.3, 1.0, 2.0, 2.0], abs=1e-3)
    assert clip.frames.float().mean(dim=(1, 2, 3)).tolist() == pytest.approx([90, 90, 120, 150, 150], abs=3)


def test_every_frame_keeps_its_own_presentation_time_from_a_late_irregular_start(tmp_path: Path) -> None:
    """Presentation times starting at 5 s with irregular gaps (40 ms to 700 ms): every decoded frame carries its
    own time, counted from the first frame, and its own picture (level 20 i); trimming reads those times too.
    A loader using frame index x average rate, or the raw pts, gets the times wrong."""
    gaps = [0, 40, 90, 400, 410, 1000, 1030, 1500, 2200, 2210, 2600, 3000]
    path = write_video(tmp_path / "late.mp4", [gray(20 * i) for i in range(len(gaps))], [5000 + t for t in gaps])
    clip = load_video(path, fps=1000)
    assert clip.timestamps.tolist() == pytest.approx([t / 1000 for t in gaps], abs=1e-6)
    assert clip.frames.float().mean(dim=(1, 2, 3)).tolist() == pytest.approx([20 * i for i in range(12)], abs=2)
    assert clip.duration == pytest.approx(3.31, abs=1e-6)  # + the median gap, 310 ms
    trimmed = load_video(path, start=0.3, end=1.2, fps=1000)  # from the frame on screen at 0.3 s (shown at 0.09)
    assert trimmed.timestamps.tolist() == pytest.approx([0.09, 0.4, 0.41, 1.0, 1.03], abs=1e-6)
    assert trimmed.frames.float().mean(dim=(1, 2, 3)).tolist() == pytest.approx([40, 60, 80, 100, 120], abs=2)


def test_fps_cap_never_repeats_a_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ten.mp4", [gray(20 * i) for i in range(10)], [100 * i for i in range(10)])
    assert load_video(path, fps=2).timestamps.tolist() == pytest.approx([0.2, 0.7])
    assert load_video(path, fps=1000).frames.shape[0] == 10


def test_start_end_and_size(tmp_path: Path) -> None:
    images = [gray(20 * i, height=30, width=60) for i in range(10)]
    path = write_video(tmp_path / "ten.mp4", images, [100 * i for i in range(10)])
    clip = load_video(path, start=0.5, end=0.9, size=16)
    assert clip.timestamps.tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert clip.frames.shape == (4, 16, 32, 3)
    assert load_video(path, num_frames=2, size=(8, 12)).frames.shape == (2, 8, 12, 3)
    with pytest.raises(ValueError, match="start < end"):
        load_video(path, start=2.0)


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[:, :32, 0] = 255  # left half red
    image[:, 32:, 2] = 255  # right half blue
    path = write_video(tmp_path / "rotated.mp4", [image] * 4, [0, 100, 200, 300], rotation=90)
    frames = load_video(path, num_frames=2).frames.int()
    assert frames.shape == (2, 64, 32, 3)
    # A 90° counter-clockwise turn brings the right (blue) half to the top.
    assert frames[0, :28, :, 2].float().mean() > 200 and frames[0, :28, :, 0].float().mean() < 50
    assert frames[0, 36:, :, 0].float().mean() > 200 and frames[0, 36:, :, 2].float().mean() < 50


def test_truncated_file_gives_decodable_frames_and_a_warning(tmp_path: Path) -> None:
    needs_real_videos()
    data = (VIDEOS / "decord_flipping_a_pancake.mkv").read_bytes()
    path = tmp_path / "truncated.mkv"
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match=r"truncated: only \d+\.\d+ s of the 10\.33 s"):
        clip = load_video(path, num_frames=8)
    assert clip.frames.shape[0] == 8
    assert 1.0 < clip.duration < 9.0
    assert (clip.timestamps <= clip.duration).all()


def test_audio_only_file_is_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError, match=r"tone\.m4a.*no video stream \(streams: audio\)"):
        load_video(path, num_frames=4)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("empty.mp4", b"", "empty"), ("notes.mp4", b"just some text\n" * 20, "not a readable media file")],
)
def test_non_videos_are_decode_errors(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=reason) as error:
        load_video(path, num_frames=4)
    assert name in str(error.value) and isinstance(error.value, ValueError)


def test_bad_arguments() -> None:
    with pytest.raises(FileNotFoundError, match=r"no video file at '/nonexistent/video\.mp4'"):
        load_video("/nonexistent/video.mp4")
    with pytest.raises(ValueError, match="not both"):
        load_video("/nonexistent/video.mp4", num_frames=4, fps=1.0)
    with pytest.raises(ValueError, match="num_frames must be an integer >= 1"):
        load_video("/nonexistent/video.mp4", num_frames=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"size": 0}, r"size must be an integer >= 1 .* got 0", id="size-0"),
        pytest.param({"size": -3}, r"size must be an integer >= 1 .* got -3", id="size-negative"),
        pytest.param(
            {"size": (0, 0)}, r"a pair of integers >= 1 \(height, width\), or None; got \(0, 0\)", id="size-0x0"
        ),
        pytest.param({"size": (8, 0)}, r"size must be .* got \(8, 0\)", id="size-8x0"),
        pytest.param({"size": 2.5}, r"size must be .* got 2\.5", id="size-float"),
        pytest.param({"fps": float("inf")}, r"fps must be a finite number > 0, or None; got inf", id="fps-inf"),
        pytest.param({"fps": float("nan")}, r"fps must be a finite number > 0, or None; got nan", id="fps-nan"),
        pytest.param({"fps": 0}, r"fps must be a finite number > 0, or None; got 0", id="fps-0"),
        pytest.param({"num_frames": 0}, r"num_frames must be an integer >= 1, or None .*; got 0", id="num_frames-0"),
        pytest.param({"num_frames": 2.5}, r"num_frames must be an integer >= 1, .*; got 2\.5", id="num_frames-float"),
        pytest.param({"num_frames": True}, r"num_frames must be an integer >= 1, .*; got True", id="num_frames-bool"),
    ],
)
def test_load_video_refuses_zero_size_and_infinite_fps(tmp_path: Path, arguments: dict, message: str) -> None:
    images = [np.full((16, 16, 3), 40 * index, dtype=np.uint8) for index in range(4)]
    path = write_video(tmp_path / "clip.mp4", images, [0, 40, 80, 120])
    with pytest.raises(ValueError, match=message):
        load_video(path, **arguments)
    clip = load_video(path, num_frames=np.int64(2), size=np.int64(8))  # numpy integers are integers
    assert tuple(clip.frames.shape) == (2, 8, 8, 3)
