"""The `VideoLMM` config: its keys and defaults, the default prompt and question, and their validation.

`load_config` fills a partial config (a dict or a YAML file) from `DEFAULTS` and rejects inconsistent settings
before any weights load. `DEFAULT_PROMPT` and `DEFAULT_QUESTION` are the texts around the visual tokens, for code
that must know the words a model reads (a tiny tokenizer's vocabulary, the synthetic benchmark's queries).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vtc.lmm.answers import DEFAULT_TEMPLATE

# A causal LM reads `[prompt, visual tokens, question]`, a seq2seq LM `[visual tokens, question]`.
DEFAULT_PROMPT = "Video:"
DEFAULT_QUESTION = "Query: {query} When does it happen?"
LLM_MODES = ("frozen", "lora", "full")
READOUTS = ("text", "saliency")
# How a multiple-choice answer is read: generated and parsed, or the option whose answer the LM finds likeliest.
CHOICE_READOUTS = ("text", "likelihood")

DEFAULTS: dict[str, Any] = {
    "encoder": None,
    "encoder_trainable": False,
    "feature_dim": None,
    "qformer": None,
    "compressor": {"name": "none"},
    "projector": "linear",
    "llm": {"path": None, "mode": "lora", "load_in_4bit": False},
    "lora": {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": None},
    "timestamp_tokens": False,
    "time_tokens": 0,
    "saliency_loss": 0.0,
    "readout": "text",
    "choice_readout": "text",
    "time_embedding": False,
    "num_frames": 8,
    "prompt": DEFAULT_PROMPT,
    "question": DEFAULT_QUESTION,
    "answer_template": DEFAULT_TEMPLATE,
    "max_new_tokens": 32,
    "num_beams": 1,
}


def load_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A config dict (or YAML file path) with missing keys filled from `DEFAULTS` (nested dicts merged), checked."""
    if not isinstance(config, Mapping):
        config = yaml.safe_load(Path(config).read_text())
    merged = with_defaults(config)
    check_config(merged)
    return merged


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `config` with missing keys (and missing keys of nested dicts) taken from `DEFAULTS`."""
    merged = copy.deepcopy(DEFAULTS)
    for key, value in config.items():
        if key not in DEFAULTS:
            raise ValueError(f"unknown model config key {key!r}; expected some of {sorted(DEFAULTS)}")
        if isinstance(DEFAULTS[key], dict) and isinstance(value, Mapping):
            merged[key] = {**DEFAULTS[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_config(config: Mapping[str, Any]) -> None:
    """Raise `ValueError` on a missing language model or settings that contradict each other."""
    if not config["llm"]["path"]:
        raise ValueError("llm.path (a local Hugging Face folder) is required")
    if config["llm"]["mode"] not in LLM_MODES:
        raise ValueError(f"llm.mode must be one of {LLM_MODES}, got {config['llm']['mode']!r}")
    if config["encoder"] is None and config["feature_dim"] is None:
        raise ValueError("give an encoder config, or feature_dim when training on cached features")
    time_tokens = config["time_tokens"]
    if not isinstance(time_tokens, int) or time_tokens < 0 or time_tokens == 1:
        raise ValueError(f"time_tokens must be 0 (off) or an integer >= 2, got {time_tokens!r}")
    if time_tokens and config["timestamp_tokens"]:
        raise ValueError("time_tokens and timestamp_tokens both mark frame times: choose one")
    if time_tokens and config["llm"]["mode"] == "frozen":
        raise ValueError("time_tokens add embeddings that must train: use llm.mode 'lora' or 'full'")
    if config["readout"] not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {config['readout']!r}")
    if config["readout"] == "saliency" and not config["saliency_loss"] > 0:
        raise ValueError("readout 'saliency' reads the saliency head, which trains only with saliency_loss > 0")
    if config["choice_readout"] not in CHOICE_READOUTS:
        raise ValueError(f"choice_readout must be one of {CHOICE_READOUTS}, got {config['choice_readout']!r}")
    if config["encoder_trainable"] and config["encoder"] is None:
        raise ValueError("encoder_trainable needs an encoder config (cached features have no encoder to train)")
