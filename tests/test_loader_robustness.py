"""Nothing lost, nothing silently wrong: bytes that are not UTF-8, numbers beyond the float range, infinite
durations and repeated qids in annotations and predictions are counted skips or errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vtc.data.moment import load_charades_sta, load_moment_jsonl, read_durations
from vtc.data.qa import load_choice_jsonl
from vtc.eval.moment import evaluate_moments, parse_predicted_windows
from vtc.eval.predict import score
from vtc.utils.io import read_jsonl

QVHIGHLIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "qvhighlights" / "highlight_val_release.jsonl"
HUGE = "1" + "0" * 400  # an integer JSON reads exactly, beyond the float range (float() raises OverflowError)


def moment_line(qid: str, window: str = "[1, 2]", duration: str = "10") -> bytes:
    """One moment_detr-style JSON line with `window` and `duration` written verbatim."""
    text = f'{{"qid": "{qid}", "vid": "v", "query": "q", "duration": {duration}, "relevant_windows": [{window}]}}\n'
    return text.encode()


def choice_line(qid: str, duration: str = "10") -> bytes:
    """One multiple-choice JSON line with `duration` written verbatim."""
    text = (
        f'{{"qid": "{qid}", "vid": "v", "question": "?", "options": ["x", "y"], "answer": 0, "duration": {duration}}}'
    )
    return (text + "\n").encode()


def test_non_utf8_line_is_a_counted_skip(tmp_path):
    latin1 = '{"qid": "b", "vid": "v", "query": "caf\u00e9", "duration": 10, "relevant_windows": [[1, 2]]}\n'
    moments = tmp_path / "moments.jsonl"
    moments.write_bytes(moment_line("a") + latin1.encode("latin-1") + moment_line("c"))
    items, report = load_moment_jsonl(moments)
    assert [item.qid for item in items] == ["a", "c"]
    assert (report.read, report.skipped_bad_line) == (3, 1)
    assert f"{moments}:2: not UTF-8 (byte 0xe9" in str(report)
    with pytest.raises(ValueError, match=r"moments\.jsonl:2: not UTF-8 \(byte 0xe9 at column \d+\)"):
        read_jsonl(moments)
    questions = tmp_path / "qa.jsonl"
    questions.write_bytes(choice_line("a") + b"\xff\xfe\n" + choice_line("c"))
    items, report = load_choice_jsonl(questions)
    assert [item.qid for item in items] == ["a", "c"] and report.skipped_bad_line == 1
    assert f"{questions}:2: not UTF-8 (byte 0xff" in str(report)
    text = tmp_path / "sta.txt"
    text.write_bytes(b"AAA 1.0 2.0##ok\nAAA 2.0 3.0##caf\xe9\nAAA 3.0 4.0##ok too\n")
    items, report = load_charades_sta(text, {"AAA": 10.0})
    assert [item.query for item in items] == ["ok", "ok too"] and report.skipped_bad_line == 1
    assert f"{text}:2: not UTF-8" in str(report)
    csv = tmp_path / "durations.csv"
    csv.write_bytes(b"id,length\nAAA,10.0\nBBB\xff,3.0\n")
    with pytest.raises(ValueError, match=r"durations\.csv:3: not UTF-8 \(byte 0xff\)"):
        read_durations(csv)


def test_non_utf8_line_in_the_real_qvhighlights_file_is_a_counted_skip(tmp_path):
    if not QVHIGHLIGHTS.exists():
        pytest.skip(f"real data not available: {QVHIGHLIGHTS} (the shared data folder ../shared/data is absent)")
    lines = QVHIGHLIGHTS.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"query": "', b'"query": "\xc3\x28', 1)  # an invalid two-byte sequence
    corrupted = tmp_path / "highlight_val_release.jsonl"
    corrupted.write_bytes(b"".join(lines))
    items, report = load_moment_jsonl(corrupted)
    assert (report.read, len(items), report.skipped_bad_line) == (1_550, 1_549, 1)
    assert f"line 3: {corrupted}:3: not UTF-8 (byte 0xc3" in str(report)


def test_overflowing_number_is_a_counted_skip(tmp_path):
    moments = tmp_path / "moments.jsonl"
    moments.write_bytes(
        moment_line("ok")
        + moment_line("huge end", window=f"[1, {HUGE}]")
        + moment_line("1e400 start", window="[1e400, 2]")
        + moment_line("huge duration", duration=HUGE)
        + moment_line("digits past the int limit", window="[1, " + "9" * 5000 + "]")
    )
    items, report = load_moment_jsonl(moments)
    assert [item.qid for item in items] == ["ok"]
    assert (report.read, report.skipped_bad_window, report.missing_duration, report.skipped_bad_line) == (5, 2, 1, 1)
    assert "line 2: window [1, 1000" in str(report) and "beyond the float range" in str(report)
    assert "line 3: window [inf, 2] is not finite" in str(report)
    assert "line 4: video 'v' has no positive finite duration (1000" in str(report)
    assert f"line 5: {moments}:5: not valid JSON (Exceeds the limit" in str(report)
    questions = tmp_path / "qa.jsonl"
    questions.write_bytes(choice_line("ok") + choice_line("huge", duration=HUGE))
    items, report = load_choice_jsonl(questions)
    assert [item.qid for item in items] == ["ok"] and report.skipped_bad_line == 1
    assert "line 2: `duration` must be a finite number of seconds, got 1000" in str(report)
    text = tmp_path / "sta.txt"
    text.write_text("AAA 1.0 2.0##ok\nAAA 1e400 5.0##overflowing start\n")
    items, report = load_charades_sta(text, {"AAA": 10.0})
    assert len(items) == 1 and report.skipped_bad_window == 1 and "line 2: window [inf, 5.0]" in str(report)


def test_infinite_duration_is_skipped(tmp_path):
    moments = tmp_path / "moments.jsonl"
    durations = ("10", "Infinity", "-Infinity", "NaN", "1e400")
    moments.write_bytes(b"".join(moment_line(str(i), duration=d) for i, d in enumerate(durations)))
    items, report = load_moment_jsonl(moments)
    assert [item.qid for item in items] == ["0"]
    assert report.missing_duration == 4 and report.skipped == 4
    assert "line 2: video 'v' has no positive finite duration (inf)" in str(report)
    questions = tmp_path / "qa.jsonl"
    questions.write_bytes(choice_line("ok") + choice_line("inf", duration="Infinity"))
    items, report = load_choice_jsonl(questions)
    assert [item.qid for item in items] == ["ok"] and report.skipped_bad_line == 1
    csv = tmp_path / "durations.csv"
    csv.write_text("id,length\nAAA,10.0\nBBB,inf\nCCC,1e400\nDDD,nan\n")
    assert read_durations(csv) == {"AAA": 10.0}
    text = tmp_path / "sta.txt"
    text.write_text("AAA 1.0 2.0##ok\nBBB 1.0 2.0##infinite video\n")
    items, report = load_charades_sta(text, csv)
    assert len(items) == 1 and report.missing_duration == 1
    items, report = load_charades_sta(text, {"AAA": 10.0, "BBB": float("inf")})
    assert len(items) == 1 and report.missing_duration == 1


def test_duplicate_ground_truth_qid_is_refused(tmp_path):
    moments = tmp_path / "moments.jsonl"
    moments.write_bytes(moment_line("a") + moment_line("b") + b"\n" + moment_line("a"))
    with pytest.raises(ValueError, match=r"moments\.jsonl:4: qid 'a' is already on line 1; every qid .* unique"):
        load_moment_jsonl(moments)
    questions = tmp_path / "qa.jsonl"
    questions.write_bytes(choice_line("7") + choice_line("7"))
    with pytest.raises(ValueError, match=r"qa\.jsonl:2: qid '7' is already on line 1"):
        load_choice_jsonl(questions)
    numeric = tmp_path / "numeric.jsonl"  # 7 and "7" are the same qid once loaded (qids are strings)
    numeric.write_text(json.dumps({"qid": 7, "vid": "v", "query": "q", "duration": 9, "windows": [[1, 2]]}) + "\n")
    numeric.write_bytes(numeric.read_bytes() + moment_line("7"))
    with pytest.raises(ValueError, match=r"numeric\.jsonl:2: qid '7' is already on line 1"):
        load_moment_jsonl(numeric)


@pytest.mark.parametrize("value", [[[0.0, 10**400]], [[0.0, 5.0, -(10**400)]], [[0.0, float("inf")]]])
def test_non_finite_predicted_window_is_invalid_not_a_crash(value):
    assert parse_predicted_windows(value) is None
    ground_truth = {"good": np.array([[0.0, 10.0]]), "bad": np.array([[0.0, 10.0]])}
    metrics = evaluate_moments({"good": [[0.0, 10.0]], "bad": value}, ground_truth)
    assert metrics["num_invalid"] == 1 and metrics["mIoU"] == 50.0
    records = [
        {"qid": "good", "pred_relevant_windows": [[0.0, 10.0, 1.0]], "relevant_windows": [[0.0, 10.0]]},
        {"qid": "bad", "pred_relevant_windows": value, "relevant_windows": [[0.0, 10.0]]},
    ]
    assert score(records)["num_invalid"] == 1


def test_duplicate_prediction_qids_are_counted_not_merged():
    records = [
        {"qid": "a", "pred_relevant_windows": [[0.0, 10.0, 1.0]], "relevant_windows": [[0.0, 10.0]]},
        {"qid": "b", "pred_relevant_windows": None, "relevant_windows": [[0.0, 10.0]]},
        {"qid": "a", "pred_relevant_windows": [[50.0, 60.0, 1.0]], "relevant_windows": [[0.0, 10.0]]},
    ]
    metrics = score(records)
    assert metrics["num_queries"] == 2 and metrics["num_duplicates"] == 1
    assert metrics["mIoU"] == 50.0  # the first record of "a" is scored, the repeat is not
    conflicting = [*records[:2], {**records[2], "relevant_windows": [[20.0, 30.0]]}]
    with pytest.raises(ValueError, match=r"prediction record 3: qid 'a' repeats an earlier record with other"):
        score(conflicting)
    with pytest.raises(ValueError, match=r"prediction record 1: qid 'x' has unreadable relevant_windows"):
        score([{"qid": "x", "pred_relevant_windows": None, "relevant_windows": [[0, 10**400]]}])
