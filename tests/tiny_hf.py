"""Tiny random Hugging Face models and an offline tokenizer, saved to a folder for loading back by path."""

from __future__ import annotations

import json
from pathlib import Path

import torch

VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
SPECIAL = ["<pad>", "</s>", "<unk>"]
CORPUS_WORDS = "It starts at and ends seconds when does the person open a door walk sit down find moment video"


def save_tokenizer(directory: Path) -> int:
    """Train a small byte-level BPE over the answer templates; save it; return the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [
        f"It starts at {s}.{d} and ends at {s + 3}.{d} seconds. [[{s}, {s + 2}]]" for s in range(40) for d in range(10)
    ]
    tokenizer.train_from_iterator([*corpus, CORPUS_WORDS] * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(directory)
    return tokenizer.get_vocab_size()


def save_preprocessor(directory: Path) -> None:
    (directory / "preprocessor_config.json").write_text(
        json.dumps({"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    )


def text_config(kind: str, vocab_size: int) -> dict:
    common = {"vocab_size": vocab_size, "pad_token_id": 0, "eos_token_id": 1}
    if kind == "t5":
        return {
            "model_type": "t5",
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 64,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_heads": 4,
            "feed_forward_proj": "gated-gelu",
            "decoder_start_token_id": 0,
            **common,
        }
    if kind == "opt":
        return {
            "model_type": "opt",
            "hidden_size": 32,
            "ffn_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "word_embed_proj_dim": 32,
            "max_position_embeddings": 512,
            "bos_token_id": 1,
            **common,
        }
    if kind == "llama":
        return {
            "model_type": "llama",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "bos_token_id": 1,
            **common,
        }
    if kind == "qwen2":
        return {
            "model_type": "qwen2",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            **common,
        }
    raise ValueError(kind)


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
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(0)
    vocab = save_tokenizer(directory)
    settings = text_config(kind, vocab)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    model_class = AutoModelForSeq2SeqLM if kind == "t5" else AutoModelForCausalLM
    model_class.from_config(config).save_pretrained(directory)
    return directory
