"""Multiple-choice loaders: vtc's JSON lines and the layouts Video-MME, MLVU, MVBench and VNBench publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtc.data.choices import strip_option_letters
from vtc.data.qa import detect_layout, load_choices

VIDEOMME = [
    {
        "video_id": "001",
        "duration": "short",
        "domain": "Knowledge",
        "videoID": "fFjv93ACGo8",
        "question_id": "001-1",
        "task_type": "Counting Problem",
        "question": "How many red socks are there?",
        "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."],
        "answer": "C",
    },
    {
        "video_id": "001",
        "videoID": "fFjv93ACGo8",
        "question_id": "001-2",
        "question": "Which one is shown?",
        "options": ["A. A dog.", "B. A cat."],
        "answer": "E",  # names no option: skipped
    },
]
MLVU = [
    {
        "video": "needle_32.mp4",
        "duration": 467.98,
        "question": "What does the hand coming out of the cup do?",
        "candidates": ["Delivers a product", "Shakes the hand", "Takes the card", "Points at the screen"],
        "answer": "Takes the card",
        "question_type": "findNeedle",
    },
    ["not", "a", "record"],
]
MVBENCH = [
    {
        "video": "166583.webm",
        "question": "What is the action performed?",
        "candidates": ["jump", "run"],
        "answer": "run",
    },
    {"question": "no video", "candidates": ["a", "b"], "answer": "a"},
]
VNBENCH = [
    {
        "video": "VNBench/video/3261112327_ret_insert1.mp4",
        "question": "What is the secret word?",
        "options": rotated,
        "gt": "apple",
        "type": "ret_insert1",
        "try": shift,
    }
    for shift, rotated in enumerate(
        [["apple", "pear", "plum", "fig"], ["pear", "plum", "fig", "apple"], ["plum", "fig", "apple", "pear"]]
    )
]
JSONL = [{"qid": 7, "vid": "v1", "question": "what?", "options": ["(A) x", "(B) y"], "answer": 1}]


def write_json(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=1))
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_option_letters_are_stripped_once_and_only_when_every_option_has_its_own():
    assert strip_option_letters(["A. 1.", "B. 2."]) == ["1.", "2."]
    assert strip_option_letters(["(A) A. cat", "(B) dog"]) == ["A. cat", "dog"]
    assert strip_option_letters(["A) x", "B: y", "C. z"]) == ["x", "y", "z"]
    assert strip_option_letters(["B. x", "A. y"]) == ["B. x", "A. y"]  # out of order: not letters
    assert strip_option_letters(["A. x", "y"]) == ["A. x", "y"]
    assert strip_option_letters(["A cat", "B dog"]) == ["A cat", "B dog"]


@pytest.mark.parametrize("layout", ["auto", "videomme"])
def test_videomme(tmp_path, layout):
    items, report = load_choices(write_json(tmp_path / "videomme.json", VIDEOMME), layout=layout)
    (item,) = items
    assert (item.qid, item.video_id, item.answer) == ("001-1", "fFjv93ACGo8", 2)
    assert item.options == ("1.", "2.", "3.", "4.") and item.duration is None and item.group is None
    assert (report.read, report.loaded, report.skipped_bad_line) == (2, 1, 1)
    assert "names none" in report.reasons[0]


@pytest.mark.parametrize("layout", ["auto", "mlvu"])
def test_mlvu(tmp_path, layout):
    items, report = load_choices(write_json(tmp_path / "mlvu.json", MLVU), layout=layout)
    (item,) = items
    assert (item.qid, item.video_id, item.answer, item.duration) == ("0", "needle_32", 2, 467.98)
    assert item.question.startswith("What does") and len(item.options) == 4
    assert (report.read, report.loaded, report.skipped_bad_line) == (2, 1, 1)


@pytest.mark.parametrize("layout", ["auto", "mvbench"])
def test_mvbench(tmp_path, layout):
    items, report = load_choices(write_json(tmp_path / "action.json", MVBENCH), layout=layout)
    (item,) = items
    assert (item.video_id, item.options, item.answer) == ("166583", ("jump", "run"), 1)
    assert report.skipped_bad_line == 1 and "needs `video`" in report.reasons[0]


@pytest.mark.parametrize("layout", ["auto", "vnbench"])
def test_vnbench_tries_form_one_circular_group(tmp_path, layout):
    items, report = load_choices(write_json(tmp_path / "vnbench.json", VNBENCH), layout=layout)
    assert [item.qid for item in items] == [f"3261112327_ret_insert1_ret_insert1_{k}" for k in range(3)]
    assert {item.group for item in items} == {"3261112327_ret_insert1_ret_insert1"}
    assert [item.options[item.answer] for item in items] == ["apple"] * 3
    assert [item.answer for item in items] == [0, 3, 2] and report.loaded == 3


def test_vtc_jsonl_and_json_list_read_alike(tmp_path):
    from_lines, _ = load_choices(write_jsonl(tmp_path / "qa.jsonl", JSONL))
    from_list, _ = load_choices(write_json(tmp_path / "qa.json", JSONL), layout="jsonl")
    assert from_lines == from_list and from_lines[0].options == ("x", "y") and from_lines[0].qid == "7"


def test_detect_layout_by_keys():
    assert [detect_layout(records[0]) for records in (VIDEOMME, MLVU, MVBENCH, VNBENCH, JSONL)] == [
        "videomme",
        "mlvu",
        "mlvu",
        "vnbench",
        "jsonl",
    ]


def test_videos_found_by_path_else_by_id(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "3261112327_ret_insert1.mp4").write_bytes(b"")  # VNBench's path is not under video_dir
    (tmp_path / "videos" / "needle_32.mp4").write_bytes(b"")
    items, report = load_choices(write_json(tmp_path / "vnbench.json", VNBENCH), tmp_path / "videos")
    assert len(items) == 3 and items[0].video_path == tmp_path / "videos" / "3261112327_ret_insert1.mp4"
    items, _ = load_choices(write_json(tmp_path / "mlvu.json", MLVU), tmp_path / "videos")
    assert items[0].video_path == tmp_path / "videos" / "needle_32.mp4"
    items, report = load_choices(write_json(tmp_path / "videomme.json", VIDEOMME), tmp_path / "videos")
    assert items == [] and report.missing_video_ids == ["fFjv93ACGo8"]


def test_repeated_qid_and_bad_files_are_errors(tmp_path):
    with pytest.raises(ValueError, match="'001-1' is already on record 1"):
        load_choices(write_json(tmp_path / "twice.json", [VIDEOMME[0], VIDEOMME[0]]))
    (tmp_path / "broken.json").write_text('[{"video": "a.mp4",')
    with pytest.raises(ValueError, match=r"broken\.json: not a readable JSON list"):
        load_choices(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="layout must be one of"):
        load_choices(write_json(tmp_path / "x.json", MLVU), layout="egoschema")


def test_videomme_parquet(tmp_path):
    parquet = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    path = tmp_path / "test-00000-of-00001.parquet"
    parquet.write_table(pyarrow.Table.from_pylist(VIDEOMME[:1]), path)
    (item,) = load_choices(path)[0]
    assert (item.qid, item.video_id, item.options[item.answer]) == ("001-1", "fFjv93ACGo8", "3.")
