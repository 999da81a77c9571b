"""Annotation loaders: the real Charades-STA / QVHighlights files, and every quirk on small hand-made files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtc.data.moment import load_charades_sta, load_moment_jsonl, load_moments, read_durations
from vtc.data.qa import load_choice_jsonl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHARADES = DATA / "charades_sta"
QVHIGHLIGHTS = DATA / "qvhighlights" / "highlight_val_release.jsonl"


def needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real data not available: {path} (the shared data folder ../shared/data is absent)")


@pytest.mark.parametrize(
    ("split", "lines", "clamped", "skipped"), [("train", 12_408, 1_805, 4), ("test", 3_720, 562, 0)]
)
def test_charades_sta_text_counts(split, lines, clamped, skipped):
    needs(CHARADES)
    items, report = load_charades_sta(CHARADES / f"charades_sta_{split}.txt", CHARADES / f"Charades_v1_{split}.csv")
    assert report.read == lines
    assert report.clamped == clamped
    assert report.skipped_bad_window == skipped and report.skipped == skipped
    assert len(items) == report.loaded == lines - skipped
    assert all(0 <= s < e <= item.duration for item in items for s, e in item.windows)
    assert f"clamped {clamped}" in str(report)


def test_charades_text_agrees_with_the_jsonl_release():
    needs(CHARADES)
    text_items, _ = load_charades_sta(CHARADES / "charades_sta_train.txt", CHARADES / "Charades_v1_train.csv")
    release, report = load_moment_jsonl(CHARADES / "charades_train_release.jsonl")
    assert report.read == len(release) == len(text_items) and report.clamped == 0
    assert [i.qid for i in text_items] == [i.qid for i in release]
    assert [(i.video_id, i.query, i.windows, i.duration) for i in text_items] == [
        (i.video_id, i.query, i.windows, i.duration) for i in release
    ]


def test_qvhighlights_reads_every_line_and_reports_missing_videos(tmp_path):
    needs(QVHIGHLIGHTS)
    items, report = load_moment_jsonl(QVHIGHLIGHTS)
    assert report.read == len(items) == 1_550
    assert any(len(item.windows) > 1 for item in items)
    present = items[0].video_id
    (tmp_path / f"{present}.mp4").write_bytes(b"")
    items, report = load_moment_jsonl(QVHIGHLIGHTS, video_dir=tmp_path)
    assert [item.video_path for item in items] == [tmp_path / f"{present}.mp4"] * len(items)
    assert report.missing_video == 1_550 - len(items) > 0
    assert len(report.missing_video_ids) == 5 and present not in report.missing_video_ids


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_charades_quirks_on_a_small_file(tmp_path):
    durations = write(tmp_path / "durations.csv", "id,length\nAAA,10.0\nBBB,20.0\nCCC,bad\n")
    annotations = write(
        tmp_path / "sta.txt",
        "AAA 1.0 4.0##ok\n"
        "AAA 8.0 12.5##past the end\n"
        "BBB 9.0 3.0##reversed\n"
        "AAA 11.0 12.0##entirely past the end\n"
        "ZZZ 1.0 2.0##unknown video\n"
        "CCC 1.0 2.0##unreadable duration\n"
        "BBB 1.0##no end\n"
        "\n"
        "BBB 2.5 6.0##second ok\n",
    )
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "AAA.mkv").write_bytes(b"")
    items, report = load_charades_sta(annotations, durations)
    assert [item.query for item in items] == ["ok", "past the end", "second ok"]
    assert items[1].windows == ((8.0, 10.0),)
    assert [item.qid for item in items] == ["0", "1", "2"]
    assert (report.read, report.clamped, report.skipped_bad_window) == (8, 2, 2)
    assert (report.missing_duration, report.skipped_bad_line) == (2, 1)
    items, report = load_moments(annotations, durations, video_dir=tmp_path / "videos")
    assert [item.video_path.name for item in items] == ["AAA.mkv", "AAA.mkv"]
    assert report.missing_video == 1 and report.missing_video_ids == ["BBB"]
    with pytest.raises(ValueError, match="durations"):
        load_moments(annotations)
    assert read_durations(durations) == {"AAA": 10.0, "BBB": 20.0}


def test_generic_jsonl_quirks_and_corrupt_lines(tmp_path):
    records = [
        {"video_id": "v1", "query": "a", "duration": 10, "windows": [[-1, 3], [5, 12]]},
        {"video": "v2", "query": "b", "duration": 10, "windows": [[4, 4]]},
        {"vid": "v3", "query": "c", "duration": 10},
        {"vid": "v4", "query": "d", "windows": [[1, 2]]},
        {"vid": "v5", "query": "e", "duration": 10, "windows": [[1, "x"]]},
        {"qid": "keep", "vid": "v6", "query": "f", "duration": 10, "windows": [[1, 2]], "video_path": "clip.mp4"},
    ]
    path = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    items, report = load_moment_jsonl(path)
    assert [item.video_id for item in items] == ["v1"]
    assert items[0].windows == ((0.0, 3.0), (5.0, 10.0)) and items[0].video_path is None
    assert (report.clamped, report.skipped_bad_window, report.skipped_bad_line) == (1, 1, 2)
    assert report.missing_duration == 1 and report.missing_video_ids == ["v6"]  # its video_path does not exist
    (tmp_path / "clip.mp4").write_bytes(b"")
    items, report = load_moment_jsonl(path, video_dir=tmp_path)
    assert [(item.qid, item.video_path) for item in items] == [("keep", tmp_path / "clip.mp4")]
    assert report.missing_video_ids == ["v1"]
    bad = write(tmp_path / "bad.jsonl", '{"vid": "v1"}\n{not json\n[1, 2]\n')
    items, report = load_moment_jsonl(bad)  # a corrupt line is a counted skip naming the file and line
    assert items == [] and (report.read, report.skipped_bad_line) == (3, 3)
    assert f"line 2: {bad}:2: not valid JSON (Expecting property name" in str(report)
    assert f"line 3: {bad}:3: expected a JSON object, got list" in str(report)


def test_choice_loader(tmp_path):
    records = [
        {"qid": 1, "vid": "v", "question": "what?", "options": ["x", "y", "z"], "answer": "B"},
        {"qid": 2, "vid": "v", "question": "what?", "options": ["x", "y"], "answer": 0, "circular_group": "1"},
        {"qid": 3, "vid": "v", "question": "what?", "options": ["x", "y"], "answer": "D"},
        {"qid": 4, "vid": "v", "question": "what?", "options": ["only"], "answer": 0},
        {"qid": 5, "vid": "w", "question": "", "options": ["x", "y"], "answer": 0},
    ]
    path = write(tmp_path / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    items, report = load_choice_jsonl(path)
    assert [(item.qid, item.answer, item.group) for item in items] == [("1", 1, None), ("2", 0, "1")]
    assert report.skipped_bad_line == 3 and len(report.reasons) == 3
    items, report = load_choice_jsonl(path, video_dir=tmp_path)
    assert items == [] and report.missing_video == 2
