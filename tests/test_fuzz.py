"""Fuzzing the entry points a user's values reach: every registered compressor's `forward` and `step_frame`, the
annotation loaders, the metrics, the answer readers and the train config overrides.

Property, everywhere: a call either refuses with the library's clear error (`ValueError`, `TypeError`,
`FileNotFoundError`, the message naming what was wrong), skips and counts (loaders), or returns a result of the
documented shape whose numbers are finite. Any other exception, or a NaN / Inf out, fails.

Hypothesis runs derandomized (`FUZZ`: the same examples on every run, no example database), so CI is deterministic;
the whole file takes well under a minute on one thread. docs/robustness.md lists what each test tries.
"""

from __future__ import annotations

import json
import math
import string
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_compressor_contract import SMALL_KWARGS

import vtc
from vtc.compressors import Compressor, create_compressor
from vtc.data.choices import parse_choice
from vtc.data.moment import load_charades_sta, load_moment_jsonl, read_durations
from vtc.data.qa import choice_item_from_record, load_choice_jsonl
from vtc.eval.moment import evaluate_moments, ground_truth_windows, parse_predicted_windows
from vtc.eval.qa import evaluate_choices
from vtc.lmm.answers import parse_window
from vtc.train.config import TrainConfig, load_train_config

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
CLEAR_ERRORS = (ValueError, TypeError, FileNotFoundError)
DIM = 8
NAMES = vtc.list_compressors()
DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Values a hostile or careless user sends: extremes, non-finite, wrong types, huge integers, odd text.
HOSTILE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=3),
)
_MODELS: dict[str, Compressor] = {}  # small_compressor's cache


def small_compressor(name: str) -> Compressor:
    """`name` on its contract-test config at width `DIM`, in eval mode (built once per name)."""
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = create_compressor(name, dim=DIM, **SMALL_KWARGS.get(name, {})).eval()
    return _MODELS[name]


HOSTILE_INPUTS = (
    "wrong width", "integer dtype", "NaN token", "Inf token", "empty frames", "empty tokens", "fractional mask",
    "all-False mask row", "timestamps going back", "NaN timestamp", "no attention",
)  # fmt: skip


@st.composite
def video_batches(draw: st.DrawFn) -> dict[str, Any]:
    """Random `forward` arguments, two thirds of them clean (shapes with T = 1 and odd N, every floating dtype, scales
    from 1e-30 to 1e4, bool / 0-1 float / no masks, increasing / tied / no timestamps), a third with one of
    `HOSTILE_INPUTS`."""
    hostile = draw(st.one_of(st.just("clean"), st.just("clean"), st.sampled_from(HOSTILE_INPUTS)))
    batch, frames = draw(st.integers(1, 3)), draw(st.integers(1, 5)) if hostile != "empty frames" else 0
    per_frame = draw(st.sampled_from((1, 4, 6, 9, 16))) if hostile != "empty tokens" else 0
    width = DIM if hostile != "wrong width" else draw(st.sampled_from((1, 3, DIM + 1)))
    dtype = draw(st.sampled_from(DTYPES)) if hostile != "integer dtype" else torch.int64
    scale = draw(st.sampled_from((1e-30, 1e-3, 1.0, 1.0, 30.0, 1e4)))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    tokens = (torch.randn(batch, frames, per_frame, width, generator=generator) * scale).to(dtype)
    if hostile in ("NaN token", "Inf token") and tokens.numel():
        tokens.view(-1)[draw(st.integers(0, tokens.numel() - 1))] = math.nan if hostile == "NaN token" else -math.inf
    frame_mask = draw(st.sampled_from((None, "bool", "binary-float")))
    if frame_mask is not None or hostile in ("fractional mask", "all-False mask row"):
        valid = torch.rand(batch, frames, generator=generator) < 0.7
        valid[:, :1] = True
        frame_mask = valid.float() if frame_mask == "binary-float" else valid
        if hostile == "fractional mask" and frames:
            frame_mask = frame_mask.float().masked_fill(~valid, 0.4)
        elif hostile == "all-False mask row":
            frame_mask[-1] = False
    timestamps = None if draw(st.booleans()) else torch.rand(batch, frames, generator=generator).cumsum(dim=1) * 10
    if draw(st.booleans()) and timestamps is not None:
        timestamps = timestamps.round()  # ties
    if hostile == "timestamps going back" and frames > 1:
        timestamps = torch.arange(frames, 0, -1.0).expand(batch, frames)
    elif hostile == "NaN timestamp" and frames:
        timestamps = torch.full((batch, frames), math.nan)
    attention = None if hostile == "no attention" else torch.rand(batch, frames, per_frame, generator=generator)
    return {"tokens": tokens, "timestamps": timestamps, "frame_mask": frame_mask, "attention": attention}


@pytest.mark.parametrize("name", NAMES)
@settings(FUZZ, max_examples=25)
@given(inputs=video_batches())
def test_compressor_forward_refuses_clearly_or_returns_finite_tokens_of_the_counted_shape(name, inputs):
    model = small_compressor(name)
    tokens = inputs["tokens"]
    with torch.no_grad():
        try:
            out = model(**inputs)
        except CLEAR_ERRORS as error:
            assert str(error), "an error without a message"
            event(f"clear error: {type(error).__name__}")
            return
    event("valid output")
    batch, frames, per_frame, _ = tokens.shape
    assert out.tokens.dtype == tokens.dtype
    assert out.tokens.shape[0] == batch and out.tokens.shape[2] == DIM
    assert out.tokens.shape[1] <= model.num_output_tokens(frames, per_frame)
    assert out.mask.shape == out.frame_index.shape == out.timestamps.shape == out.tokens.shape[:2]
    assert torch.isfinite(out.tokens[out.mask]).all(), f"{name}: non-finite tokens out of finite input"
    assert ((out.frame_index >= -1) & (out.frame_index < frames)).all()
    assert (out.num_tokens >= 1).all()


STREAMING = [name for name in NAMES if small_compressor(name).supports_streaming]


@pytest.mark.parametrize("name", STREAMING)
@settings(FUZZ, max_examples=10)
@given(bad_frames=st.lists(st.integers(0, 5), max_size=3, unique=True), seed=st.integers(0, 2**16))
def test_streaming_refuses_a_bad_frame_and_carries_on_as_if_it_never_came(name, bad_frames, seed):
    """A NaN / Inf frame raises `ValueError` and leaves the state as it was: the good frames' outputs equal a
    stream that never saw the bad ones."""
    model = small_compressor(name)
    good = torch.randn(2, 6, 16, DIM, generator=torch.Generator().manual_seed(seed))
    clean_state, noisy_state, clean, noisy = model.init_state(2), model.init_state(2), [], []
    with torch.no_grad():
        for frame in range(6):
            times = torch.full((2,), float(frame))
            if frame in bad_frames:
                poisoned = good[:, frame].clone()
                poisoned[1, frame % 16, 0] = math.nan if frame % 2 else math.inf
                with pytest.raises(ValueError, match="NaN or Inf"):
                    model.step_frame(poisoned, times, noisy_state)
            out, clean_state = model.step_frame(good[:, frame], times, clean_state)
            clean.append(out.tokens[out.mask])
            out, noisy_state = model.step_frame(good[:, frame], times, noisy_state)
            noisy.append(out.tokens[out.mask])
    torch.testing.assert_close(torch.cat(noisy), torch.cat(clean))
    assert torch.isfinite(torch.cat(noisy)).all()


# Annotation records: the fields the loaders read, each a valid value, a plausible one or a hostile one.
VALID_WINDOWS = st.lists(st.tuples(st.floats(0, 20), st.floats(0.1, 20)), min_size=1, max_size=3).map(
    lambda pairs: [[start, start + length] for start, length in pairs]
)
WINDOWS = st.one_of(
    VALID_WINDOWS,
    st.lists(st.lists(st.floats(-5, 50), min_size=2, max_size=2), min_size=1, max_size=3),
    HOSTILE_SCALARS,
    st.lists(st.lists(HOSTILE_SCALARS, max_size=3), max_size=2),
)
RECORD_FIELDS = {
    "qid": st.one_of(st.integers(0, 5), st.text(max_size=3), HOSTILE_SCALARS),
    "vid": st.one_of(st.sampled_from(("v0", "v1")), HOSTILE_SCALARS),
    "query": st.one_of(st.text(max_size=20), HOSTILE_SCALARS),
    "duration": st.one_of(st.floats(0, 60), HOSTILE_SCALARS),
    "relevant_windows": WINDOWS,
    "question": st.one_of(st.text(max_size=20), HOSTILE_SCALARS),
    "options": st.one_of(st.lists(st.text(max_size=8), max_size=5), HOSTILE_SCALARS),
    "answer": st.one_of(st.integers(-2, 6), st.sampled_from(("A", "B", "(C)", "Z")), HOSTILE_SCALARS),
    "circular_group": HOSTILE_SCALARS,
}
VALID_RECORDS = st.fixed_dictionaries(
    {
        "qid": st.integers(0, 10**6),
        "vid": st.sampled_from(("v0", "v1")),
        "query": st.text(string.ascii_letters, min_size=1, max_size=10),
        "duration": st.floats(45, 60),
        "relevant_windows": VALID_WINDOWS,
        "question": st.text(string.ascii_letters, min_size=1, max_size=10),
        "options": st.lists(st.text(string.ascii_letters, min_size=1, max_size=5), min_size=4, max_size=4),
        "answer": st.integers(0, 3),
    }
)
RECORDS = st.one_of(
    VALID_RECORDS,
    st.builds(
        lambda valid, hostile: {**valid, **hostile},
        VALID_RECORDS,
        st.dictionaries(st.sampled_from(list(RECORD_FIELDS)), HOSTILE_SCALARS, max_size=1),
    ),
    st.fixed_dictionaries({}, optional=RECORD_FIELDS),
)
JSON_LINES = st.one_of(
    RECORDS.map(lambda record: json.dumps(record).encode()),
    RECORDS.map(lambda record: json.dumps(record).encode()),
    st.binary(max_size=40).filter(lambda raw: b"\n" not in raw),
    st.text(max_size=40).map(lambda text: text.replace("\n", " ").encode()),
)


def write_lines(folder: Path, name: str, lines: list[bytes]) -> Path:
    """`lines` joined by newlines into `folder/name` (overwritten)."""
    path = folder / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_report(report: Any, lines: list[bytes], loaded: int) -> None:
    """Every non-blank line is read once, and is either loaded or counted in a skip."""
    assert report.read == sum(bool(line.strip()) for line in lines)
    assert report.loaded == loaded == report.read - report.skipped
    event("file with a counted skip" if report.skipped else "file loaded whole")


@settings(FUZZ, max_examples=60)
@given(lines=st.lists(JSON_LINES, max_size=6))
def test_moment_loader_loads_valid_windows_or_counts_a_skip(folder, lines):
    path = write_lines(folder, "moments.jsonl", lines)
    try:
        items, report = load_moment_jsonl(path)
    except ValueError as error:  # only a repeated qid refuses the whole file
        assert "qid" in str(error) and str(path) in str(error)
        event("clear error: repeated qid")
        return
    check_report(report, lines, len(items))
    for item in items:
        assert math.isfinite(item.duration) and item.duration > 0 and item.windows
        assert all(0 <= start < end <= item.duration for start, end in item.windows)


@settings(FUZZ, max_examples=60)
@given(lines=st.lists(JSON_LINES, max_size=6))
def test_choice_loader_loads_answerable_questions_or_counts_a_skip(folder, lines):
    path = write_lines(folder, "choices.jsonl", lines)
    try:
        items, report = load_choice_jsonl(path)
    except ValueError as error:
        assert "qid" in str(error) and str(path) in str(error)
        event("clear error: repeated qid")
        return
    check_report(report, lines, len(items))
    for item in items:
        assert len(item.options) >= 2 and 0 <= item.answer < len(item.options) and item.question.strip()
        assert item.duration is None or (math.isfinite(item.duration) and item.duration > 0)


CHARADES_LINES = st.one_of(
    st.builds(
        lambda video, start, end, query: f"{video} {start} {end}##{query}".encode(),
        st.sampled_from(("v0", "v1", "v9")),
        st.one_of(st.floats(-5, 50), st.sampled_from(("nan", "inf", "1e400", "x", "-0"))),
        st.one_of(st.floats(-5, 50), st.sampled_from(("nan", "inf", "1e400", "x"))),
        st.text(max_size=10).map(lambda text: text.replace("\n", " ")),
    ),
    st.binary(max_size=30).filter(lambda raw: b"\n" not in raw),
)


@settings(FUZZ, max_examples=60)
@given(lines=st.lists(CHARADES_LINES, max_size=6))
def test_charades_loader_loads_valid_windows_or_counts_a_skip(folder, lines):
    path = write_lines(folder, "charades.txt", lines)
    items, report = load_charades_sta(path, {"v0": 30.0, "v1": 12.5})
    check_report(report, lines, len(items))
    for item in items:
        assert all(0 <= start < end <= item.duration for start, end in item.windows)


@settings(FUZZ, max_examples=40)
@given(
    header=st.sampled_from((b"id,length", b"id,length,scene", b"name,seconds", b"")),
    rows=st.lists(st.one_of(st.binary(max_size=20), st.text(max_size=20).map(str.encode)), max_size=4),
)
def test_duration_csv_gives_positive_finite_durations_or_a_clear_error(folder, header, rows):
    path = write_lines(folder, "durations.csv", [header, *[row.replace(b"\n", b" ") for row in rows]])
    try:
        durations = read_durations(path)
    except ValueError as error:
        assert str(path) in str(error)
        event("clear error: ValueError naming the file")
        return
    event("durations read")
    assert all(isinstance(key, str) and math.isfinite(value) and value > 0 for key, value in durations.items())


GROUND_TRUTH = st.dictionaries(
    st.text(string.ascii_lowercase, min_size=1, max_size=3),
    st.lists(st.tuples(st.floats(0, 20), st.floats(0.1, 20)), min_size=1, max_size=3).map(
        lambda pairs: np.array([[start, start + length] for start, length in pairs])
    ),
    min_size=1,
    max_size=4,
)
PREDICTED_WINDOWS = st.one_of(
    st.lists(st.tuples(st.floats(0, 20), st.floats(0.1, 20), st.floats(0, 1)), min_size=1, max_size=12).map(
        lambda rows: [[start, start + length, score] for start, length, score in rows]
    ),
    HOSTILE_SCALARS,
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=2, max_size=3), max_size=12),
    st.lists(st.lists(HOSTILE_SCALARS, max_size=4), max_size=3),
)


@settings(FUZZ, max_examples=80)
@given(ground_truth=GROUND_TRUTH, data=st.data())
def test_moment_metrics_are_percentages_whatever_the_predictions(ground_truth, data):
    qids = list(ground_truth)
    predictions = data.draw(
        st.one_of(
            st.fixed_dictionaries(dict.fromkeys(qids, PREDICTED_WINDOWS)),  # every query answered
            st.dictionaries(st.sampled_from(qids), PREDICTED_WINDOWS),  # some missing
        )
    )
    metrics = evaluate_moments(predictions, ground_truth)
    event("an invalid prediction counted" if metrics["num_invalid"] else "every prediction valid")
    assert metrics["num_queries"] == len(ground_truth)
    assert metrics["num_invalid"] == sum(parse_predicted_windows(predictions.get(qid)) is None for qid in qids)
    for key in ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75"):
        assert 0 <= metrics[key] <= 100, key


@settings(FUZZ, max_examples=60)
@given(record=st.fixed_dictionaries({"qid": HOSTILE_SCALARS}, optional={"relevant_windows": WINDOWS}))
def test_ground_truth_windows_are_valid_or_a_clear_error(record):
    try:
        windows = ground_truth_windows(record, "gt.jsonl")
    except ValueError as error:
        assert str(error).startswith("gt.jsonl: qid")
        event("clear error: ValueError naming the source and qid")
        return
    event("valid windows")
    assert windows.ndim == 2 and windows.shape[1] == 2 and len(windows)
    assert np.isfinite(windows).all() and (windows[:, 1] > windows[:, 0]).all()


@settings(FUZZ, max_examples=60)
@given(
    answers=st.lists(
        st.one_of(st.integers(0, 3), st.sampled_from(("A", "(b)", "B.", "Answer: C", "cat")), HOSTILE_SCALARS),
        max_size=4,
    ),
    options=st.lists(st.text(max_size=6), min_size=2, max_size=4),
)
def test_choice_metrics_are_percentages_whatever_the_answers(answers, options):
    questions = {
        str(qid): choice_item_from_record(
            {"qid": qid, "vid": "v", "question": "which?", "options": options, "answer": 0, "circular_group": qid % 2},
            str(qid),
        )
        for qid in range(3)
    }
    predictions = {str(qid): answer for qid, answer in enumerate(answers[:3])}
    metrics = evaluate_choices(predictions, questions)
    event("an invalid answer counted" if metrics["num_invalid"] else "every answer readable")
    assert 0 <= metrics["accuracy"] <= 100 and 0 <= metrics["circular_accuracy"] <= 100
    assert metrics["num_questions"] == 3 and 0 <= metrics["num_invalid"] <= 3


TIMES = st.one_of(
    st.integers(0, 9999).map(str),
    st.floats(0, 9999).map(lambda seconds: f"{seconds:.2f}"),
    st.builds(lambda minutes, seconds: f"{minutes}:{seconds:04.1f}", st.integers(0, 99), st.floats(0, 59.9)),
    st.from_regex(r"\d{1,4}(\.\d{0,3})?|\d{1,2}:\d{2}|\.\d", fullmatch=True),  # any Unicode digits
    st.sampled_from(("9" * 400, "1:" + "9" * 400, "0", "0.0", "00:00")),  # beyond the float range, zero
)
ANSWER_TEXT = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda left, right, glue, frame: frame.format(f"{left}{glue}{right}"),
        TIMES,
        TIMES,
        st.sampled_from((" to ", ", ", " and ", "-", " ends at ", " ")),
        st.sampled_from(("{}", "[[{}]]", "It starts at {} seconds.", "from {} s", "\n{}\n")),
    ),
)


@settings(FUZZ, max_examples=150)
@given(text=st.one_of(ANSWER_TEXT, HOSTILE_SCALARS), duration=st.one_of(st.none(), st.floats(0.5, 1e4)))
def test_parse_window_never_raises_and_a_valid_window_is_finite_and_ordered(text, duration):
    parsed = parse_window(text, duration)
    event("valid window" if parsed.valid else "invalid (counted by the caller)")
    assert parsed.valid == (parsed.window is not None)
    if parsed.valid:
        start, end = parsed.window
        assert math.isfinite(start) and math.isfinite(end) and 0 <= start < end
        assert duration is None or end <= duration


LETTER_ANSWERS = st.builds(
    lambda letter, frame: frame.format(letter),
    st.sampled_from(string.ascii_uppercase[:6]),
    st.sampled_from(("{}", "({})", "{}.", "{}) a cat", "Answer: {}", "The answer is {}", "I think {} is right")),
)


@settings(FUZZ, max_examples=150)
@given(options=st.lists(st.text(max_size=6), max_size=30), data=st.data())
def test_parse_choice_never_raises_and_names_an_option_or_none(options, data):
    own = [st.sampled_from(options).map(lambda option: f"  {option.upper()} ")] if options else []
    answer = data.draw(st.one_of(LETTER_ANSWERS, st.integers(-3, 40), *own, st.text(max_size=30), HOSTILE_SCALARS))
    chosen = parse_choice(answer, options)
    event("no option (counted by the caller)" if chosen is None else "an option")
    assert chosen is None or (type(chosen) is int and 0 <= chosen < len(options))


def config_keys() -> list[str]:
    """Every section, every `section.key` of the train config, `model.lmm` and nested keys of it, and unknown ones."""
    plain = TrainConfig().to_dict()
    keys = [*plain, *(f"{section}.{key}" for section, values in plain.items() for key in values)]
    nested = ["model.lmm.llm", "model.lmm.compressor.name", "model.lmm.compressor.keep"]
    return [*keys, *nested, "optim.nope", "nope.lr", "optim..lr"]


OVERRIDE_VALUES = st.one_of(
    st.sampled_from(("0", "-4", "2.5", ".inf", "-.inf", ".nan", "1e-4", "1e400", "true", "[1, 2", "{a: 1}", "[]")),
    st.sampled_from(("'x'", "10000000000000000000000", "5", "[0.9, 0.999]", "[5, 5]", ": :", "abc", "'1'")),
    st.sampled_from(("", "null", "~")),
    st.text(string.ascii_letters + string.digits + ".-[]{}:,' ", min_size=1, max_size=10),
)


@settings(FUZZ, max_examples=150)
@given(overrides=st.lists(st.tuples(st.sampled_from(config_keys()), OVERRIDE_VALUES), min_size=1, max_size=3))
def test_train_config_overrides_give_a_config_or_an_error_naming_the_key(overrides):
    texts = [f"{key}={value}" for key, value in overrides]
    try:
        config = load_train_config([], texts)
    except CLEAR_ERRORS as error:
        message = str(error)
        named = [part for key, _ in overrides for part in key.split(".") if part]
        assert any(part in message for part in named) or any(text in message for text in texts), message
        event(f"clear error: {type(error).__name__} naming the key")
        return
    event("valid config")
    assert isinstance(config, TrainConfig)
    assert config.optim.batch_size >= 1 and config.optim.max_steps >= 1
    assert math.isfinite(config.optim.lr) and config.optim.lr >= 0


# Found by the override fuzz (refused unclearly or not at all before): now clear errors naming what is wrong.
@pytest.mark.parametrize("override", ["optim=-4", "run=[1, 2]", "model=text", "data=true"])
def test_a_section_set_to_a_value_is_an_error_naming_the_section(override):
    with pytest.raises(ValueError, match=override.split("=")[0]):
        load_train_config([], [override])


@pytest.mark.parametrize("override", ["model.lmm=null", "model.lmm.llm=5"])
def test_a_non_mapping_lmm_section_is_an_error_naming_it(override):
    with pytest.raises(ValueError, match=r"model\.lmm"):
        load_train_config([], [override])


@pytest.mark.parametrize("override", ["optim.batch_size=", "optim.lr=null", "run.eval_every=~", "data.num_frames="])
def test_a_required_key_set_to_null_is_an_error_naming_it(override):
    with pytest.raises(ValueError, match=override.split("=")[0].split(".")[-1]):
        load_train_config([], [override])


def test_a_missing_config_file_is_a_file_not_found_error(folder):
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_train_config([folder / "missing.yaml"])
