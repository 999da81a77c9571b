"""Frozen Hugging Face vision encoders loaded from a local folder: BLIP-2 (ViT + Q-Former), CLIP and SigLIP.

Weights are read with `from_pretrained(path, local_files_only=True)`, never from a hub id. Frames are resized
and normalised in torch with the folder's image-processor settings when present, and
encoded in chunks of `chunk_size` frames so memory stays bounded for long videos. `tome_r > 0` applies Token
Merging inside the tower (`vtc.encoders.patch`), so each frame gives fewer patch tokens; `tokenlearner: {layer,
num_tokens}` inserts a trainable TokenLearner after that layer (`vtc.encoders.patch.tokenlearner`), the only part of
the tower that trains (with the model config's `encoder_trainable: true`). `attention=True` (CLIP,
SigLIP, BLIP-2 patches) switches the tower to eager attention and lets `encode_with_attention` also return the
attention each patch token received in the layer whose tokens are returned (VisionZip's dominant-token score).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from vtc.encoders.base import VisionEncoder
from vtc.encoders.images import (
    CLIP_MEAN,
    CLIP_STD,
    HALF,
    ImageSettings,
    check_frames,
    preprocess_frames,
    read_image_settings,
)
from vtc.encoders.patch import patch_vision_tower
from vtc.encoders.patch.tokenlearner import insert_tokenlearner, learners, tokenlearner_options, tokens_per_layer


def quantization_kwargs(load_in_4bit: bool) -> dict[str, Any]:
    """`from_pretrained` arguments for optional 4-bit (NF4) loading with `bitsandbytes` (`quant` extra)."""
    if not load_in_4bit:
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise ImportError("load_in_4bit=True needs bitsandbytes: pip install 'vtc[quant]'") from error
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": config, "device_map": {"": 0 if torch.cuda.is_available() else "cpu"}}


def patch_grid(settings: ImageSettings, vision_config: Any) -> tuple[int, int]:
    """`(rows, cols)` of the patch grid of a ViT with `vision_config` on frames of `settings.size`."""
    return settings.size[0] // vision_config.patch_size, settings.size[1] // vision_config.patch_size


def patch_tokens(
    settings: ImageSettings,
    vision_config: Any,
    tome_r: int = 0,
    merged_layers: int | None = None,
    tokenlearner: dict[str, Any] | None = None,
) -> int:
    """Patch tokens per frame of a ViT with `vision_config` on frames of `settings.size` after `merged_layers` layers
    (all of them when None), with ToMe merging `tome_r` in each and an optional in-ViT TokenLearner."""
    rows, cols = patch_grid(settings, vision_config)
    counts = tokens_per_layer(rows * cols, vision_config.num_hidden_layers, tome_r, tokenlearner_options(tokenlearner))
    return counts[vision_config.num_hidden_layers if merged_layers is None else merged_layers]


def class_token_attention(attention: Tensor) -> Tensor:
    """`[t, heads, 1 + N, 1 + N]` -> `[t, N]`: the [CLS] query's attention to each patch token, averaged over heads
    (VisionZip, Yang et al. CVPR 2025, Sec. 3.2, dominant tokens of a tower with [CLS])."""
    return attention[:, :, 0, 1:].mean(dim=1)


def received_attention(attention: Tensor) -> Tensor:
    """`[t, heads, N, N]` -> `[t, N]`: the attention each token receives, averaged over heads and queries (VisionZip
    Sec. 3.2, dominant tokens of a tower without [CLS] such as SigLIP)."""
    return attention.mean(dim=(1, 2))


def freeze(module: nn.Module) -> nn.Module:
    """Put `module` in eval mode with every parameter frozen."""
    module.requires_grad_(False)
    return module.eval()


class HFVisionEncoder(VisionEncoder):
    """A frozen vision tower: frames are preprocessed in torch and encoded `chunk_size` at a time.

    With `tome_r > 0` the `tower` is patched in place with Token Merging (`tome_r` tokens merged in each layer); the
    subclass passes the `tokens_per_frame` that the patched tower gives (see `patch_tokens`); so does a `tokenlearner`
    inserted after a layer, whose parameters are the only ones `requires_grad_` turns on (`supports_training` is then
    True). With `attention` the tower runs eager attention (sdpa returns no weights), so `encode_with_attention`
    works. Subclasses implement `tower_outputs`.
    """

    def __init__(
        self,
        tower: nn.Module,
        settings: ImageSettings,
        output_dim: int,
        tokens_per_frame: int,
        chunk_size: int,
        tome_r: int = 0,
        attention: bool = False,
        tokenlearner: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if tome_r < 0:
            raise ValueError(f"tome_r must be >= 0, got {tome_r}")
        if not isinstance(attention, bool):
            raise ValueError(f"attention must be true or false, got {attention!r}")
        if attention and tome_r:
            raise ValueError(f"attention=True needs tome_r=0, got tome_r={tome_r}: merged tokens are not patches")
        tokenlearner = tokenlearner_options(tokenlearner)
        if tokenlearner is not None and (tome_r or attention):
            raise ValueError(f"tokenlearner needs tome_r=0 and attention=False, got {tome_r=}, {attention=}")
        if tome_r:
            patch_vision_tower(tower, tome_r)
        if tokenlearner is not None:
            insert_tokenlearner(tower, patch_grid(settings, tower.config), **tokenlearner)
        if attention:
            tower.set_attn_implementation("eager")
        self.settings = settings
        self.output_dim = output_dim
        self.tokens_per_frame = tokens_per_frame
        self.chunk_size = chunk_size
        self.provides_attention = attention
        self.supports_training = tokenlearner is not None

    def requires_grad_(self, requires_grad: bool = True) -> HFVisionEncoder:
        """The pretrained tower stays frozen; only an inserted TokenLearner follows `requires_grad`."""
        super().requires_grad_(False)
        for learner in learners(self):
            learner.requires_grad_(requires_grad)
        return self

    def train(self, mode: bool = True) -> HFVisionEncoder:
        """Frozen: always stays in eval mode."""
        return super().train(False)

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        """`[t, 3, h, w]` pixels -> `([t, N, D] tokens, [t, N] attention each token received, or None when not
        `with_attention`)`."""
        raise NotImplementedError

    def encode_chunks(self, frames: Tensor, with_attention: bool) -> list[tuple[Tensor, Tensor | None]]:
        """`tower_outputs` of uint8 `[T, H, W, 3]` frames preprocessed and encoded `chunk_size` at a time."""
        check_frames(frames)
        parameter = next(self.parameters())
        dtype = parameter.dtype if parameter.is_floating_point() else torch.float32
        return [
            self.tower_outputs(preprocess_frames(chunk.to(parameter.device), self.settings, dtype), with_attention)
            for chunk in frames.split(self.chunk_size)
        ]

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> float `[T, N, D]` (`N = tokens_per_frame`, `D = output_dim`); gradients flow only
        where an inserted TokenLearner can train."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.supports_training):
            return torch.cat([tokens.float() for tokens, _ in self.encode_chunks(frames, False)])

    @torch.no_grad()
    def encode_with_attention(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 `[T, H, W, 3]` -> `(float [T, N, D] tokens, float [T, N] attention each token received)`; needs
        `attention=True` at construction."""
        if not self.provides_attention:
            raise ValueError(f"this {type(self).__name__} was built without attention: set attention: true")
        chunks = self.encode_chunks(frames, True)
        return torch.cat([t.float() for t, _ in chunks]), torch.cat([a.float() for _, a in chunks])


class CLIPVisionEncoder(HFVisionEncoder):
    """CLIP vision tower: patch tokens of layer `feature_layer` (class token dropped), `[T, (S/P)^2, D]`; with
    `attention`, the [CLS] attention of that layer to each patch."""

    def __init__(
        self,
        path: str | os.PathLike,
        chunk_size: int = 32,
        feature_layer: int = -1,
        load_in_4bit: bool = False,
        tome_r: int = 0,
        attention: bool = False,
        tokenlearner: dict[str, Any] | None = None,
    ) -> None:
        from transformers import CLIPVisionModel

        model = CLIPVisionModel.from_pretrained(path, local_files_only=True, **quantization_kwargs(load_in_4bit))
        config = model.config
        settings = read_image_settings(path, config.image_size, CLIP_MEAN, CLIP_STD)
        merged_layers = range(config.num_hidden_layers + 1)[feature_layer]  # hidden_states[0] is the embeddings
        if attention and merged_layers == 0:
            raise ValueError(
                f"attention=True needs a transformer layer, got feature_layer={feature_layer} (embeddings)"
            )
        patches = patch_tokens(settings, config, tome_r, merged_layers, tokenlearner)
        super().__init__(model, settings, config.hidden_size, patches, chunk_size, tome_r, attention, tokenlearner)
        self.model = freeze(model)
        self.feature_layer = feature_layer
        self.attention_layer = merged_layers - 1  # attentions[i] belongs to the layer giving hidden_states[i + 1]

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        last = self.feature_layer == -1
        outputs = self.model(pixel_values=pixels, output_hidden_states=not last, output_attentions=with_attention)
        hidden = outputs.last_hidden_state if last else outputs.hidden_states[self.feature_layer]
        attention = class_token_attention(outputs.attentions[self.attention_layer]) if with_attention else None
        return hidden[:, 1:], attention


class SiglipVisionEncoder(HFVisionEncoder):
    """SigLIP vision tower (no class token): all patch tokens of the last layer, `[T, (S/P)^2, D]`; with `attention`,
    the mean attention each patch receives in that layer."""

    def __init__(
        self,
        path: str | os.PathLike,
        chunk_size: int = 32,
        load_in_4bit: bool = False,
        tome_r: int = 0,
        attention: bool = False,
        tokenlearner: dict[str, Any] | None = None,
    ) -> None:
        from transformers import SiglipVisionModel

        model = SiglipVisionModel.from_pretrained(path, local_files_only=True, **quantization_kwargs(load_in_4bit))
        config = model.config
        settings = read_image_settings(path, config.image_size, HALF, HALF)
        patches = patch_tokens(settings, config, tome_r, tokenlearner=tokenlearner)
        super().__init__(model, settings, config.hidden_size, patches, chunk_size, tome_r, attention, tokenlearner)
        self.model = freeze(model)

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        outputs = self.model(pixel_values=pixels, output_attentions=with_attention)
        return outputs.last_hidden_state, received_attention(outputs.attentions[-1]) if with_attention else None


class Blip2VisionEncoder(HFVisionEncoder):
    """BLIP-2 ViT + Q-Former: `output="qformer"` gives `[T, Q=32, D_qformer]` query tokens (STAC's input),
    `output="patches"` the ViT patch tokens `[T, (S/P)^2, D_vit]` (class token dropped; with `attention`, the
    [CLS] attention of the last layer to each patch).

    Build it from a folder (`from_pretrained`) or around an already loaded `Blip2ForConditionalGeneration`
    (`from_blip2`, sharing its modules with the language model).
    """

    def __init__(
        self,
        vision_model: nn.Module,
        qformer: nn.Module,
        query_tokens: nn.Parameter,
        settings: ImageSettings,
        output: str = "qformer",
        chunk_size: int = 32,
        tome_r: int = 0,
        attention: bool = False,
        tokenlearner: dict[str, Any] | None = None,
    ) -> None:
        if output not in ("qformer", "patches"):
            raise ValueError(f"output must be 'qformer' or 'patches', got {output!r}")
        if output == "qformer" and attention:
            raise ValueError("attention=True needs output='patches': the Q-Former's queries have no patch attention")
        if output == "qformer":
            dim, tokens = query_tokens.shape[-1], query_tokens.shape[-2]
        else:
            config = vision_model.config
            dim, tokens = config.hidden_size, patch_tokens(settings, config, tome_r, tokenlearner=tokenlearner)
        super().__init__(vision_model, settings, dim, tokens, chunk_size, tome_r, attention, tokenlearner)
        self.vision_model = freeze(vision_model)
        self.qformer = freeze(qformer)
        self.query_tokens = query_tokens
        self.query_tokens.requires_grad_(False)
        self.output = output

    @classmethod
    def from_blip2(cls, model: nn.Module, path: str | os.PathLike, **options: Any) -> Blip2VisionEncoder:
        """Wrap the vision side of a loaded `Blip2ForConditionalGeneration` (image settings from `path`; `options`:
        the constructor's `output`, `chunk_size`, `tome_r`, `attention`, `tokenlearner`); `tome_r > 0` and
        `tokenlearner` patch its vision tower in place, and `attention` switches it to eager attention."""
        settings = read_image_settings(path, model.config.vision_config.image_size, CLIP_MEAN, CLIP_STD)
        return cls(model.vision_model, model.qformer, model.query_tokens, settings, **options)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, load_in_4bit: bool = False, **options: Any) -> Blip2VisionEncoder:
        """Load a BLIP-2 folder and keep only its vision side (the language model is dropped); `options` as for
        `from_blip2`."""
        from transformers import Blip2ForConditionalGeneration

        model = Blip2ForConditionalGeneration.from_pretrained(
            path, local_files_only=True, **quantization_kwargs(load_in_4bit)
        )
        return cls.from_blip2(model, path, **options)

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        outputs = self.vision_model(pixel_values=pixels, output_attentions=with_attention)
        image_embeds = outputs.last_hidden_state
        if self.output == "patches":
            return image_embeds[:, 1:], class_token_attention(outputs.attentions[-1]) if with_attention else None
        query = self.query_tokens.expand(image_embeds.shape[0], -1, -1)  # no mask: every patch is attended to
        return self.qformer(query_embeds=query, encoder_hidden_states=image_embeds).last_hidden_state, None
