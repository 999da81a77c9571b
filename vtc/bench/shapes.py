"""The shapes of the video LLMs that `vtc bench prefill --shape` reproduces with random weights.

A shape is the language model's architecture (read from the published `config.json`) and the visual tokens the model
hands its LLM for a video: how many frames share one group of tokens, how many tokens a group has after the model's
own pooling or merging, and their width there (after the projector, the width a compressor at the LLM's input sees).

- `llava-onevision-0.5b`: LLaVA-OneVision-Qwen2-0.5B-OV. LM = Qwen2-0.5B (24 layers, hidden 896, 14 heads, 2 KV
  heads, MLP 4864, vocabulary 151,936, tied embeddings). Video: SigLIP-so400m at 384 px, patch 14, a 27 x 27 grid per
  frame, pooled 2 x 2 to 14 x 14 = 196 tokens per frame, projected to 896.
- `qwen2.5-vl-3b`: Qwen2.5-VL-3B-Instruct. LM = Qwen2.5-3B (36 layers, hidden 2048, 16 heads, 2 KV heads, MLP 11008,
  vocabulary 151,936, tied embeddings). Video at 448 x 448: patch 14 (32 x 32), two frames per temporal patch, 2 x 2
  patches merged to one token: 16 x 16 = 256 tokens per pair of frames, merged to width 2048.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vtc.utils.checks import check_choice


@dataclass(frozen=True)
class LanguageModelShape:
    """A decoder-only LM's architecture: `architecture` is "llama" or "qwen2" (Qwen2 has q/k/v biases)."""

    architecture: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def config(self, layers: int | None = None, vocab: int | None = None) -> Any:
        """The transformers config (`LlamaConfig` or `Qwen2Config`, SDPA attention) of this LM, with `layers` /
        `vocab` overriding the shape's."""
        from transformers import LlamaConfig, Qwen2Config

        configs = {"llama": LlamaConfig, "qwen2": Qwen2Config}
        return configs[check_choice("architecture", self.architecture, tuple(configs))](
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers if layers is None else layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            vocab_size=self.vocab if vocab is None else vocab,
            max_position_embeddings=1 << 17,
            attn_implementation="sdpa",
        )


@dataclass(frozen=True)
class VideoLLMShape:
    """A video LLM's LM and visual tokens: `frames_per_group` frames give `tokens_per_group` tokens of width
    `vision_dim` (the compressor's input: `[1, frames / frames_per_group, tokens_per_group, vision_dim]`)."""

    language_model: LanguageModelShape
    frames_per_group: int
    tokens_per_group: int
    vision_dim: int

    def groups(self, frames: int) -> int:
        """Groups of tokens that `frames` frames make (refuses a count the groups do not divide)."""
        if frames < 1 or frames % self.frames_per_group:
            raise ValueError(f"frames must be a positive multiple of {self.frames_per_group}, got {frames}")
        return frames // self.frames_per_group


SHAPES = {
    "llava-onevision-0.5b": VideoLLMShape(
        LanguageModelShape("qwen2", layers=24, hidden=896, heads=14, kv_heads=2, intermediate=4864, vocab=151936),
        frames_per_group=1,
        tokens_per_group=14 * 14,
        vision_dim=896,
    ),
    "qwen2.5-vl-3b": VideoLLMShape(
        LanguageModelShape("qwen2", layers=36, hidden=2048, heads=16, kv_heads=2, intermediate=11008, vocab=151936),
        frames_per_group=2,
        tokens_per_group=(448 // 14 // 2) ** 2,
        vision_dim=2048,
    ),
}


def llama_shape(layers: int, hidden: int) -> LanguageModelShape:
    """A Llama of `layers` x `hidden`: `hidden / 64` heads (no grouping), MLP 2.75 x hidden, 32k vocabulary."""
    if hidden % 64:
        raise ValueError(f"hidden must be a multiple of 64 (head width), got {hidden}")
    return LanguageModelShape("llama", layers, hidden, hidden // 64, hidden // 64, int(2.75 * hidden), 32000)


def kv_cache_bytes(shape: LanguageModelShape, tokens: int, bytes_per_value: int) -> int:
    """Bytes of the keys and values of `tokens` positions in every layer: 2 x layers x kv_heads x head_dim x tokens x
    bytes per value."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * tokens * bytes_per_value
