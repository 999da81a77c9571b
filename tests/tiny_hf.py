"""Tiny random Hugging Face models and an offline tokenizer, saved to a folder for loading back by path."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vtc.lmm.tiny import save_tiny_lm, save_tokenizer, text_config

VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}


def save_preprocessor(directory: Path) -> None:
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    )


def save_blip2(directory: Path, text: str) -> Path:
    """A tiny `Blip2ForConditionalGeneration` (T5 or OPT language model), tokenizer and preprocessor."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    torch.manual_seed(0)
    vocab = save_tokenizer(directory)
    config = Blip2Config(
        vision_config=VISION,
        qformer_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "encoder_hidden_size": 32,
            "vocab_size": 100,
        },
        text_config=text_config(text, vocab),
        num_query_tokens=8,
    )
    Blip2ForConditionalGeneration(config).save_pretrained(directory)
    save_preprocessor(directory)
    return directory


def save_vision(directory: Path, kind: str) -> Path:
    """A tiny CLIP or SigLIP vision tower with a preprocessor config."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    if kind == "clip":
        CLIPVisionModel(CLIPVisionConfig(**VISION)).save_pretrained(directory)
    else:
        SiglipVisionModel(SiglipVisionConfig(**VISION)).save_pretrained(directory)
    save_preprocessor(directory)
    return directory


def save_causal_lm(directory: Path, kind: str) -> Path:
    """A tiny causal LM (`llama`, `qwen2`, `opt`) or T5 (`t5`) with the offline tokenizer."""
    return save_tiny_lm(directory, kind)
