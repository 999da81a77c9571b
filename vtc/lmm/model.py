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
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from vtc.compressors import CompressedTokens, create_compressor
from vtc.compressors.base import WEIGHTS_NAME
from vtc.encoders import Blip2VisionEncoder, build_encoder
from vtc.encoders.hf import freeze, quantization_kwargs
from vtc.lmm.answers import (
    ParsedWindow,
    decode_time_tokens,
    format_time_token_window,
    format_window,
    parse_window,
    time_token,
    time_token_index,
)
from vtc.lmm.projector import Projector
from vtc.utils.batching import pad_frames
from vtc.utils.io import atomic_save_safetensors, atomic_write_text

CONFIG_NAME = "config.json"
PROJECTOR_NAME = "projector.safetensors"
ADAPTER_NAME = "adapter.safetensors"
LLM_WEIGHTS_NAME = "llm.safetensors"
ENCODER_WEIGHTS_NAME = "encoder.safetensors"
SALIENCY_NAME = "saliency_head.safetensors"
# Encoders built from their config alone (random or from a weights file): checkpoints store their weights.
SELF_CONTAINED_ENCODERS = ("tiny", "scene")
LLM_MODES = ("frozen", "lora", "full")
READOUTS = ("text", "saliency")
# STAC: LoRA r=8, alpha=32 on the T5 attention and feed-forward projections.
STAC_T5_LORA_TARGETS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")

DEFAULTS: dict[str, Any] = {
    "encoder": None,
    "encoder_trainable": False,
    "feature_dim": None,
    "compressor": {"name": "none"},
    "projector": "linear",
    "llm": {"path": None, "mode": "lora", "load_in_4bit": False},
    "lora": {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": None},
    "timestamp_tokens": False,
    "time_tokens": 0,
    "saliency_loss": 0.0,
    "readout": "text",
    "time_embedding": False,
    "num_frames": 8,
    "prompt": "Video:",
    "question": "Query: {query} When does it happen?",
    "answer_template": "sentence",
    "max_new_tokens": 32,
    "num_beams": 1,
}


def load_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A config dict (or YAML file path) with missing keys filled from `DEFAULTS` (nested dicts merged)."""
    if not isinstance(config, Mapping):
        config = yaml.safe_load(Path(config).read_text())
    merged = copy.deepcopy(DEFAULTS)
    for key, value in config.items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown model config key {key!r}; expected some of {sorted(DEFAULTS)}")
        if isinstance(DEFAULTS[key], dict) and isinstance(value, Mapping):
            merged[key] = {**DEFAULTS[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    if not merged["llm"]["path"]:
        raise ValueError("llm.path (a local Hugging Face folder) is required")
    if merged["llm"]["mode"] not in LLM_MODES:
        raise ValueError(f"llm.mode must be one of {LLM_MODES}, got {merged['llm']['mode']!r}")
    if merged["encoder"] is None and merged["feature_dim"] is None:
        raise ValueError("give an encoder config, or feature_dim when training on cached features")
    time_tokens = merged["time_tokens"]
    if not isinstance(time_tokens, int) or time_tokens < 0 or time_tokens == 1:
        raise ValueError(f"time_tokens must be 0 (off) or an integer >= 2, got {time_tokens!r}")
    if time_tokens and merged["timestamp_tokens"]:
        raise ValueError("time_tokens and timestamp_tokens both mark frame times: choose one")
    if time_tokens and merged["llm"]["mode"] == "frozen":
        raise ValueError("time_tokens add embeddings that must train: use llm.mode 'lora' or 'full'")
    if merged["readout"] not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {merged['readout']!r}")
    if merged["readout"] == "saliency" and not merged["saliency_loss"] > 0:
        raise ValueError("readout 'saliency' reads the saliency head, which trains only with saliency_loss > 0")
    if merged["encoder_trainable"] and merged["encoder"] is None:
        raise ValueError("encoder_trainable needs an encoder config (cached features have no encoder to train)")
    return merged


def build_model(config: Mapping[str, Any] | str | os.PathLike) -> VideoLMM:
    """Build a `VideoLMM` from a config dict or a YAML file (see `DEFAULTS` for the keys)."""
    return VideoLMM(load_config(config))


def load_language_model(path: str, load_in_4bit: bool) -> tuple[nn.Module, Any]:
    """The language model in `path` and, for a BLIP-2 folder, the whole BLIP-2 model (else None)."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        Blip2ForConditionalGeneration,
    )

    options = {"local_files_only": True, **quantization_kwargs(load_in_4bit)}
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    if hf_config.model_type == "blip-2":
        blip2 = Blip2ForConditionalGeneration.from_pretrained(path, **options)
        return blip2.language_model, blip2
    model_class = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
    return model_class.from_pretrained(path, **options), None


def lora_targets(model: nn.Module, requested: list[str] | None) -> list[str] | None:
    """LoRA targets: `requested`, else STAC's list for T5 (names this model has), else peft's default."""
    if requested is not None:
        return list(requested)
    if model.config.model_type in ("t5", "mt5", "umt5"):
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        return [target for target in STAC_T5_LORA_TARGETS if target in names]
    return None


def add_time_tokens(tokenizer: Any, model: nn.Module, count: int) -> list[int]:
    """Add LITA's `count` time tokens "<t0>" ... to `tokenizer` and `model`'s embeddings; return their ids.

    They are ordinary (not special) tokens, so that decoding keeps them for `decode_time_tokens`. The embedding
    matrix only grows (T5 and OPT keep spare rows beyond their tokenizer; ids that land there reuse them).
    """
    if count == 0:
        return []
    tokenizer.add_tokens([time_token(index) for index in range(count)])
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids([time_token(index) for index in range(count)])


def apply_training_mode(
    model: nn.Module, mode: str, lora: dict[str, Any], quantized: bool, new_token_ids: Sequence[int] = ()
) -> nn.Module:
    """Freeze the language model, wrap it with LoRA adapters (peft), or leave it fully trainable.

    With LoRA, the embeddings of `new_token_ids` (tokens added to the vocabulary) train too (peft's trainable
    tokens); the rest of the vocabulary stays frozen.
    """
    if mode == "full":
        if quantized:
            raise ValueError("llm.mode='full' cannot train a 4-bit model; use 'lora' or 'frozen'")
        return model.requires_grad_(True)
    freeze(model)
    if mode == "frozen":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora_targets(model, lora["target_modules"]),
        trainable_token_indices=list(new_token_ids) or None,
    )
    return get_peft_model(model, config)


def left_pad(sequences: list[Tensor], value: float | int) -> Tensor:
    """Stack `[L_i, ...]` into `[B, max L, ...]`, padding on the left (causal LMs generate on the right)."""
    return pad_sequence(sequences, batch_first=True, padding_value=value, padding_side="left")


class VideoLMM(nn.Module):
    """A video LLM around any registered compressor. Build it with `vtc.build_model(config)`.

    Trained: compressor + projector (+ saliency head) always; the language model per `llm.mode` (frozen / LoRA /
    full; with `time_tokens`, LoRA trains the new tokens' embeddings too);
    the vision encoder only with `encoder_trainable` (default False: pretrained towers stay frozen; an encoder
    whose `supports_training` is set, such as the random `tiny` one, may then train end to end).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        llm_config = config["llm"]
        path = str(llm_config["path"])
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._text_ids: dict[str, list[int]] = {}
        language_model, blip2 = load_language_model(path, llm_config["load_in_4bit"])
        self.num_time_tokens = int(config["time_tokens"])
        new_token_ids = add_time_tokens(self.tokenizer, language_model, self.num_time_tokens)
        self.encoder = self._build_encoder(config["encoder"], blip2, path)
        if config["encoder_trainable"]:
            if not self.encoder.supports_training:
                raise ValueError(f"encoder_trainable: the {type(self.encoder).__name__} encoder cannot train")
            self.encoder.requires_grad_(True)
        dim = self.encoder.output_dim if self.encoder is not None else int(config["feature_dim"])
        compressor_config = dict(config["compressor"])
        self.compressor = create_compressor(compressor_config.pop("name"), dim=dim, **compressor_config)
        self.is_seq2seq = bool(language_model.config.is_encoder_decoder)
        hidden = language_model.get_input_embeddings().embedding_dim
        self.projector = Projector(dim, hidden, config["projector"], config["time_embedding"])
        if config["saliency_loss"] > 0 and not self.is_seq2seq:
            raise ValueError("saliency_loss needs a seq2seq LM: a causal LM's visual tokens come before the query")
        self.saliency_head = nn.Linear(hidden, 1) if config["saliency_loss"] > 0 else None
        if blip2 is not None and config["projector"] == "linear" and blip2.language_projection.in_features == dim:
            self.projector.layers[0].load_state_dict(blip2.language_projection.state_dict())
        self.llm = apply_training_mode(
            language_model, llm_config["mode"], config["lora"], llm_config["load_in_4bit"], new_token_ids
        )
        for module in (self.encoder, self.compressor, self.projector, self.saliency_head):
            if module is not None:
                module.to(self.language_model.device)

    @staticmethod
    def _build_encoder(encoder_config: dict[str, Any] | None, blip2: Any, path: str) -> nn.Module | None:
        if encoder_config is None:
            return None
        options = dict(encoder_config)
        if options.get("type") == "blip2" and blip2 is not None and options.get("path", path) == path:
            options.pop("type")
            options.pop("path", None)
            options.pop("load_in_4bit", None)
            return Blip2VisionEncoder.from_blip2(blip2, path, **options)
        return freeze(build_encoder(options))

    @property
    def language_model(self) -> nn.Module:
        """The Hugging Face model (inside the peft wrapper when LoRA is on)."""
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    @property
    def device(self) -> torch.device:
        return self.projector.layers[0].weight.device

    @property
    def stores_encoder(self) -> bool:
        """Whether `save_pretrained` writes the encoder's weights: it trains, or it is a self-contained `tiny` or
        `scene` one (random, or read from a file that may not stay beside the checkpoint)."""
        if self.encoder is None:
            return False
        return bool(self.config["encoder_trainable"]) or self.config["encoder"].get("type") in SELF_CONTAINED_ENCODERS

    def train(self, mode: bool = True) -> VideoLMM:
        """A frozen encoder always stays in eval mode, and so does a frozen language model."""
        super().train(mode)
        if self.encoder is not None and not self.config["encoder_trainable"]:
            self.encoder.eval()
        if self.config["llm"]["mode"] == "frozen":
            self.llm.eval()
        return self

    # -------------------------------------------------------------------------------------------- inputs

    def compress(self, batch: Mapping[str, Any]) -> CompressedTokens:
        """Encode (or take cached features) and compress a batch.

        `batch` holds either `frames`: a list of uint8 `[T_i, H, W, 3]` (encoded by the frozen encoder) or
        `features`: float `[B, T, N, D]`; plus `timestamps` (`[B, T]` tensor or a list of `[T_i]`) and an
        optional `frame_mask [B, T]` (with `features`). Returns the compressor's `CompressedTokens [B, L, D]`.
        """
        if "features" in batch:
            features = batch["features"].to(self.device)
            timestamps = torch.as_tensor(batch["timestamps"], dtype=torch.float32, device=self.device)
            frame_mask = batch.get("frame_mask")
            frame_mask = None if frame_mask is None else frame_mask.to(self.device)
        else:
            if self.encoder is None:
                raise ValueError("this model has no encoder (feature_dim config): pass batch['features']")
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config["encoder_trainable"]):
                encoded = [self.encoder.encode(frames) for frames in batch["frames"]]
            times = [torch.as_tensor(t, dtype=torch.float32) for t in batch["timestamps"]]
            if [len(t) for t in times] != [len(e) for e in encoded]:
                raise ValueError(
                    f"timestamps must have one entry per frame: frames {[len(e) for e in encoded]}, "
                    f"timestamps {[len(t) for t in times]}"
                )
            features, frame_mask = (padded.to(self.device) for padded in pad_frames(encoded))
            timestamps = pad_frames(times)[0].to(self.device)
        return self.compressor(features, timestamps, frame_mask)

    def embed_text(self, text: str, eos: bool = False) -> tuple[Tensor, Tensor]:
        """Token ids `[L]` and embeddings `[L, H]` of `text` (no special tokens; optional trailing EOS)."""
        if text not in self._text_ids:  # the same markers and prompts recur in every batch
            self._text_ids[text] = self.tokenizer(text, add_special_tokens=False).input_ids
        ids = self._text_ids[text]
        if eos:
            ids = [*ids, self.tokenizer.eos_token_id]
        ids = torch.tensor(ids, dtype=torch.long, device=self.device)
        return ids, self.language_model.get_input_embeddings()(ids)

    def time_label(self, seconds: float, duration: float) -> str:
        """The marker of a frame time: a time token with `time_tokens`, else timestamp text ("12.5s")."""
        if self.num_time_tokens:
            return time_token(time_token_index(seconds, duration, self.num_time_tokens))
        return f"{seconds:.1f}s"

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
        dtype = self.language_model.get_input_embeddings().weight.dtype
        projected = self.projector(compressed.tokens, compressed.timestamps).to(dtype)
        marked = self.config["timestamp_tokens"] or self.num_time_tokens
        if self.num_time_tokens and durations is None:
            raise ValueError("time_tokens need each video's duration (batch['duration'])")
        videos = []
        durations = [0.0] * len(projected) if durations is None else durations
        for tokens, mask, times, duration in zip(
            projected, compressed.mask, compressed.timestamps, durations, strict=True
        ):
            tokens, times = tokens[mask], times[mask]
            if not marked:
                videos.append((tokens, times))
                continue
            labels = [self.time_label(time, float(duration)) for time in times.tolist()]
            starts = [i for i in range(len(labels)) if i == 0 or labels[i] != labels[i - 1]]
            pieces, piece_times = [], []
            for start, end in zip(starts, [*starts[1:], len(labels)], strict=True):
                marker = self.embed_text(labels[start])[1]
                pieces += [marker, tokens[start:end]]
                piece_times += [times[start].expand(len(marker)), times[start:end]]
            videos.append((torch.cat(pieces), torch.cat(piece_times)))
        return videos

    def answer_text(self, batch: Mapping[str, Any]) -> list[str]:
        """`batch["answer"]` strings, or `batch["window"]` `(start, end)` pairs in the configured template (with
        `time_tokens`, as time tokens of `batch["duration"]`)."""
        if "answer" in batch:
            return list(batch["answer"])
        template = self.config["answer_template"]
        if not self.num_time_tokens:
            return [format_window(start, end, template) for start, end in batch["window"]]
        return [
            format_time_token_window(start, end, duration, self.num_time_tokens, template)
            for (start, end), duration in zip(batch["window"], batch["duration"], strict=True)
        ]

    def parse_answer(self, text: str, duration: float) -> ParsedWindow:
        """The window of a generated answer (time tokens read as seconds first); never raises on `text`."""
        if self.num_time_tokens and isinstance(text, str):
            text = decode_time_tokens(text, duration, self.num_time_tokens)
        return parse_window(text, duration)

    def inputs(self, visual: list[Tensor], queries: list[str], answers: list[str] | None) -> dict[str, Tensor]:
        """LM inputs: `inputs_embeds [B, L, H]`, `attention_mask [B, L]`, and `labels` with `answers`."""
        question = [
            self.embed_text(self.config["question"].format(query=query), eos=self.is_seq2seq)[1] for query in queries
        ]
        if self.is_seq2seq:
            embeds = [torch.cat([video, text]) for video, text in zip(visual, question, strict=True)]
            inputs = self.padded(embeds, padding_side="right")
            if answers is not None:
                ids = [self.embed_text(answer, eos=True)[0] for answer in answers]
                inputs["labels"] = pad_sequence(ids, batch_first=True, padding_value=-100)
            return inputs
        prefix_ids, prompt = self.embed_text(self.config["prompt"])
        if self.tokenizer.bos_token_id is not None:
            bos = torch.tensor([self.tokenizer.bos_token_id], device=self.device)
            prefix_ids = torch.cat([bos, prefix_ids])
            prompt = self.language_model.get_input_embeddings()(prefix_ids)
        embeds = [torch.cat([prompt, video, text]) for video, text in zip(visual, question, strict=True)]
        if answers is None:
            return self.padded(embeds, padding_side="left")
        labels = []
        for index, answer in enumerate(answers):
            ids, answer_embeds = self.embed_text(answer, eos=True)
            labels.append(torch.cat([ids.new_full((len(embeds[index]),), -100), ids]))
            embeds[index] = torch.cat([embeds[index], answer_embeds])
        inputs = self.padded(embeds, padding_side="left")
        inputs["labels"] = left_pad(labels, -100)
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

    # ---------------------------------------------------------------------------------------- train / predict

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        """Answer loss of a batch (scalar): `frames` or `features` + `timestamps` (see `compress`), `query`
        (B strings), and `answer` (B strings) or `window` (B `(start, end)` seconds)."""
        queries = list(batch["query"])
        compressed = self.compress(batch)
        if len(queries) != compressed.tokens.shape[0]:
            raise ValueError(f"expected {compressed.tokens.shape[0]} queries (one per video), got {len(queries)}")
        timed = self.timed_visual_embeddings(compressed, batch.get("duration"))
        inputs = self.inputs([embeds for embeds, _ in timed], queries, self.answer_text(batch))
        if self.saliency_head is None:
            return self.llm(**inputs).loss
        outputs = self.llm(**inputs)
        saliency = self.saliency_loss(outputs.encoder_last_hidden_state, [t for _, t in timed], batch["window"])
        return outputs.loss + self.config["saliency_loss"] * saliency

    def saliency_loss(self, hidden: Tensor, times: list[Tensor], windows: list[tuple[float, float]]) -> Tensor:
        """Binary cross-entropy of per-time saliency on the LM's last hidden states `[B, L, H]`: the mean
        `saliency_head` logit of the visual positions of each time (times `[L_i]` per video), 1 inside the
        ground-truth window, 0 outside (Moment-DETR's clip saliency: a dense signal that the answer text alone
        gives only through attention). Averaging over a frame's tokens lets any one of them carry the evidence."""
        losses = []
        for (unique_times, scores), (start, end) in zip(self.time_scores(hidden, times), windows, strict=True):
            target = ((unique_times >= start) & (unique_times <= end)).to(scores.dtype)
            losses.append(nn.functional.binary_cross_entropy_with_logits(scores, target))
        return torch.stack(losses).mean()

    def time_scores(self, hidden: Tensor, times: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per video, its distinct visual times `[T_i]` and their saliency logits `[T_i]` (the mean logit of the
        positions at each time), from the LM encoder's states `[B, L, H]` (visual tokens first in each row)."""
        scores = []
        for row, position_times in zip(hidden, times, strict=True):
            logits = self.saliency_head(row[: len(position_times)]).squeeze(-1)
            unique_times, groups = torch.unique(position_times, return_inverse=True)
            sums = logits.new_zeros(len(unique_times)).index_add(0, groups, logits)
            counts = logits.new_zeros(len(unique_times)).index_add(0, groups, torch.ones_like(logits))
            scores.append((unique_times, sums / counts))
        return scores

    @torch.no_grad()
    def saliency_scores(self, batch: Mapping[str, Any]) -> list[tuple[Tensor, Tensor]]:
        """Per video, its distinct visual times `[T_i]` and their saliency logits `[T_i]` (`time_scores` of the LM
        encoder's states; `batch` as for `generate_text`, with `duration`)."""
        compressed = self.compress(batch)
        timed = self.timed_visual_embeddings(compressed, batch.get("duration"))
        inputs = self.inputs([embeds for embeds, _ in timed], list(batch["query"]), None)
        hidden = self.language_model.get_encoder()(**inputs).last_hidden_state
        return self.time_scores(hidden, [t for _, t in timed])

    def saliency_windows(self, batch: Mapping[str, Any]) -> list[tuple[float, float]]:
        """Windows read from the saliency head (Moment-DETR-style readout): per video, `salient_window` of its
        `saliency_scores`."""
        return [
            salient_window(times.double(), scores, float(duration))
            for (times, scores), duration in zip(self.saliency_scores(batch), batch["duration"], strict=True)
        ]

    def answer_windows(self, batch: Mapping[str, Any], num_beams: int | None = None) -> list[tuple[str, ParsedWindow]]:
        """Per video, the answer text and its window, by the configured `readout`: generated and parsed (`text`),
        or read from the saliency head (`saliency`; the text is then that window in the answer template)."""
        if self.config["readout"] == "text":
            texts = self.generate_text(batch, num_beams)
            return [(text, self.parse_answer(text, d)) for text, d in zip(texts, batch["duration"], strict=True)]
        template = self.config["answer_template"]
        return [
            (format_window(start, end, template), ParsedWindow((start, end), True))
            for start, end in self.saliency_windows(batch)
        ]

    @torch.no_grad()
    def generate_text(self, batch: Mapping[str, Any], num_beams: int | None = None) -> list[str]:
        """Decoded answers of a batch (greedy by default, beam search when `num_beams > 1`)."""
        compressed = self.compress(batch)
        inputs = self.inputs(self.visual_embeddings(compressed, batch.get("duration")), list(batch["query"]), None)
        inputs.pop("position_ids", None)
        output = self.language_model.generate(
            **inputs,
            max_new_tokens=self.config["max_new_tokens"],
            num_beams=num_beams or self.config["num_beams"],
            do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return [text.strip() for text in self.tokenizer.batch_decode(output, skip_special_tokens=True)]

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
        if isinstance(clip_or_path, (str, os.PathLike)):
            from vtc.video import load_video

            clip_or_path = load_video(clip_or_path, num_frames=self.config["num_frames"])
        if isinstance(clip_or_path, Mapping):
            batch = {
                "features": torch.as_tensor(clip_or_path["features"]).unsqueeze(0),
                "timestamps": torch.as_tensor(clip_or_path["timestamps"]).unsqueeze(0),
            }
            duration = float(clip_or_path["duration"])
        else:
            batch = {"frames": [clip_or_path.frames], "timestamps": [clip_or_path.timestamps]}
            duration = float(clip_or_path.duration)
        was_training = self.training
        self.eval()
        text, parsed = self.answer_windows({**batch, "query": [query], "duration": [duration]}, num_beams)[0]
        self.train(was_training)
        return {"text": text, "window": parsed.window, "valid": parsed.valid}

    # -------------------------------------------------------------------------------------------- save / load

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the config and only the trained weights (compressor, projector, saliency head, LoRA adapters or
        the full language model, the encoder when `stores_encoder`), each file atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.compressor.save_pretrained(directory / "compressor")
        atomic_save_safetensors(detached(self.projector.state_dict()), directory / PROJECTOR_NAME)
        if self.saliency_head is not None:
            atomic_save_safetensors(detached(self.saliency_head.state_dict()), directory / SALIENCY_NAME)
        mode = self.config["llm"]["mode"]
        if mode == "lora":
            from peft import get_peft_model_state_dict

            atomic_save_safetensors(detached(get_peft_model_state_dict(self.llm)), directory / ADAPTER_NAME)
        elif mode == "full":
            atomic_save_safetensors(detached(self.language_model.state_dict()), directory / LLM_WEIGHTS_NAME)
        if self.stores_encoder:
            atomic_save_safetensors(detached(self.encoder.state_dict()), directory / ENCODER_WEIGHTS_NAME)
        atomic_write_text(directory / CONFIG_NAME, json.dumps(self.config, indent=2, sort_keys=True, default=str))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> VideoLMM:
        """Rebuild a model saved with `save_pretrained` on its base weights.

        `overrides` replace config entries (nested dicts merged), e.g. `llm={"path": "/new/place"}`.
        """
        directory = Path(directory)
        config = json.loads((directory / CONFIG_NAME).read_text())
        for key, value in overrides.items():
            config[key] = {**config[key], **value} if isinstance(config.get(key), dict) else value
        if (config.get("encoder") or {}).get("type") in SELF_CONTAINED_ENCODERS:
            config["encoder"] = {k: v for k, v in config["encoder"].items() if k != "path"}  # weights stored here
        model = cls(load_config(config))
        model.compressor.load_state_dict(load_file(str(directory / "compressor" / WEIGHTS_NAME)), strict=True)
        model.projector.load_state_dict(load_file(str(directory / PROJECTOR_NAME)), strict=True)
        if model.saliency_head is not None:
            model.saliency_head.load_state_dict(load_file(str(directory / SALIENCY_NAME)), strict=True)
        mode = model.config["llm"]["mode"]
        if mode == "lora":
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(model.llm, load_file(str(directory / ADAPTER_NAME)))
            if result.unexpected_keys:
                raise ValueError(f"{directory / ADAPTER_NAME} has unexpected keys {result.unexpected_keys[:5]}")
        elif mode == "full":
            model.language_model.load_state_dict(load_file(str(directory / LLM_WEIGHTS_NAME)), strict=True)
        if model.stores_encoder:
            model.encoder.load_state_dict(load_file(str(directory / ENCODER_WEIGHTS_NAME)), strict=True)
        return model


def salient_window(times: Tensor, scores: Tensor, duration: float) -> tuple[float, float]:
    """`(start, end)` seconds from sorted times `[T]` and saliency logits `[T]`: first to last time with a positive
    logit (the best-scored time when none is), widened by half the times' spacing each side, within the video."""
    inside = torch.nonzero(scores > 0).flatten()
    first, last = (int(inside[0]), int(inside[-1])) if len(inside) else (int(scores.argmax()),) * 2
    half = float((times[1:] - times[:-1]).mean()) / 2 if len(times) > 1 else duration / 2
    return max(float(times[first]) - half, 0.0), min(float(times[last]) + half, duration)


def detached(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous copies of a state dict (no shared storage, as safetensors requires)."""
    return {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}
