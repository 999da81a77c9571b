"""Answer formats: moment windows as text and back, multiple-choice prompts and their letters.

`parse_window` (like `vtc.data.choices.parse_choice`) reads free model output and never raises on it: an answer it
cannot read is `valid=False`, for the caller to count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vtc.data.choices import LETTERS

# The model's question template for multiple-choice prompts: `format_choices` writes the whole question.
CHOICE_QUESTION = "{query}"
# What a multiple-choice answer is, with its prompt's instruction: the right option's letter (LLaVA's prompt, what
# pretrained LLMs answer) or its text (for a small LM that has yet to learn to point from an option to its letter).
CHOICE_ANSWERS: dict[str, str] = {
    "letter": "Answer with the option's letter from the given choices directly.",
    "text": "Answer with the option's text from the given choices directly.",
}
# STAC's target sentence (default) and Mr.BLIP's "[[start, end]]" answer.
TEMPLATES: dict[str, str] = {
    "sentence": "It starts at {start} and ends at {end} seconds.",
    "brackets": "[[{start}, {end}]]",
}
DEFAULT_TEMPLATE = "sentence"

# A time: seconds ("12", "12.5", ".5") or minutes:seconds ("1:05.5").
_NUMBER = r"(?:\d+:)?\d+(?:\.\d+)?|\.\d+"
# Readings of a window, most specific first: brackets, the sentence, then loose "X to Y" forms.
_WINDOW_PATTERNS = [
    re.compile(rf"\[\s*\[?\s*({_NUMBER})\s*s?\s*,\s*({_NUMBER})\s*s?\s*\]"),
    re.compile(rf"starts?\s+(?:at\s+)?({_NUMBER}).*?ends?\s+(?:at\s+)?({_NUMBER})", re.IGNORECASE | re.DOTALL),
    re.compile(
        rf"({_NUMBER})\s*(?:s|sec|secs|seconds?)?\s*(?:to|until|till|and|-|–|—|~)\s*({_NUMBER})",
        re.IGNORECASE,
    ),
]
_ANY_NUMBER = re.compile(_NUMBER)
# LITA's time tokens: "<t7>" is the 8th of N points spread evenly from 0 to the video's duration.
_TIME_TOKEN = re.compile(r"<t(\d+)>")


@dataclass(frozen=True)
class ParsedWindow:
    """A parsed answer: `window` is `(start, end)` seconds with `0 <= start < end <= duration`, or None.

    `valid` is False exactly when `window` is None (no window could be read, or it was empty after clamping).
    """

    window: tuple[float, float] | None
    valid: bool


def resolve_template(template: str) -> str:
    """A template name from `TEMPLATES`, or a format string with `{start}` and `{end}`."""
    resolved = TEMPLATES.get(template, template)
    if "{start}" not in resolved or "{end}" not in resolved:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)} or contain {{start}} and {{end}}: {template!r}")
    return resolved


def format_seconds(value: float, decimals: int = 2) -> str:
    """`value` rounded to `decimals`, without trailing zeros: 3.0 -> "3", 3.50 -> "3.5"."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def check_window(start: float, end: float) -> None:
    """Raise unless `0 <= start < end` (both finite)."""
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ValueError(f"need a window with 0 <= start < end, got start={start}, end={end}")


def format_window(start: float, end: float, template: str = DEFAULT_TEMPLATE, decimals: int = 2) -> str:
    """The answer text of `[start, end]` seconds, e.g. "It starts at 3.5 and ends at 7 seconds."."""
    check_window(start, end)
    return resolve_template(template).format(start=format_seconds(start, decimals), end=format_seconds(end, decimals))


def parse_seconds(text: str) -> float:
    """ "12.5" -> 12.5, "1:05.5" -> 65.5."""
    minutes, _, seconds = text.rpartition(":")
    return float(seconds) + 60 * float(minutes or 0)


def parse_window(text: str, duration: float | None = None) -> ParsedWindow:
    """Read a `(start, end)` window from model output, tolerantly.

    Accepts either template, loose forms ("from 3 to 7.5 s", "3-7.5", "between 1:02 and 1:10") and, failing
    those, a text holding exactly two numbers. Swapped start/end are put in order; the window is clamped to
    `[0, duration]` when `duration` is given. Anything unreadable (a number beyond the float range included), or a
    window empty after clamping, gives `ParsedWindow(None, valid=False)`; this function never raises on `text`.
    """
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    if not isinstance(text, str):
        return ParsedWindow(None, False)
    numbers = _find_window(text)
    if numbers is None:
        return ParsedWindow(None, False)
    start, end = sorted(parse_seconds(number) for number in numbers)
    if not math.isfinite(end):  # a number beyond the float range ("9" * 400) is no time
        return ParsedWindow(None, False)
    if duration is not None:
        start, end = min(start, duration), min(end, duration)
    if not end > start:
        return ParsedWindow(None, False)
    return ParsedWindow((start, end), True)


def _find_window(text: str) -> tuple[str, str] | None:
    """The two time strings of the first pattern that matches, else the only two numbers in `text`."""
    for pattern in _WINDOW_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1), match.group(2)
    numbers = _ANY_NUMBER.findall(text)
    return (numbers[0], numbers[1]) if len(numbers) == 2 else None


def time_token(index: int) -> str:
    """The text of time token `index`: "<t{index}>"."""
    return f"<t{index}>"


def time_token_index(seconds: float, duration: float, num_time_tokens: int) -> int:
    """The nearest of `num_time_tokens` points spread evenly over `[0, duration]` (LITA Sec. 3.2: relative time)."""
    if num_time_tokens < 2 or not duration > 0:
        raise ValueError(f"need num_time_tokens >= 2 and duration > 0, got {num_time_tokens}, {duration}")
    return min(max(round((num_time_tokens - 1) * seconds / duration), 0), num_time_tokens - 1)


def format_time_token_window(
    start: float, end: float, duration: float, num_time_tokens: int, template: str = DEFAULT_TEMPLATE
) -> str:
    """The answer text of `[start, end]` with times as time tokens, e.g. "[[<t3>, <t9>]]"."""
    check_window(start, end)
    first, last = (time_token(time_token_index(t, duration, num_time_tokens)) for t in (start, end))
    return resolve_template(template).format(start=first, end=last)


def decode_time_tokens(text: str, duration: float, num_time_tokens: int) -> str:
    """`text` with every time token replaced by its seconds, for `parse_window`; a start and end on the same
    token become the span of half a step either side of it, so that the window is not empty."""
    step = duration / (num_time_tokens - 1)
    indices = [int(match) for match in _TIME_TOKEN.findall(text)]
    if len(indices) == 2 and indices[0] == indices[1]:
        centre = indices[0] * step
        return f"[[{max(centre - step / 2, 0.0):.2f}, {min(centre + step / 2, duration):.2f}]]"
    return _TIME_TOKEN.sub(lambda match: f"{int(match.group(1)) * step:.2f}", text)


def format_choices(question: str, options: Sequence[str], answer_with: str = "letter") -> str:
    """A multiple-choice prompt: the question, "(A) option" lines, and the instruction to answer with the option's
    letter or its text (`CHOICE_ANSWERS`)."""
    if answer_with not in CHOICE_ANSWERS:
        raise ValueError(f"answer_with must be one of {sorted(CHOICE_ANSWERS)}, got {answer_with!r}")
    if not question.strip():
        raise ValueError("question is empty")
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"need 2 to {len(LETTERS)} options, got {len(options)}")
    if any(not option.strip() for option in options):
        raise ValueError(f"options must be non-empty strings, got {options!r}")
    lines = [f"Question: {question.strip()}", "Options:"]
    lines += [f"({LETTERS[index]}) {option.strip()}" for index, option in enumerate(options)]
    lines.append(CHOICE_ANSWERS[answer_with])
    return "\n".join(lines)


def choice_fields(question: str, options: Sequence[str], answer: int, answer_with: str = "letter") -> dict[str, Any]:
    """What a multiple-choice sample carries: `question`, `options`, the right option's index `answer_index`, the
    prompt `query` (`format_choices`), the target `answer` (that option's letter, or its text) and `answer_with`
    (which of the two, so that its rotations are asked alike)."""
    if not 0 <= answer < len(options):
        raise ValueError(f"answer must index one of the {len(options)} options, got {answer}")
    return {
        "question": question,
        "options": list(options),
        "answer_index": answer,
        "query": format_choices(question, options, answer_with),
        "answer": choice_answer(options, answer, answer_with),
        "answer_with": answer_with,
    }


def choice_answer(options: Sequence[str], index: int, answer_with: str) -> str:
    """The answer that names option `index`: its letter, or its text (`answer_with`, one of `CHOICE_ANSWERS`)."""
    return LETTERS[index] if answer_with == "letter" else options[index].strip()
