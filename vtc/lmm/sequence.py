"""The language model's input sequences: text and visual embeddings in order, answer targets, padding.

A seq2seq LM reads `[visual tokens, question]` and learns the answer as decoder labels; a causal LM reads
`[BOS, prompt, visual tokens, question, answer]` with labels on the answer only, padded on the left so that it
generates on the right. Frame times can mark the visual tokens, as text ("12.5s", Mr.BLIP) or as LITA's time
tokens, which also write the answer's window and are read back as seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from vtc.lmm.answers import (
    CHOICE_QUESTION,
    ParsedWindow,
    decode_time_tokens,
    format_time_token_window,
    format_window,
    parse_window,
    time_token,
    time_token_index,
)

IGNORE_INDEX = -100  # label of positions without loss (Hugging Face's convention)


def left_pad(sequences: list[Tensor], value: float | int) -> Tensor:
    """Stack `[L_i, ...]` into `[B, max L, ...]`, padding on the left (causal LMs generate on the right)."""
    return pad_sequence(sequences, batch_first=True, padding_value=value, padding_side="left")


def label_log_likelihoods(logits: Tensor, labels: Tensor, shifted: bool) -> Tensor:
    """`[B]`: the summed log-probability of each row's labelled tokens (`labels [B, L]`, `IGNORE_INDEX` elsewhere)
    under `logits [B, L, V]`; `shifted` for a causal LM, whose logits at position i predict the label at i + 1."""
    if logits.shape[:2] != labels.shape:
        shapes = f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"expected logits [B, L, V] over labels [B, L], got {shapes}")
    if shifted:
        logits, labels = logits[:, :-1], labels[:, 1:]
    labelled = labels != IGNORE_INDEX
    log_probs = logits.float().log_softmax(-1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (log_probs * labelled).sum(-1)


class SequenceBuilder:
    """Builds a language model's inputs from visual embeddings, queries and answers, and reads answers back.

    It holds the tokenizer and the (unwrapped) Hugging Face model, whose input embeddings it looks up at each call
    (LoRA may wrap them after construction), and the config's `prompt`, `question`, `answer_template`,
    `timestamp_tokens` and `time_tokens`. A batch of a task mixture says what each row asks (`tasks`): a moment
    row fills the config's `question`, a multiple-choice row asks its prompt whole (`questions`).
    """

    def __init__(self, tokenizer: Any, language_model: nn.Module, config: Mapping[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.language_model = language_model
        self.is_seq2seq = bool(language_model.config.is_encoder_decoder)
        self.prompt, self.question = str(config["prompt"]), str(config["question"])
        self.answer_template = config["answer_template"]
        self.num_time_tokens = int(config["time_tokens"])
        self.marks_times = bool(config["timestamp_tokens"]) or self.num_time_tokens > 0
        self._text_ids: dict[str, list[int]] = {}

    @property
    def embeddings(self) -> nn.Module:
        """The language model's input embeddings (`[L]` ids -> `[L, H]`)."""
        return self.language_model.get_input_embeddings()

    @property
    def device(self) -> torch.device:
        """The device of the input embeddings, where token ids go."""
        return self.embeddings.weight.device

    def embed_text(self, text: str, eos: bool = False) -> tuple[Tensor, Tensor]:
        """Token ids `[L]` and embeddings `[L, H]` of `text` (no special tokens; optional trailing EOS)."""
        if text not in self._text_ids:  # the same markers and prompts recur in every batch
            self._text_ids[text] = self.tokenizer(text, add_special_tokens=False).input_ids
        ids = self._text_ids[text]
        if eos:
            ids = [*ids, self.tokenizer.eos_token_id]
        ids = torch.tensor(ids, dtype=torch.long, device=self.device)
        return ids, self.embeddings(ids)

    def time_label(self, seconds: float, duration: float) -> str:
        """The marker of a frame time: a time token with `time_tokens`, else timestamp text ("12.5s")."""
        if self.num_time_tokens:
            return time_token(time_token_index(seconds, duration, self.num_time_tokens))
        return f"{seconds:.1f}s"

    def timed_embeddings(
        self, projected: Tensor, mask: Tensor, times: Tensor, durations: Sequence[float] | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """Valid visual embeddings of each video with the time (seconds) of every position, `([L_i, H], [L_i])`.

        Args:
            projected: `[B, L, H]` projected visual tokens (cast to the embeddings' dtype).
            mask: `[B, L]` bool, True at valid tokens.
            times: `[B, L]` seconds of each token.
            durations: seconds per video; needed by `time_tokens`.

        With `timestamp_tokens` or `time_tokens`, a marker (`time_label`) precedes each run of tokens with the
        same marker, so tokens not tied to one frame get one too; its positions take the run's first time.
        """
        if self.num_time_tokens and durations is None:
            raise ValueError("time_tokens need each video's duration (batch['duration'])")
        projected = projected.to(self.embeddings.weight.dtype)
        durations = [0.0] * len(projected) if durations is None else durations
        videos = []
        for tokens, valid, token_times, duration in zip(projected, mask, times, durations, strict=True):
            video = (tokens[valid], token_times[valid])
            videos.append(self.marked(*video, float(duration)) if self.marks_times else video)
        return videos

    def marked(self, tokens: Tensor, times: Tensor, duration: float) -> tuple[Tensor, Tensor]:
        """One video's tokens `[L, H]` at `times` `[L]` with a time marker before each run of equal markers."""
        labels = [self.time_label(time, duration) for time in times.tolist()]
        starts = [i for i in range(len(labels)) if i == 0 or labels[i] != labels[i - 1]]
        pieces, piece_times = [], []
        for start, end in zip(starts, [*starts[1:], len(labels)], strict=True):
            marker = self.embed_text(labels[start])[1]
            pieces += [marker, tokens[start:end]]
            piece_times += [times[start].expand(len(marker)), times[start:end]]
        return torch.cat(pieces), torch.cat(piece_times)

    def answer_text(self, batch: Mapping[str, Any]) -> list[str]:
        """Each row's target: its `batch["answer"]` string, else its `batch["window"]` `(start, end)` in the
        configured template (with `time_tokens`, as time tokens of `batch["duration"]`); a batch of a task mixture
        has None in the entries of the rows that the other key answers."""
        rows = len(batch["answer"] if "answer" in batch else batch["window"])
        answers, windows = batch.get("answer", [None] * rows), batch.get("window", [None] * rows)
        durations = batch.get("duration", [None] * rows)
        return [
            answer if answer is not None else self.window_text(window, duration)
            for answer, window, duration in zip(answers, windows, durations, strict=True)
        ]

    def window_text(self, window: Sequence[float], duration: float | None) -> str:
        """The answer text of a `(start, end)` window in seconds (with `time_tokens`, as time tokens of `duration`
        seconds)."""
        start, end = window
        if not self.num_time_tokens:
            return format_window(start, end, self.answer_template)
        return format_time_token_window(start, end, duration, self.num_time_tokens, self.answer_template)

    def questions(self, queries: Sequence[str], tasks: Sequence[str | None] | None = None) -> list[str]:
        """The question text of each row: its query in the config's `question`, except a row whose `tasks` entry is
        `"choice"` (its query is the whole multiple-choice prompt, `format_choices`), asked as it is
        (`CHOICE_QUESTION`). `tasks`, one per row, comes with a task mixture's batches; without it every row
        takes the config's question."""
        tasks = [None] * len(queries) if tasks is None else tasks
        return [
            (CHOICE_QUESTION if task == "choice" else self.question).format(query=query)
            for query, task in zip(queries, tasks, strict=True)
        ]

    def parse_answer(self, text: str, duration: float) -> ParsedWindow:
        """The window of a generated answer (time tokens read as seconds first); never raises on `text`."""
        if self.num_time_tokens and isinstance(text, str):
            text = decode_time_tokens(text, duration, self.num_time_tokens)
        return parse_window(text, duration)

    def inputs(
        self,
        visual: list[Tensor],
        queries: list[str],
        answers: list[str] | None,
        tasks: Sequence[str | None] | None = None,
    ) -> dict[str, Tensor]:
        """LM inputs: `inputs_embeds [B, L, H]`, `attention_mask [B, L]`, and `labels` with `answers`; `visual`
        holds `[L_i, H]` per row, each row asking its query as `questions(queries, tasks)` says."""
        question = [self.embed_text(text, eos=self.is_seq2seq)[1] for text in self.questions(queries, tasks)]
        if self.is_seq2seq:
            embeds = [torch.cat([video, text]) for video, text in zip(visual, question, strict=True)]
            inputs = self.padded(embeds, padding_side="right")
            if answers is not None:
                ids = [self.embed_text(answer, eos=True)[0] for answer in answers]
                inputs["labels"] = pad_sequence(ids, batch_first=True, padding_value=IGNORE_INDEX)
            return inputs
        prefix_ids, prompt = self.embed_text(self.prompt)
        if self.tokenizer.bos_token_id is not None:
            bos = torch.tensor([self.tokenizer.bos_token_id], device=self.device)
            prompt = self.embeddings(torch.cat([bos, prefix_ids]))
        embeds = [torch.cat([prompt, video, text]) for video, text in zip(visual, question, strict=True)]
        if answers is None:
            return self.padded(embeds, padding_side="left")
        labels = []
        for index, answer in enumerate(answers):
            ids, answer_embeds = self.embed_text(answer, eos=True)
            labels.append(torch.cat([ids.new_full((len(embeds[index]),), IGNORE_INDEX), ids]))
            embeds[index] = torch.cat([embeds[index], answer_embeds])
        inputs = self.padded(embeds, padding_side="left")
        inputs["labels"] = left_pad(labels, IGNORE_INDEX)
        return inputs

    def padded(self, embeds: list[Tensor], padding_side: str) -> dict[str, Tensor]:
        """Pad `[L_i, H]` embeddings into `inputs_embeds [B, L, H]` with `attention_mask [B, L]` (and, for
        causal LMs, `position_ids` counting only real tokens, as generation does)."""
        masks = [torch.ones(len(e), dtype=torch.long, device=self.device) for e in embeds]
        inputs = {
            "inputs_embeds": pad_sequence(embeds, batch_first=True, padding_side=padding_side),
            "attention_mask": pad_sequence(masks, batch_first=True, padding_side=padding_side),
        }
        if not self.is_seq2seq:
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        return inputs
