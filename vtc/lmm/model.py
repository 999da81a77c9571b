"""`VideoLMM`: frozen encoder (or cached features) -> compressor -> projector -> language model.

The language model comes from a local Hugging Face folder and is one of
- a seq2seq model (T5 family): visual tokens then the question are the encoder's `inputs_embeds`;
- a causal LM (Llama, Qwen2, OPT, Phi, ...): `[prompt, visual tokens, question, answer]`, answer labels;
- a BLIP-2 folder: its own language model (T5 or OPT, handled as above), and its ViT + Q-Former as the encoder
  when the encoder config is `{"type": "blip2"}` without another path.
The loss is the mean next-token negative log-likelihood of the answer tokens (STAC Sec. 3.4, MambaMia Sec. 3).
Options for grounding: frame times as text (`timestamp_tokens`, Mr.BLIP) or as LITA's time tokens (`time_tokens`: N
new tokens marking frames and writing the answer); a saliency head on a seq2seq LM's encoder states with a per-frame
loss (`saliency_loss`, Moment-DETR) that can also read the window out (`readout: saliency`) instead of the text.
The parts live beside this module: the config (`config`), loading (`loading`), the LM's sequences (`sequence`), the
saliency head (`saliency`), batches (`batches`) and checkpoints (`persistence`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from vtc.compressors import CompressedTokens, Compressor, create_compressor, takes_argument
from vtc.lmm.answers import ParsedWindow, format_window
from vtc.lmm.batches import batch_visuals, single_video_batch
from vtc.lmm.config import load_config
from vtc.lmm.loading import add_time_tokens, apply_training_mode, build_vision_encoder, load_language_model
from vtc.lmm.persistence import checkpoint_config, load_checkpoint_weights, save_checkpoint
from vtc.lmm.projector import Projector
from vtc.lmm.qformer import build_qformer
from vtc.lmm.saliency import SaliencyHead, salient_window
from vtc.lmm.sequence import SequenceBuilder

__all__ = ["VideoLMM", "build_model", "load_config"]


def build_compressor(config: Mapping[str, Any], dim: int, grid: tuple[int, int] | None) -> Compressor:
    """The compressor of a model config over `dim`-channel tokens; one that takes a `grid` argument gets the
    encoder's `grid` unless the config sets it (so pooling, ToMe's neighbourhoods and MambaMia's spatial stage see
    the patches where they are)."""
    options = dict(config)
    name = options.pop("name")
    if grid is not None and takes_argument(name, "grid") and options.get("grid") is None:
        options["grid"] = list(grid)
    return create_compressor(name, dim=dim, **options)


def moment_saliency_loss(
    model: VideoLMM, outputs: Any, times: list[Tensor], windows: Sequence[Any] | None
) -> Tensor | float:
    """The weighted saliency loss (`saliency_loss` x `SaliencyHead.loss`, a scalar tensor) of the LM `outputs` (their
    `encoder_last_hidden_state [B, L, H]`, visual tokens at `times`, `[L_i]` seconds per row) over the rows that have
    a window: every row of a moment batch, the moment rows of a task mixture's (its multiple-choice rows' windows
    are None); 0.0 for a model without a saliency head or a batch without such a row."""
    rows = [row for row, window in enumerate(windows or []) if window is not None]
    if model.saliency_head is None or not rows:
        return 0.0
    hidden = outputs.encoder_last_hidden_state[rows]
    loss = model.saliency_head.loss(hidden, [times[row] for row in rows], [windows[row] for row in rows])
    return model.config["saliency_loss"] * loss


def build_model(config: Mapping[str, Any] | str | os.PathLike) -> VideoLMM:
    """Build a `VideoLMM` from a config dict or a YAML file (see `vtc.lmm.config.DEFAULTS` for the keys)."""
    return VideoLMM(load_config(config))


class VideoLMM(nn.Module):
    """A video LLM around any registered compressor. Build it with `vtc.build_model(config)`.

    Trained: compressor + projector (+ saliency head) always; the language model per `llm.mode` (frozen / LoRA /
    full; with `time_tokens`, LoRA trains the new tokens' embeddings too);
    the vision encoder only with `encoder_trainable` (default False: pretrained towers stay frozen; an encoder
    whose `supports_training` is set, such as the random `tiny` one, may then train end to end).
    `sequence_builder` lays out the LM's inputs and writes and reads the answers.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        llm_config = config["llm"]
        path = str(llm_config["path"])
        from transformers import AutoTokenizer

        language_model, blip2 = load_language_model(path, llm_config["load_in_4bit"])  # checks the folder first
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        new_token_ids = add_time_tokens(self.tokenizer, language_model, int(config["time_tokens"]))
        self.sequence_builder = SequenceBuilder(self.tokenizer, language_model, config)
        self.encoder = build_vision_encoder(config["encoder"], blip2, path)
        if config["encoder_trainable"]:
            if not self.encoder.supports_training:
                raise ValueError(f"encoder_trainable: the {type(self.encoder).__name__} encoder cannot train")
            self.encoder.requires_grad_(True)
        dim = self.encoder.output_dim if self.encoder is not None else int(config["feature_dim"])
        self.qformer = build_qformer(config["qformer"], dim)
        dim = self.qformer.output_dim if self.qformer is not None else dim
        self.compressor = build_compressor(config["compressor"], dim, self.token_grid)
        hidden = language_model.get_input_embeddings().embedding_dim
        self.projector = Projector(dim, hidden, config["projector"], config["time_embedding"])
        if config["saliency_loss"] > 0 and not self.is_seq2seq:
            raise ValueError("saliency_loss needs a seq2seq LM: a causal LM's visual tokens come before the query")
        self.saliency_head = SaliencyHead(hidden) if config["saliency_loss"] > 0 else None
        if blip2 is not None and config["projector"] == "linear" and blip2.language_projection.in_features == dim:
            self.projector.layers[0].load_state_dict(blip2.language_projection.state_dict())
        self.llm = apply_training_mode(
            language_model, llm_config["mode"], config["lora"], llm_config["load_in_4bit"], new_token_ids
        )
        for module in (self.encoder, self.qformer, self.compressor, self.projector, self.saliency_head):
            if module is not None:
                module.to(self.language_model.device)

    @property
    def token_grid(self) -> tuple[int, int] | None:
        """The `(rows, cols)` patch grid of the tokens the compressor reads: the encoder's `grid`, or None (no
        encoder, an encoder without a grid, or a `qformer` in between, whose queries have no grid)."""
        if self.encoder is None or self.qformer is not None:
            return None
        return self.encoder.grid

    @property
    def language_model(self) -> nn.Module:
        """The Hugging Face model (inside the peft wrapper when LoRA is on)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    @property
    def is_seq2seq(self) -> bool:
        """Whether the language model is an encoder-decoder (T5 family), else a causal LM."""
        return self.sequence_builder.is_seq2seq

    @property
    def device(self) -> torch.device:
        """The device of the projector (and of every trained part)."""
        return self.projector.layers[0].weight.device

    @property
    def stores_encoder(self) -> bool:
        """Whether `save_pretrained` writes the encoder's weights: it trains, or its class
        `stores_weights_in_checkpoint` (built from its config alone, such as the `tiny` one)."""
        if self.encoder is None:
            return False
        return bool(self.config["encoder_trainable"]) or type(self.encoder).stores_weights_in_checkpoint

    def train(self, mode: bool = True) -> VideoLMM:
        """A frozen encoder always stays in eval mode, and so does a frozen language model."""
        super().train(mode)
        if self.encoder is not None and not self.config["encoder_trainable"]:
            self.encoder.eval()
        if self.config["llm"]["mode"] == "frozen":
            self.llm.eval()
        return self

    def encoded_visuals(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """What the compressor reads of a batch's `frames` (encoded) or cached `features` (see `vtc.lmm.batches`):
        tokens `[B, T, N, D]` (the Q-Former's queries when configured), `timestamps [B, T]`, `frame_mask [B, T]`, and
        for a compressor that `uses_attention` the encoder's attention `[B, T, N]` (else None)."""
        uses_attention = getattr(self.compressor, "uses_attention", False)
        if uses_attention and self.qformer is not None:
            raise ValueError(f"{self.compressor.registry_name} needs encoder attention, which qformer queries lack")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config["encoder_trainable"]):
            features, times, mask, attention = batch_visuals(batch, self.encoder, uses_attention, self.device)
        if self.qformer is not None:
            features = self.qformer(features)
        return features, times, mask, attention

    def visual_tokens(self, batch: Mapping[str, Any]) -> CompressedTokens:
        """The compressed visual tokens `[B, L, D]` of a batch (`encoded_visuals` through the compressor), with their
        `timestamps`."""
        features, times, mask, attention = self.encoded_visuals(batch)
        return self.compressor(features, times, mask, attention=attention)

    def visual_embeddings(self, compressed: CompressedTokens, durations: list[float] | None = None) -> list[Tensor]:
        """Projected valid tokens of each video, `[L_i, H]`, with a time marker before each frame's tokens when
        `timestamp_tokens` (text, Mr.BLIP Sec. 3.1) or `time_tokens` (LITA Sec. 3.2; needs `durations`, seconds
        per video) is on. A new marker starts wherever the marker of the token time changes, so tokens not tied
        to one frame get one too.
        """
        return [embeds for embeds, _ in self.timed_visual_embeddings(compressed, durations)]

    def timed_visual_embeddings(
        self, compressed: CompressedTokens, durations: list[float] | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """`visual_embeddings` with the time (seconds) of every position, `([L_i, H], [L_i])` per video."""
        projected = self.projector(compressed.tokens, compressed.timestamps)
        return self.sequence_builder.timed_embeddings(projected, compressed.mask, compressed.timestamps, durations)

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        """Answer loss of a batch (scalar): `frames` or `features` + `timestamps` (see `visual_tokens`), `query`
        (B strings), and `answer` (B strings) or `window` (B `(start, end)` seconds); a task mixture's batch has
        both (None where a row has the other) and `task` (what each row asks), and `moment_saliency_loss`."""
        queries = list(batch["query"])
        compressed = self.visual_tokens(batch)
        if len(queries) != compressed.tokens.shape[0]:
            raise ValueError(f"expected {compressed.tokens.shape[0]} queries (one per video), got {len(queries)}")
        timed = self.timed_visual_embeddings(compressed, batch.get("duration"))
        answers = self.sequence_builder.answer_text(batch)
        visual, times = [embeds for embeds, _ in timed], [t for _, t in timed]
        outputs = self.llm(**self.sequence_builder.inputs(visual, queries, answers, batch.get("task")))
        return outputs.loss + moment_saliency_loss(self, outputs, times, batch.get("window"))

    @torch.no_grad()
    def saliency_scores(self, batch: Mapping[str, Any]) -> list[tuple[Tensor, Tensor]]:
        """Per video, its distinct visual times `[T_i]` and their saliency logits `[T_i]` (`time_scores` of the LM
        encoder's states; `batch` as for `generate_text`, with `duration`)."""
        timed = self.timed_visual_embeddings(self.visual_tokens(batch), batch.get("duration"))
        inputs = self.sequence_builder.inputs(
            [embeds for embeds, _ in timed], list(batch["query"]), None, batch.get("task")
        )
        hidden = self.language_model.get_encoder()(**inputs).last_hidden_state
        return self.saliency_head.time_scores(hidden, [t for _, t in timed])

    def answer_windows(self, batch: Mapping[str, Any], num_beams: int | None = None) -> list[tuple[str, ParsedWindow]]:
        """Per video, the answer text and its window, by the configured `readout`: generated and parsed (`text`),
        or read from the saliency head (`saliency`: `salient_window` of the `saliency_scores`; the text is then
        that window in the answer template)."""
        durations = batch["duration"]
        if self.config["readout"] == "text":
            texts = self.generate_text(batch, num_beams)
            parse = self.sequence_builder.parse_answer
            return [(text, parse(text, duration)) for text, duration in zip(texts, durations, strict=True)]
        template = self.config["answer_template"]
        windows = [
            salient_window(times.double(), scores, float(duration))
            for (times, scores), duration in zip(self.saliency_scores(batch), durations, strict=True)
        ]
        return [(format_window(start, end, template), ParsedWindow((start, end), True)) for start, end in windows]

    @torch.no_grad()
    def generate_text(self, batch: Mapping[str, Any], num_beams: int | None = None) -> list[str]:
        """Decoded answers of a batch (greedy by default, beam search when `num_beams > 1`)."""
        queries, durations = list(batch["query"]), batch.get("duration")
        return generate_answers(self, self.visual_tokens(batch), queries, durations, num_beams, batch.get("task"))

    def predict(self, clip_or_path: Any, query: str, num_beams: int | None = None) -> dict[str, Any]:
        """Answer `query` about one video.

        Args:
            clip_or_path: a video file path (decoded with `config["num_frames"]` frames), a
                `vtc.video.VideoClip`, or a mapping with cached `features [T, N, D]`, `timestamps [T]` and
                `duration`.
            query: the sentence to localise.
            num_beams: beam width (default: the config's, 1 = greedy).

        Returns:
            `{"text": decoded answer, "window": (start, end) seconds or None, "valid": parsed or not}`.
        """
        batch, duration = single_video_batch(clip_or_path, self.config["num_frames"])
        was_training = self.training
        self.eval()
        text, parsed = self.answer_windows({**batch, "query": [query], "duration": [duration]}, num_beams)[0]
        self.train(was_training)
        return {"text": text, "window": parsed.window, "valid": parsed.valid}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the config and only the trained weights, each file atomically (see `vtc.lmm.persistence`)."""
        save_checkpoint(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> VideoLMM:
        """Rebuild a model saved with `save_pretrained` on its base weights.

        `overrides` replace config entries (nested dicts merged), e.g. `llm={"path": "/new/place"}`.
        """
        model = cls(load_config(checkpoint_config(directory, overrides)))
        load_checkpoint_weights(model, directory)
        return model


@torch.no_grad()
def generate_answers(
    model: VideoLMM,
    compressed: CompressedTokens,
    queries: list[str],
    durations: list[float] | None = None,
    num_beams: int | None = None,
    tasks: list[str] | None = None,
) -> list[str]:
    """`model`'s decoded answers to `queries` (one per video) about already compressed visual tokens `[B, L, D]`
    (`durations` in seconds, needed with time tokens; `tasks`, what each row asks, in a task mixture's batches):
    `VideoLMM.generate_text`, and a predictor that encodes a video once."""
    visual = model.visual_embeddings(compressed, durations)
    inputs = model.sequence_builder.inputs(visual, queries, None, tasks)
    inputs.pop("position_ids", None)
    output = model.language_model.generate(
        **inputs,
        max_new_tokens=model.config["max_new_tokens"],
        num_beams=num_beams or model.config["num_beams"],
        do_sample=False,
        eos_token_id=model.tokenizer.eos_token_id,
        pad_token_id=model.tokenizer.pad_token_id,
    )
    return [text.strip() for text in model.tokenizer.batch_decode(output, skip_special_tokens=True)]
