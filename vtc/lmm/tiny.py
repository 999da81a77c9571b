"""Tiny randomly initialised language models with an offline tokenizer, for CPU experiments without downloads.

`save_tiny_lm(directory, kind)` writes a Hugging Face folder (config, random weights, a byte-level BPE tokenizer
trained on the answer templates) that `VideoLMM` loads by path like any pretrained model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from vtc.lmm.answers import TEMPLATES
from vtc.lmm.config import DEFAULT_PROMPT, DEFAULT_QUESTION

SPECIAL = ["<pad>", "</s>", "<unk>"]
# Words of the queries that the tests and examples ask about ("the person opens a door").
QUERY_WORDS = "the person open a door walk sit down find moment video"
LM_KINDS = ("t5", "llama", "qwen2", "opt")


def tokenizer_corpus(extra_words: Iterable[str] = ()) -> list[str]:
    """Training texts of the tiny tokenizer: answers in both templates (400 windows), then one line of the
    default prompt and question around `QUERY_WORDS`, and `extra_words`."""
    answers = [
        f"{TEMPLATES['sentence'].format(start=f'{s}.{d}', end=f'{s + 3}.{d}')} "
        f"{TEMPLATES['brackets'].format(start=s, end=s + 2)}"
        for s in range(40)
        for d in range(10)
    ]
    words = " ".join([DEFAULT_PROMPT, DEFAULT_QUESTION.format(query=QUERY_WORDS), *extra_words])
    return [*answers, words]


def save_tokenizer(directory: str | Path, extra_words: Iterable[str] = (), vocab_size: int = 400) -> int:
    """Train a small byte-level BPE on `tokenizer_corpus(extra_words)`; save it; return its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(tokenizer_corpus(extra_words) * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(directory)
    return tokenizer.get_vocab_size()


def text_config(kind: str, vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4) -> dict[str, Any]:
    """A Hugging Face config dict (with `model_type`) of a tiny `kind` model ("t5", "llama", "qwen2", "opt")."""
    common = {"vocab_size": vocab_size, "pad_token_id": 0, "eos_token_id": 1}
    if hidden % heads:
        raise ValueError(f"hidden {hidden} must be a multiple of heads {heads}")
    decoder = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 512,
    }
    if kind == "t5":
        return {
            "model_type": "t5",
            "d_model": hidden,
            "d_kv": hidden // heads,
            "d_ff": 2 * hidden,
            "num_layers": layers,
            "num_decoder_layers": layers,
            "num_heads": heads,
            "feed_forward_proj": "gated-gelu",
            "decoder_start_token_id": 0,
            **common,
        }
    if kind == "opt":
        return {
            "model_type": "opt",
            "ffn_dim": 2 * hidden,
            "word_embed_proj_dim": hidden,
            "bos_token_id": 1,
            **decoder,
            **common,
        }
    if kind in ("llama", "qwen2"):
        bos = {"bos_token_id": 1} if kind == "llama" else {}
        return {
            "model_type": kind,
            "intermediate_size": 2 * hidden,
            "num_key_value_heads": max(heads // 2, 1),
            **bos,
            **decoder,
            **common,
        }
    raise ValueError(f"tiny LM kind must be one of {LM_KINDS}, got {kind!r}")


def save_tiny_lm(
    directory: str | Path,
    kind: str = "t5",
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    extra_words: Iterable[str] = (),
    seed: int = 0,
) -> Path:
    """Write a tiny random `kind` LM (seq2seq for "t5", else causal) with the offline tokenizer to `directory`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    directory = Path(directory)
    torch.manual_seed(seed)
    vocab = save_tokenizer(directory, extra_words)
    settings = text_config(kind, vocab, hidden, layers, heads)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    model_class = AutoModelForSeq2SeqLM if kind == "t5" else AutoModelForCausalLM
    model_class.from_config(config).save_pretrained(directory)
    return directory
