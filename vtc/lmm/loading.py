"""Loading a `VideoLMM`'s pretrained parts from local Hugging Face folders.

The language model is a seq2seq (T5 family) or causal LM, or the one inside a BLIP-2 folder, whose ViT and
Q-Former then serve as the vision encoder when the encoder config is `{"type": "blip2"}` without another path.
LITA's time tokens extend its vocabulary; `apply_training_mode` then freezes it, wraps it with LoRA adapters
(STAC's targets on T5 by default), or leaves it fully trainable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from vtc.encoders import Blip2VisionEncoder, VisionEncoder, build_encoder
from vtc.encoders.hf import freeze, quantization_kwargs
from vtc.lmm.answers import time_token

# LoRA on the T5 attention and feed-forward projections: STAC gives no LoRA settings, these targets (with the
# library's r=8, alpha=32 defaults) are our choice.
STAC_T5_LORA_TARGETS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")


def check_model_folder(path: str) -> None:
    """`FileNotFoundError` naming `llm.path` unless `path` is a folder with a `config.json` (a local Hugging Face
    model folder), before transformers would report it as a malformed hub repo id."""
    if not (Path(path) / "config.json").is_file():
        state = "has no config.json" if Path(path).is_dir() else "is not a folder"
        raise FileNotFoundError(f"llm.path {path!r} {state}: it must be a local Hugging Face model folder")


def load_language_model(path: str, load_in_4bit: bool) -> tuple[nn.Module, Any]:
    """The language model in `path` (checked by `check_model_folder`) and, for a BLIP-2 folder, the whole BLIP-2
    model (else None)."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        Blip2ForConditionalGeneration,
    )

    check_model_folder(path)
    options = {"local_files_only": True, **quantization_kwargs(load_in_4bit)}
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    if hf_config.model_type == "blip-2":
        blip2 = Blip2ForConditionalGeneration.from_pretrained(path, **options)
        return blip2.language_model, blip2
    model_class = AutoModelForSeq2SeqLM if hf_config.is_encoder_decoder else AutoModelForCausalLM
    return model_class.from_pretrained(path, **options), None


def build_vision_encoder(encoder_config: dict[str, Any] | None, blip2: Any, path: str) -> VisionEncoder | None:
    """The frozen encoder of `encoder_config` (None without one): BLIP-2's own towers when the config is
    `{"type": "blip2"}` on the language model's folder `path` (loaded as `blip2`), else `build_encoder`'s."""
    if encoder_config is None:
        return None
    options = dict(encoder_config)
    if options.get("type") == "blip2" and blip2 is not None and options.get("path", path) == path:
        options.pop("type")
        options.pop("path", None)
        options.pop("load_in_4bit", None)
        return Blip2VisionEncoder.from_blip2(blip2, path, **options)
    return freeze(build_encoder(options))


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
