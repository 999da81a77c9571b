"""Reading a multiple-choice answer: the generated text parsed, or the option whose answer the model finds likeliest.

`VideoLMM`'s `choice_readout` says which (`text` by default, `likelihood`); any other model that generates text
(`vtc.integrations.training.HFVideoLLM`) is read by its generated text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from vtc.data.choices import parse_choice
from vtc.lmm.answers import choice_answer
from vtc.lmm.model import VideoLMM
from vtc.lmm.sequence import label_log_likelihoods


@torch.no_grad()
def answer_log_likelihoods(
    model: VideoLMM, batch: Mapping[str, Any], candidates: Sequence[Sequence[str]]
) -> list[Tensor]:
    """Per row of `batch` (as for `VideoLMM.generate_text`), `[K_i]`: the log-probability of each of its
    `candidates[i]` answers (its tokens and the end of sequence, summed) given the row's video and question,
    teacher-forced."""
    if len(candidates) != len(batch["query"]) or not all(candidates):
        raise ValueError(f"expected one non-empty list of candidate answers per row ({len(batch['query'])})")
    timed = model.timed_visual_embeddings(model.visual_tokens(batch), batch.get("duration"))
    rows = [row for row, answers in enumerate(candidates) for _ in answers]
    tasks = batch.get("task")
    inputs = model.sequence_builder.inputs(
        [timed[row][0] for row in rows],
        [batch["query"][row] for row in rows],
        [answer for answers in candidates for answer in answers],
        None if tasks is None else [tasks[row] for row in rows],
    )
    scores = label_log_likelihoods(model.llm(**inputs).logits, inputs["labels"], shifted=not model.is_seq2seq)
    return list(scores.split([len(answers) for answers in candidates]))


@torch.no_grad()
def answer_choices(model: Any, batch: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    """Per multiple-choice row (`batch` with its `options` and `answer_with`), the answer text and the index of the
    option it names (None when it names none), by the model's `choice_readout`: generated and parsed (`text`,
    `parse_choice`), or the option whose answer (its letter or text, as the row is answered) the LM finds likeliest
    given the video and the prompt (`likelihood`: lm-evaluation-harness's multiple-choice scoring; every answer
    names an option)."""
    options = batch["options"]
    if not isinstance(model, VideoLMM) or model.config["choice_readout"] == "text":
        texts = model.generate_text(batch)
        return [(text, parse_choice(text, row)) for text, row in zip(texts, options, strict=True)]
    answer_with = batch.get("answer_with") or [None] * len(options)
    candidates = [
        [choice_answer(row, index, how or "letter") for index in range(len(row))]
        for row, how in zip(options, answer_with, strict=True)
    ]
    best = [int(scores.argmax()) for scores in answer_log_likelihoods(model, batch, candidates)]
    return [(answers[index], index) for answers, index in zip(candidates, best, strict=True)]
