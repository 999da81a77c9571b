"""Answer templates and the tolerant window / multiple-choice parsers."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vtc.data.choices import read_letter
from vtc.lmm.answers import (
    TEMPLATES,
    ParsedWindow,
    decode_time_tokens,
    format_choices,
    format_time_token_window,
    format_window,
    parse_window,
    time_token_index,
)

centiseconds = st.integers(min_value=0, max_value=360_000)


@given(
    start=centiseconds,
    length=st.integers(min_value=1, max_value=60_000),
    template=st.sampled_from(sorted(TEMPLATES)),
)
def test_format_then_parse_gives_the_window_back(start: int, length: int, template: str) -> None:
    window = (start / 100, (start + length) / 100)
    parsed = parse_window(format_window(*window, template=template), duration=window[1] + 1)
    assert parsed.valid
    assert parsed.window == pytest.approx(window, abs=1e-9)


@given(start=st.floats(0, 1000, allow_nan=False), length=st.floats(0.01, 1000, allow_nan=False))
def test_round_trip_to_two_decimals(start: float, length: float) -> None:
    end = start + length
    assume(round(end, 2) > round(start, 2))
    parsed = parse_window(format_window(start, end))
    assert parsed.window == pytest.approx((round(start, 2), round(end, 2)), abs=1e-9)


def test_templates() -> None:
    assert format_window(3.5, 7.0) == "It starts at 3.5 and ends at 7 seconds."
    assert format_window(0.25, 12.0, template="brackets") == "[[0.25, 12]]"
    assert format_window(1.0, 2.0, template="from {start}s to {end}s") == "from 1s to 2s"
    with pytest.raises(ValueError, match="start < end"):
        format_window(5.0, 5.0)
    with pytest.raises(ValueError, match="template"):
        format_window(1.0, 2.0, template="no fields")


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("It starts at 4 and ends at 9.5 seconds.", (4.0, 9.5)),
        ("[[12.3, 20]]", (12.3, 20.0)),
        ("[3, 5]", (3.0, 5.0)),
        ("It starts at 9 and ends at 4 seconds.", (4.0, 9.0)),  # swapped
        ("The event happens from 2.5 to 6 seconds.", (2.5, 6.0)),
        ("3.2s - 8s", (3.2, 8.0)),
        ("between 0:12 and 0:20.5", (12.0, 20.5)),
        ("It starts at 20 and ends at 45 seconds.", (20.0, 30.0)),  # clamped to the duration
        ("Around 7 and 11", (7.0, 11.0)),
        ("somewhere near 5 and maybe 8 I think", (5.0, 8.0)),  # only two numbers
    ],
)
def test_parse_window_tolerates_forms(text: str, window: tuple[float, float]) -> None:
    assert parse_window(text, duration=30.0) == ParsedWindow(window, True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I don't know.",
        "It starts at 5 seconds.",
        "1, 2, 3, 4",
        "It starts at 31 and ends at 40 seconds.",
        None,
    ],
)
def test_unreadable_answers_are_invalid_not_errors(text: str) -> None:
    assert parse_window(text, duration=30.0) == ParsedWindow(None, False)


def test_parse_window_checks_the_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_window("[[1, 2]]", duration=0.0)
    assert parse_window("[[1, 200]]").window == (1.0, 200.0)  # no duration: no clamping


def test_format_choices() -> None:
    prompt = format_choices("What is the man doing?", ["cooking", "running", "sleeping"])
    assert prompt.splitlines()[:5] == [
        "Question: What is the man doing?",
        "Options:",
        "(A) cooking",
        "(B) running",
        "(C) sleeping",
    ]
    with pytest.raises(ValueError, match="2 to 26 options"):
        format_choices("Why?", ["only one"])
    with pytest.raises(ValueError, match="non-empty"):
        format_choices("Why?", ["yes", " "])


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("B", 1),
        ("(C) sleeping", 2),
        ("C. sleeping", 2),
        ("The answer is D.", 3),
        ("Answer: A", 0),
        ("I think it is (b)", None),  # lowercase in parentheses is not a letter answer
        ("A man is cooking in the kitchen.", None),  # the article, not option A
        ("Option B looks right", 1),
        ("E", None),  # not one of the 4 options
        ("cooking", None),
        ("", None),
    ],
)
def test_read_letter(text: str, index: int | None) -> None:
    assert read_letter(text, num_options=4) == index


def test_read_letter_checks_num_options() -> None:
    with pytest.raises(ValueError, match="num_options"):
        read_letter("A", num_options=0)


@pytest.mark.parametrize("count", [2, 16, 100])
def test_time_tokens_name_the_nearest_of_evenly_spread_points(count: int) -> None:
    duration = 30.0
    step = duration / (count - 1)
    for index in range(count):
        assert time_token_index(index * step, duration, count) == index
        assert time_token_index(index * step + 0.49 * step, duration, count) == index
    assert time_token_index(-3.0, duration, count) == 0
    assert time_token_index(99.0, duration, count) == count - 1
    with pytest.raises(ValueError, match="num_time_tokens"):
        time_token_index(1.0, duration, 1)


@given(start=st.floats(0, 25), length=st.floats(0.5, 5), template=st.sampled_from(sorted(TEMPLATES)))
def test_time_token_windows_parse_back_within_half_a_step(start: float, length: float, template: str) -> None:
    duration, count = 30.0, 16
    text = format_time_token_window(start, start + length, duration, count, template)
    assert text.count("<t") == 2
    parsed = parse_window(decode_time_tokens(text, duration, count), duration)
    assert parsed.valid
    step = duration / (count - 1)
    first, last = parsed.window
    if time_token_index(start, duration, count) != time_token_index(start + length, duration, count):
        assert first == pytest.approx(start, abs=step / 2 + 0.01)
        assert last == pytest.approx(start + length, abs=step / 2 + 0.01)
    else:  # one token for both ends: the span of half a step either side of it
        assert last - first == pytest.approx(step, abs=0.01) or first == 0 or last == duration


def test_decode_time_tokens_leaves_other_text() -> None:
    assert decode_time_tokens("It starts at <t2> and ends at <t4> seconds.", 30.0, 16) == (
        "It starts at 4.00 and ends at 8.00 seconds."
    )
    assert parse_window(decode_time_tokens("no tokens here", 30.0, 16), 30.0) == ParsedWindow(None, False)
