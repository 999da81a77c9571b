"""Synthetic benchmark: determinism, shapes, the event is really rendered, mp4 round trip, `vtc data synth`."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from vtc.cli import main
from vtc.data.moment import load_charades_sta, load_moment_jsonl
from vtc.data.qa import load_choice_jsonl
from vtc.world.raster import COLOURS, SHAPES, object_class_index, write_mp4
from vtc.world.synthetic import VARIANTS, SyntheticMoments
from vtc.world.tracks import distractor_track


def test_deterministic_per_seed_and_index():
    first, again = SyntheticMoments(seed=3)[5], SyntheticMoments(seed=3)[5]
    assert torch.equal(first["frames"], again["frames"]) and first["query"] == again["query"]
    assert not torch.equal(first["frames"], SyntheticMoments(seed=3)[6]["frames"])
    assert not torch.equal(first["frames"], SyntheticMoments(seed=4)[5]["frames"])


@pytest.mark.parametrize("frame_size", [32, (33, 47)])
def test_item_shapes_and_window(frame_size):
    dataset = SyntheticMoments(num_videos=4, duration=12.0, fps=2.5, frame_size=frame_size, event_length=(2, 5))
    height, width = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (30, height, width, 3)
        assert item["timestamps"].shape == (30,) and item["timestamps"][1] == pytest.approx(0.4)
        start, end = item["window"].tolist()
        assert 0 <= start < end <= 12.0 and 1.9 <= end - start <= 5.1
        assert item["query"].startswith("the ") and "options" not in item
    with pytest.raises(IndexError, match="index 4 out of range for 4 videos"):
        dataset[4]


def target_pixels(video, colour):
    """Pixels within a small distance of `colour`, per frame."""
    distance = np.abs(video.frames.astype(int) - np.array(COLOURS[colour])).sum(axis=-1)
    return (distance < 30).sum(axis=(1, 2))


def find(dataset, event):
    return next(v for v in (dataset.render(i) for i in range(len(dataset))) if v.event == event)


def test_events_are_rendered_in_their_window():
    dataset = SyntheticMoments(num_videos=200, num_distractors=0, fps=2.0, frame_size=48)
    appears = find(dataset, "appears")
    colour = appears.query.split()[1]
    counts = target_pixels(appears, colour)
    before = appears.timestamps < appears.window[0]
    after = appears.timestamps > appears.window[1]
    assert counts[before].max(initial=0) == 0 and counts[after].min() > 20
    grows = find(dataset, "grows")
    counts = target_pixels(grows, grows.query.split()[1])
    assert counts[grows.timestamps > grows.window[1]].min() > 2 * counts[grows.timestamps < grows.window[0]].max()


def test_distractors_share_colour_or_shape_but_not_both():
    rng = np.random.default_rng(0)
    times = np.arange(10, dtype=np.float32)
    for number in range(6):
        track = distractor_track(rng, times, (64, 64), "red", "circle", number)
        shares_colour = np.allclose(track.colour, COLOURS["red"])
        assert shares_colour != (track.shape == "circle")
        assert (track.x >= track.radius - 1e-3).all() and (track.x <= 64 - track.radius + 1e-3).all()


@pytest.mark.parametrize("variant", ["choice", "needle"])
def test_choice_and_needle_variants(variant):
    dataset = SyntheticMoments(num_videos=6, variant=variant, frame_size=32, duration=10.0, needle_length=1.0)
    for index in range(len(dataset)):
        item = dataset[index]
        assert len(item["options"]) == len(set(item["options"])) == 4
        correct = item["options"][item["answer"]]
        if variant == "choice":
            assert item["query"].endswith(correct) and item["question"].startswith("what does the")
        else:
            assert item["query"].startswith(correct) and item["event"] == "needle"
            start, end = item["window"].tolist()
            inside = (item["timestamps"] >= start) & (item["timestamps"] < end)
            assert inside.sum() == 2  # 1 s at 2 fps
            corners = item["frames"][inside][:, 0, 0].float()
            assert torch.allclose(corners, torch.full_like(corners, 128.0))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        SyntheticMoments(variant="video")
    with pytest.raises(ValueError, match="event_length"):
        SyntheticMoments(event_length=(5.0, 1.0))
    with pytest.raises(ValueError, match="frame_size"):
        SyntheticMoments(frame_size=8)


def test_write_mp4_pads_odd_sizes_and_decodes(tmp_path):
    video = SyntheticMoments(num_videos=1, duration=3.0, fps=4.0, frame_size=(33, 45)).render(0)
    path = tmp_path / "clip.mp4"
    write_mp4(path, video.frames, 4.0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
    assert decoded.shape == (12, 34, 46, 3)
    assert np.abs(decoded[:, :33, :45].astype(int) - video.frames).mean() < 12
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(path, video.frames.astype(np.float32), 4.0)


def test_data_synth_command_round_trips_through_the_loaders(tmp_path, capsys):
    out = tmp_path / "synth"
    argv = ["data", "synth", "--out", str(out), "--num-videos", "3", "--duration", "4", "--variant", "choice"]
    assert main([*argv, "--frame-size", "32"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 3
    videos = out / "videos"
    text_items, report = load_charades_sta(out / "annotations.txt", out / "durations.csv", video_dir=videos)
    jsonl_items, _ = load_moment_jsonl(out / "annotations.jsonl", video_dir=videos)
    questions, _ = load_choice_jsonl(out / "qa.jsonl", video_dir=videos)
    assert report.loaded == len(jsonl_items) == len(questions) == 3 and report.skipped == 0
    assert [i.windows for i in text_items] == [i.windows for i in jsonl_items]
    with av.open(str(text_items[0].video_path)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 8


def test_window_without_rendering_matches_the_rendered_window():
    moments = SyntheticMoments(num_videos=6, seed=3)
    assert [moments.window(i) for i in range(6)] == [moments.render(i).window for i in range(6)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendering_a_subset_of_frames_gives_the_same_pixels(variant):
    moments = SyntheticMoments(num_videos=3, duration=6.0, fps=4.0, frame_size=32, variant=variant, seed=5)
    subset = np.array([0, 3, 7, 8, 23])
    for index in range(3):
        whole, part = moments.render(index), moments.render(index, subset)
        np.testing.assert_array_equal(part.frames, whole.frames[subset])
        np.testing.assert_array_equal(part.timestamps, whole.timestamps[subset])
        assert (part.window, part.query, part.options) == (whole.window, whole.query, whole.options)
        labelled = moments.render(index, subset, labels=True)
        np.testing.assert_array_equal(labelled.frames, part.frames)
        np.testing.assert_array_equal(labelled.labels, moments.render(index, labels=True).labels[subset])
    assert moments.render(0).labels is None


def test_scene_labels_name_the_colour_and_shape_drawn_at_each_pixel():
    assert object_class_index("red", "circle") == 1 and object_class_index("cyan", "star") == len(COLOURS) * len(SHAPES)
    assert object_class_index(list(COLOURS).index("green"), SHAPES.index("square")) == 1 + len(SHAPES) + 1
    moments = SyntheticMoments(num_videos=4, num_distractors=3, frame_size=48, seed=2)
    for index in range(len(moments)):
        video = moments.render(index, labels=True)
        assert video.labels.shape == video.frames.shape[:3] and video.labels.min() == 0
        colour, shape = video.query.split()[1:3]
        target = object_class_index(colour, shape)
        assert (video.labels == target).any(axis=(1, 2)).sum() >= len(video.labels) // 2
        for label in np.unique(video.labels[video.labels > 0]):
            rgb = np.array(list(COLOURS.values())[(label - 1) // len(SHAPES)])
            pixels = video.frames[video.labels == label].astype(int)
            # opaque shapes show their colour; half-transparent or mid-change ones lie within the blend
            assert np.median(np.abs(pixels - rgb).sum(-1)) < 120
