"""Multiple-choice accuracy and circular evaluation.

Circular evaluation (MMBench "CircularEval", Liu et al., 2023, Sec. 3.3; used by VNBench): a question with n
options is asked n times, its options rotated by 0..n-1 places; it counts as right only if every rotation is
answered right. A rotation that is missing or unparseable counts as wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vtc.data.choices import parse_choice
from vtc.eval.moment import to_percent

if TYPE_CHECKING:
    from vtc.data.qa import QAItem


def rotate_options(options: Sequence[str], answer: int, shift: int) -> tuple[list[str], int]:
    """Options rotated left by `shift` (option i moves to (i - shift) mod n) and the answer's new index."""
    count = len(options)
    rotated = [options[(index + shift) % count] for index in range(count)]
    return rotated, (answer - shift) % count


def circular_variants(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One question record (`qid`, `options`, `answer` index, ...) -> its n rotations for circular evaluation.

    Rotation k gets qid `"{qid}#rot{k}"` and `circular_group = qid`; other fields are copied.
    """
    variants = []
    for shift in range(len(record["options"])):
        options, answer = rotate_options(record["options"], record["answer"], shift)
        variant = {**record, "qid": f"{record['qid']}#rot{shift}", "options": options, "answer": answer}
        variant["circular_group"] = str(record["qid"])
        variants.append(variant)
    return variants


def evaluate_choices(predictions: Mapping[str, Any], questions: Mapping[str, QAItem]) -> dict[str, float | int]:
    """Accuracy (and circular accuracy where questions carry a `group`) over every question.

    Args:
        predictions: qid -> raw answer (parsed with `parse_choice` against that question's options).
        questions: qid -> `QAItem` with `options`, `answer` index and optional `group`.

    Returns:
        `accuracy` (percent, two decimals), `num_questions`, `num_invalid` (missing or unparseable answers,
        wrong); plus `circular_accuracy` and `num_groups` when any question has a group (a question without
        one is its own group).

    Raises:
        ValueError: a predicted qid is not among the questions, or there are no questions.
    """
    unknown = [qid for qid in predictions if qid not in questions]
    if unknown:
        raise ValueError(f"{len(unknown)} predicted qids are not in the ground truth, e.g. {unknown[:5]}")
    if not questions:
        raise ValueError("the ground truth holds no question")
    correct: dict[str, bool] = {}
    num_invalid = 0
    for qid, question in questions.items():
        chosen = parse_choice(predictions.get(qid), question.options)
        num_invalid += chosen is None
        correct[qid] = chosen == question.answer
    metrics: dict[str, float | int] = {
        "accuracy": to_percent(sum(correct.values()) / len(correct)),
        "num_questions": len(correct),
        "num_invalid": num_invalid,
    }
    if any(question.group is not None for question in questions.values()):
        groups: dict[str, list[bool]] = defaultdict(list)
        for qid, question in questions.items():
            groups[question.group if question.group is not None else qid].append(correct[qid])
        metrics["circular_accuracy"] = to_percent(sum(all(group) for group in groups.values()) / len(groups))
        metrics["num_groups"] = len(groups)
    return metrics
