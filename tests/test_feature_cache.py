"""Feature cache: extraction, reading, resuming after a crash or a SIGKILL, and the split across ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.cli import main as vtc_main
from vtc.encoders.base import VisionEncoder
from vtc.encoders.cache import (
    FeatureCache,
    extract_features,
    list_annotated_videos,
    list_video_directory,
    rank_and_world_size,
)
from vtc.video import load_video

NUM_VIDEOS = 5
KILL_AFTER_ENV = "VTC_TEST_KILL_AFTER"


class PooledPixels(VisionEncoder):
    """Deterministic test encoder: each frame average-pooled to a 2x2 grid of RGB tokens, `[T, 4, 3]`."""

    output_dim = 3
    tokens_per_frame = 4

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.calls = 0

    def encode(self, frames: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("injected failure")
        pixels = frames.permute(0, 3, 1, 2).float() / 255
        return F.adaptive_avg_pool2d(pixels, 2).flatten(2).transpose(1, 2)


def pooled_pixels() -> VisionEncoder:
    """CLI factory: `PooledPixels`, that SIGKILLs its own process after `$VTC_TEST_KILL_AFTER` videos."""
    kill_after = os.environ.get(KILL_AFTER_ENV)
    encoder = PooledPixels()
    if kill_after is not None:
        encode = encoder.encode

        def encode_then_die(frames: Tensor) -> Tensor:
            if encoder.calls >= int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)
            return encode(frames)

        encoder.encode = encode_then_die
    return encoder


def write_video(path: Path, seed: int, num_frames: int = 6) -> Path:
    generator = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for index in range(num_frames):
            image = generator.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("videos")
    for index in range(NUM_VIDEOS):
        write_video(directory / f"clip{index}.mp4", seed=index, num_frames=4 + index)
    return directory


def cache_files(directory: Path) -> dict[str, bytes]:
    """Every shard and index of a cache, name -> bytes."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir()) if path.suffix != ".tmp"}


def extract_cli(video_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "features",
        "extract",
        "--videos",
        str(video_dir),
        "--out",
        str(out),
        "--encoder",
        "test_feature_cache:pooled_pixels",
        "--num-frames",
        "3",
        "--videos-per-shard",
        "2",
        "--device",
        "cpu",
        *extra,
    ]


def test_extract_then_read(video_dir: Path, tmp_path: Path) -> None:
    videos = list_video_directory(video_dir).videos
    assert sorted(videos) == [f"clip{index}" for index in range(NUM_VIDEOS)]
    report = extract_features(
        videos, PooledPixels(), tmp_path, {"num_frames": 3}, videos_per_shard=2, rank=0, world_size=1
    )
    assert (report.extracted, report.already_cached, report.failed) == (NUM_VIDEOS, 0, {})
    assert len(list(tmp_path.glob("shard-*.safetensors"))) == 3  # 2 + 2 + 1 videos

    cache = FeatureCache(tmp_path)
    assert len(cache) == NUM_VIDEOS and "clip3" in cache and "clip9" not in cache
    clip = load_video(video_dir / "clip3.mp4", num_frames=3)
    tokens, timestamps = cache["clip3"]
    assert tokens.shape == (3, 4, 3)
    torch.testing.assert_close(tokens, PooledPixels().encode(clip.frames))
    torch.testing.assert_close(timestamps, clip.timestamps.float())
    with pytest.raises(KeyError, match="clip9"):
        cache["clip9"]


def test_rerun_skips_cached_videos_and_refuses_other_settings(video_dir: Path, tmp_path: Path) -> None:
    videos = list_video_directory(video_dir).videos
    extract_features(videos, PooledPixels(), tmp_path, {"num_frames": 3}, rank=0, world_size=1)
    encoder = PooledPixels()
    report = extract_features(videos, encoder, tmp_path, {"num_frames": 3}, rank=0, world_size=1)
    assert (report.extracted, report.already_cached, encoder.calls) == (0, NUM_VIDEOS, 0)
    with pytest.raises(ValueError, match="another folder"):
        extract_features(videos, encoder, tmp_path, {"num_frames": 4}, rank=0, world_size=1)


def test_failure_mid_run_then_restart_gives_the_same_files(video_dir: Path, tmp_path: Path) -> None:
    videos = list_video_directory(video_dir).videos
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    extract_features(videos, PooledPixels(), whole, {"num_frames": 3}, videos_per_shard=2, rank=0, world_size=1)
    with pytest.raises(RuntimeError, match="injected"):
        extract_features(
            videos, PooledPixels(fail_after=3), resumed, {"num_frames": 3}, videos_per_shard=2, rank=0, world_size=1
        )
    assert len(FeatureCache(resumed)) == 2  # the first shard was complete, the third video was lost
    report = extract_features(
        videos, PooledPixels(), resumed, {"num_frames": 3}, videos_per_shard=2, rank=0, world_size=1
    )
    assert (report.extracted, report.already_cached) == (NUM_VIDEOS - 2, 2)
    assert cache_files(resumed) == cache_files(whole)


def test_sigkilled_cli_run_then_restart_gives_the_same_files(video_dir: Path, tmp_path: Path) -> None:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    environment = {
        **os.environ,
        KILL_AFTER_ENV: "3",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    environment.pop("RANK", None)
    environment.pop("WORLD_SIZE", None)
    killed = subprocess.run(
        [sys.executable, "-m", "vtc.cli", *extract_cli(video_dir, resumed)],
        env=environment,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert sorted(json.loads((resumed / "index-rank00000.json").read_text())["videos"]) == ["clip0", "clip1"]

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        assert vtc_main(extract_cli(video_dir, resumed)) == 0
        assert vtc_main(extract_cli(video_dir, whole)) == 0
    finally:
        sys.path.remove(str(Path(__file__).parent))
    assert cache_files(resumed) == cache_files(whole)
    assert len(FeatureCache(resumed)) == NUM_VIDEOS


def test_two_ranks_split_the_work_and_the_cache_merges(video_dir: Path, tmp_path: Path) -> None:
    videos = list_video_directory(video_dir).videos
    reports = [
        extract_features(videos, PooledPixels(), tmp_path, {"num_frames": 3}, rank=rank, world_size=2)
        for rank in (0, 1)
    ]
    assert [report.extracted for report in reports] == [3, 2]
    shares = [set(json.loads((tmp_path / f"index-rank{rank:05d}.json").read_text())["videos"]) for rank in (0, 1)]
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == set(videos)

    single = tmp_path / "single"
    extract_features(videos, PooledPixels(), single, {"num_frames": 3}, rank=0, world_size=1)
    merged, reference = FeatureCache(tmp_path), FeatureCache(single)
    assert sorted(merged) == sorted(videos)
    for video_id in videos:
        torch.testing.assert_close(merged[video_id], reference[video_id])


def test_rank_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert rank_and_world_size() == (3, 4)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert rank_and_world_size() == (0, 1)


def test_undecodable_videos_are_counted_and_skipped(video_dir: Path, tmp_path: Path) -> None:
    videos = dict(list_video_directory(video_dir).videos)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    videos["broken"] = broken
    report = extract_features(videos, PooledPixels(), tmp_path / "cache", {"num_frames": 2}, rank=0, world_size=1)
    assert report.extracted == NUM_VIDEOS
    assert list(report.failed) == ["broken"] and "not a readable media file" in report.failed["broken"]
    assert "broken" not in FeatureCache(tmp_path / "cache")


def test_annotation_listing(video_dir: Path, tmp_path: Path) -> None:
    lines = [
        {"video": "clip0.mp4", "query": "a"},
        {"video": "clip0.mp4", "query": "b"},  # the same video again
        {"vid": "clip1", "query": "c"},  # an id, found with its extension
        {"video": "absent.mp4", "query": "d"},
        {"query": "no video named"},
    ]
    annotations = tmp_path / "train.jsonl"
    annotations.write_text("".join(json.dumps(line) + "\n" for line in lines))
    listing = list_annotated_videos(annotations, video_dir)
    assert listing.videos == {"clip0": video_dir / "clip0.mp4", "clip1": video_dir / "clip1.mp4"}
    assert len(listing.missing) == 2
    assert "absent.mp4" in listing.missing[0] and ":5:" in listing.missing[1]


def test_corrupt_shard_is_a_clear_error(video_dir: Path, tmp_path: Path) -> None:
    videos = list_video_directory(video_dir).videos
    extract_features(
        videos, PooledPixels(), tmp_path, {"num_frames": 2}, videos_per_shard=NUM_VIDEOS, rank=0, world_size=1
    )
    (tmp_path / "shard-rank00000-00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        FeatureCache(tmp_path)["clip0"]
