"""Multiple-choice conventions shared by annotations, prompts and evaluation: option letters, and reading which
option an annotation's answer or a model's free answer names (never raising on the answer)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

LETTERS = string.ascii_uppercase
# An option that opens with its own letter: "A. cat", "A) cat", "(A) cat", "A: cat".
_LETTER_PREFIX = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])\s*")


def read_letter(text: str, num_options: int) -> int | None:
    """The 0-based option index a model answered ("B", "(B)", "B. cooking", "The answer is B"), or None.

    Readings, most specific first: a parenthesised letter, "answer/option (is) X", a letter opening the text
    followed by punctuation or nothing, the only stand-alone capital letter in the text (not the article "A").
    Only letters of the `num_options` options count; this function never raises on `text`.
    """
    if not 1 <= num_options <= len(LETTERS):
        raise ValueError(f"num_options must be 1 to {len(LETTERS)}, got {num_options}")
    if not isinstance(text, str):
        return None
    valid = LETTERS[:num_options]
    letter = f"([{valid}])"
    patterns = [
        rf"\(\s*{letter}\s*\)",
        rf"(?i:answer|option|choice)\s*(?:is|:)?\s*:?\s*{letter}\b",
        rf"^\s*{letter}\s*(?:$|[.):,\]])",
    ]
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return valid.index(match.group(1))
    standalone = {match.group(1) for match in re.finditer(rf"\b{letter}\b(?!\s+[a-z])", text)}
    return valid.index(standalone.pop()) if len(standalone) == 1 else None


def parse_choice(answer: Any, options: Sequence[str]) -> int | None:
    """The option index an answer names, or None when it names none.

    Accepts an int index, the exact text of one option (case and surrounding space ignored), or an upper-case
    letter (`"B"`, `"(B)"`, `"B."`, `"B) a cat"`, `"Answer: B"`, `"The answer is B"`), read by
    `read_letter`.
    """
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer if 0 <= answer < len(options) else None
    if not isinstance(answer, str):
        return None
    text = answer.strip()
    normalised = [option.strip().lower() for option in options]
    if normalised.count(text.lower()) == 1:
        return normalised.index(text.lower())
    return read_letter(text, len(options)) if 1 <= len(options) <= len(LETTERS) else None


def strip_option_letters(options: Sequence[str]) -> list[str]:
    """The options without their letters when every option opens with its own letter in order ("A. cat",
    "B. dog", as Video-MME publishes them; also "(A) cat", "A) cat", "A: cat"); otherwise the options unchanged.
    One prefix is stripped, once."""
    matches = [_LETTER_PREFIX.match(option) for option in options]
    letters = [match and (match.group(1) or match.group(2)) for match in matches]
    if not options or letters != list(LETTERS[: len(options)]):
        return list(options)
    return [option[match.end() :] for option, match in zip(options, matches, strict=True)]
