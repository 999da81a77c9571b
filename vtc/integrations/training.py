"""`HFVideoLLM`: a Hugging Face video LLM (`vtc.integrations.HOSTS`) loaded by path, with a compressor inside and
optional LoRA adapters on its language model, presented as `vtc train` presents a `VideoLMM`: `forward(batch)` is
the loss of a `vtc.data.batch.collate` batch, `answer_windows` / `generate_text` generate, and `save_pretrained` /
`from_pretrained` write and read only what trains.

A batch's inputs are built as `Predictor` builds them (`vtc.integrations.inputs`): the host's processor makes the
pixels, the chat prompt holds the question (`question`, with `{query}`) and the compressed video's placeholders,
and the target is the answer text (a moment's window in `answer_template`, a multiple-choice letter) then the
tokenizer's end of sequence; the loss is on the answer tokens only. Everything but the compressor and the LoRA
adapters (peft, injected in place on the language model's `lora.target_modules`) is frozen.

The config (`model.hf` of a training config; `DEFAULTS` lists its keys):

    path: /models/Qwen2.5-VL-7B-Instruct      # a local folder (loaded with local_files_only, never remote code)
    compressor: {name: tome, scope: frame}    # a registered compressor and its options
    budget: 0.25                              # optional: a fraction of the video's tokens (vtc.budget)
    lora: {r: 8, alpha: 32, dropout: 0.05, target_modules: [q_proj, v_proj]}   # null: the LM stays frozen
    dtype: bfloat16                           # optional: the host's weights (the compressor's stay float32)

A saved folder holds `hf_video_llm.json` (the config, the compressor's as built, the budget resolved) and
`trained.safetensors` (the compressor's state as `compressor.*`, the adapters under their names in the host).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.integrations import compress_video_llm, host_of
from vtc.integrations.inputs import (
    chat_prompt,
    padded,
    pixel_inputs,
    placeholder_text,
    token_type_ids,
    video_layout,
    with_placeholders,
)
from vtc.integrations.predictor import budget_compressor
from vtc.integrations.tokens import VideoTokenCompression
from vtc.lmm.answers import CHOICE_QUESTION, DEFAULT_TEMPLATE, ParsedWindow, format_window, parse_window
from vtc.lmm.config import DEFAULT_QUESTION
from vtc.utils.io import atomic_save_safetensors, atomic_write_text

CONFIG_NAME = "hf_video_llm.json"
WEIGHTS_NAME = "trained.safetensors"
IGNORE_INDEX = -100
DEFAULT_LORA = {"r": 8, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
DEFAULTS: dict[str, Any] = {
    "path": None,
    "compressor": {"name": "none"},
    "budget": None,
    "lora": DEFAULT_LORA,
    "pooling": True,  # LLaVA-OneVision only: keep its own 2 x 2 pooling before the compressor
    "dtype": None,  # the host's weights: "bfloat16", "float16", "float32" or "auto" (None: transformers' default)
    "question": None,  # the task's: "Query: {query} When does it happen?" for moments, "{query}" for choices
    "answer_template": DEFAULT_TEMPLATE,
    "max_new_tokens": 32,
}
QUESTIONS = {"moment": DEFAULT_QUESTION, "choice": CHOICE_QUESTION}
DTYPES = (None, "auto", "bfloat16", "float16", "float32")


def hf_config(raw: Mapping[str, Any], task: str) -> dict[str, Any]:
    """`raw` (a `model.hf` section) completed with `DEFAULTS` and the `task`'s question; `ValueError` naming an
    unknown key or a bad value."""
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown keys {unknown} in model.hf; expected some of {sorted(DEFAULTS)}")
    config = {**DEFAULTS, **raw}
    if not config["path"]:
        raise ValueError("model.hf.path must name a local Hugging Face video LLM folder")
    compressor = config["compressor"]
    if not isinstance(compressor, Mapping) or "name" not in compressor:
        raise ValueError(f"model.hf.compressor must be a mapping with a name, got {compressor!r}")
    budget = config["budget"]
    if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget <= 1):
        raise ValueError(f"model.hf.budget must be null or a fraction of the video's tokens in (0, 1], got {budget!r}")
    lora = config["lora"]
    if lora is not None:
        if not isinstance(lora, Mapping) or sorted(set(lora) - set(DEFAULT_LORA)):
            raise ValueError(f"model.hf.lora must be null or a mapping of some of {sorted(DEFAULT_LORA)}, got {lora!r}")
        config["lora"] = {**DEFAULT_LORA, **lora}
    if config["dtype"] not in DTYPES:
        raise ValueError(f"model.hf.dtype must be one of {DTYPES}, got {config['dtype']!r}")
    config["question"] = config["question"] or QUESTIONS[task]
    if "{query}" not in config["question"]:
        raise ValueError(f"model.hf.question must hold {{query}}, got {config['question']!r}")
    return config


def load_processor(path: str | os.PathLike) -> Any:
    """The processor saved in the model folder `path` (local files only)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path, local_files_only=True)


def load_host(path: str | os.PathLike, dtype: str | None = None) -> nn.Module:
    """The Hugging Face video LLM saved in `path` (local files only, no remote code), its weights in `dtype` (a
    `DTYPES` name); `TypeError` for a model class outside `vtc.integrations.HOSTS`."""
    from transformers import AutoModelForImageTextToText

    options = {} if dtype is None else {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, **options)
    host_of(model)
    return model


def lora_targets(names: list[str]) -> str:
    """A peft `target_modules` regex: the modules named `names` inside the language model only (not the vision
    tower's)."""
    return rf".*language_model.*\.({'|'.join(names)})"


def is_adapter(name: str) -> bool:
    """Whether a parameter name of the host is a LoRA adapter's."""
    return ".lora_" in name


class HFVideoLLM(nn.Module):
    """A Hugging Face video LLM with a compressor inside (and LoRA adapters on its LM), trained as a `VideoLMM` is.

    Attributes:
        model: the host (`transformers` model; adapters injected in place; the compressor inside, `compression`).
        processor: the host's processor (its pixels and tokenizer are used).
        config: `hf_config` with the compressor's config as built.
        host: the host's name in `vtc.integrations.HOSTS`.
    """

    def __init__(self, model: nn.Module, processor: Any, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.host = host_of(model)
        self.config = dict(config)
        options = dict(config["compressor"])
        name = options.pop("name")
        compression = compress_video_llm(model, name, pooling=config["pooling"], **options)
        if config["lora"] is not None:
            from peft import LoraConfig, inject_adapter_in_model

            lora = config["lora"]
            adapters = LoraConfig(
                r=lora["r"],
                lora_alpha=lora["alpha"],
                lora_dropout=lora["dropout"],
                target_modules=lora_targets(list(lora["target_modules"])),
            )
            inject_adapter_in_model(adapters, model)
        model.requires_grad_(False)
        for key, parameter in model.named_parameters():
            parameter.requires_grad_(is_adapter(key))
        compression.compressor.requires_grad_(True)
        self.model = model
        self.processor = processor

    @classmethod
    def build(
        cls, raw: Mapping[str, Any], task: str, frames: Tensor | None = None, processor: Any | None = None
    ) -> HFVideoLLM:
        """A model from a `model.hf` section (`hf_config`) for `task`; a `budget` sets the compressor's token knob
        on a video of `frames` (`[T, H, W, 3]` uint8, e.g. the first training sample's) as the processor makes it.
        `processor` replaces the folder's own (`load_processor`)."""
        config = hf_config(raw, task)
        model = load_host(config["path"], config["dtype"])
        processor = processor or load_processor(config["path"])
        if config["budget"] is not None:
            if frames is None:
                raise ValueError("model.hf.budget needs a video to measure: pass frames")
            video = pixel_inputs(processor, host_of(model), [frames])
            layout = video_layout(model, host_of(model), video, config["pooling"])
            options = dict(config["compressor"])
            config["compressor"] = budget_compressor(options.pop("name"), config["budget"], *layout, **options)
            config["budget"] = None
        return cls(model, processor, config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, processor: Any | None = None) -> HFVideoLLM:
        """The model `save_pretrained` wrote in `directory`: the host from its `path`, the trained weights loaded."""
        directory = Path(directory)
        config = json.loads((directory / CONFIG_NAME).read_text())
        model = cls(load_host(config["path"], config["dtype"]), processor or load_processor(config["path"]), config)
        model.load_trained(directory)
        return model

    @property
    def compression(self) -> VideoTokenCompression:
        """The `VideoTokenCompression` inside the host (a submodule of the host only)."""
        return self.model.model.video_token_compression

    # ------------------------------------------------------------------------------------------- weights

    def trained_state(self) -> dict[str, Tensor]:
        """What trains, detached and contiguous: the compressor's state as `compressor.*` and the adapters."""
        state = {f"compressor.{key}": value for key, value in self.compression.compressor.state_dict().items()}
        state |= {name: p for name, p in self.model.named_parameters() if is_adapter(name)}
        return {name: tensor.detach().contiguous().clone() for name, tensor in state.items()}

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the config and the trained weights (safetensors), each file atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_save_safetensors(self.trained_state(), directory / WEIGHTS_NAME)
        atomic_write_text(directory / CONFIG_NAME, json.dumps(self.config, indent=2, sort_keys=True))

    def load_trained(self, directory: str | os.PathLike) -> None:
        """Load the weights `save_pretrained` wrote; `ValueError` naming missing or unexpected ones."""
        weights = load_file(str(Path(directory) / WEIGHTS_NAME))
        expected = set(self.trained_state())
        if set(weights) != expected:
            missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
            raise ValueError(f"{directory}: trained weights missing {missing[:5]}, unexpected {unexpected[:5]}")
        compressor = {key.removeprefix("compressor."): v for key, v in weights.items() if key.startswith("compressor.")}
        self.compression.compressor.load_state_dict(compressor)
        adapters = {key: value for key, value in weights.items() if not key.startswith("compressor.")}
        self.model.load_state_dict(adapters, strict=False)

    # -------------------------------------------------------------------------------------------- inputs

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompts(self, batch: Mapping[str, Any], video: dict[str, Tensor]) -> list[str]:
        """Each sample's chat prompt: its question, with the compressed video's placeholders."""
        vision = self.model.config.vision_config
        return [
            with_placeholders(
                chat_prompt(self.processor, self.host, self.config["question"].format(query=query)),
                self.host,
                placeholder_text(self.compression, self.host, video, index, times.tolist(), vision),
            )
            for index, (query, times) in enumerate(zip(batch["query"], batch["timestamps"], strict=True))
        ]

    def answer_texts(self, batch: Mapping[str, Any]) -> list[str]:
        """The targets: multiple-choice `answer` letters, or moment `window`s in `answer_template`."""
        if "answer" in batch:
            return list(batch["answer"])
        return [format_window(start, end, self.config["answer_template"]) for start, end in batch["window"]]

    def inputs(self, batch: Mapping[str, Any], with_answers: bool) -> dict[str, Tensor]:
        """The host's keyword inputs of a batch: right-padded prompts and answers with `labels` on the answer
        tokens (`with_answers`), else left-padded prompts for generation."""
        video = pixel_inputs(self.processor, self.host, batch["frames"])
        tokenizer = self.processor.tokenizer
        rows = [tokenizer(text)["input_ids"] for text in self.prompts(batch, video)]
        labels = [[IGNORE_INDEX] * len(row) for row in rows]
        if with_answers:
            end = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
            answers = [
                tokenizer(text, add_special_tokens=False)["input_ids"] + end for text in self.answer_texts(batch)
            ]
            rows = [row + answer for row, answer in zip(rows, answers, strict=True)]
            labels = [label + answer for label, answer in zip(labels, answers, strict=True)]
        side = "right" if with_answers else "left"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        inputs = {
            "input_ids": padded(rows, pad, side),
            "attention_mask": padded([[1] * len(row) for row in rows], 0, side),
            **video,
        }
        if with_answers:
            inputs["labels"] = padded(labels, IGNORE_INDEX, side)
        if self.host != "llava_onevision":
            inputs["mm_token_type_ids"] = token_type_ids(inputs["input_ids"], self.processor.video_token_id)
        return {key: value.to(self.device) for key, value in inputs.items()}

    # ------------------------------------------------------------------------------------------ training

    def outputs(self, batch: Mapping[str, Any]) -> Any:
        """The host's output on a batch with its answers: `loss` (answer tokens only) and `logits [B, S, V]`."""
        return self.model(**self.inputs(batch, with_answers=True))

    def forward(self, batch: Mapping[str, Any]) -> Tensor:
        """The scalar loss of the answers of a `collate` batch (`frames` of `[T, H, W, 3]` uint8 each)."""
        return self.outputs(batch).loss

    @torch.no_grad()
    def generate_text(self, batch: Mapping[str, Any]) -> list[str]:
        """Greedy answers (`max_new_tokens` at most) to the batch's questions."""
        inputs = self.inputs(batch, with_answers=False)
        tokenizer = self.processor.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        output = self.model.generate(
            **inputs, max_new_tokens=self.config["max_new_tokens"], do_sample=False, pad_token_id=pad
        )
        answers = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in tokenizer.batch_decode(answers, skip_special_tokens=True)]

    def answer_windows(self, batch: Mapping[str, Any]) -> list[tuple[str, ParsedWindow]]:
        """Each generated answer and the window it names (`parse_window` within the sample's duration)."""
        texts = self.generate_text(batch)
        return [(text, parse_window(text, duration)) for text, duration in zip(texts, batch["duration"], strict=True)]


def is_hf_folder(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds an `HFVideoLLM` written by `save_pretrained`."""
    return (Path(directory) / CONFIG_NAME).is_file()
