"""Tiny random Hugging Face video LLMs (LLaVA-OneVision, Qwen2.5-VL, Qwen3-VL) saved to a folder for loading back by
path, with an offline tokenizer carrying the hosts' special tokens.

Transformers' video processors need torchvision, which this CPU environment lacks; `pixel_inputs` builds what they
return (normalised frames for LLaVA-OneVision, Qwen's flattened 2 x 4 x 4 patches and `video_grid_thw`) with torch,
`video_inputs` adds prompts with the placeholder count the integration asks for, and `TinyProcessor` stands in for a
processor object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from vtc.lmm.tiny import save_tokenizer

HOSTS = ("llava_onevision", "qwen2_5_vl", "qwen3_vl")
VIDEO_TOKEN = {"llava_onevision": "<video>", "qwen2_5_vl": "<|video_pad|>", "qwen3_vl": "<|video_pad|>"}
QWEN_TOKENS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"]
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
SIDE, PATCH, MERGE, TEMPORAL = 32, 4, 2, 2  # Qwen: 32 px frames, 4 px patches, 2 x 2 merge, 2 frames a patch


def tiny_video(frames: int = 4, seed: int = 0) -> np.ndarray:
    """`[frames, 32, 32, 3]` uint8 random frames."""
    return np.random.default_rng(seed).integers(0, 256, (frames, SIDE, SIDE, 3), dtype=np.uint8)


def save_tokenizer_with(directory: Path, special: list[str]):
    """The offline BPE tokenizer of `vtc.lmm.tiny` with `special` tokens added, saved to `directory`."""
    from transformers import PreTrainedTokenizerFast

    save_tokenizer(directory)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    tokenizer.add_special_tokens({"additional_special_tokens": special})
    tokenizer.save_pretrained(directory)
    return tokenizer


def save_llava_onevision(directory: Path) -> Path:
    """A tiny `LlavaOnevisionForConditionalGeneration`: SigLIP on 32 px frames with 8 px patches (a 4 x 4 grid,
    2 x 2 after the model's pooling) and a Qwen2 LM."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = save_tokenizer_with(directory, ["<image>", "<video>"])
    vision = {"model_type": "siglip_vision_model", "image_size": SIDE, "patch_size": 8, "vision_use_head": False}
    config = LlavaOnevisionConfig(
        vision_config={**vision, **TEXT},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "num_key_value_heads": 2, **TEXT},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=[[SIDE, SIDE]],
    )
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(directory)
    return directory


def qwen_parts(directory: Path, **text: Any) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """The special-token ids, text config and shared vision config of a tiny Qwen-VL (4 px patches, 2 x 2 merge: a
    4 x 4 grid per 2 frames), its tokenizer saved in `directory`; `text` adds or replaces text config keys."""
    tokenizer = save_tokenizer_with(directory, QWEN_TOKENS)
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    ids = dict(zip(names, tokenizer.convert_tokens_to_ids(QWEN_TOKENS), strict=True))
    text_config = {"vocab_size": len(tokenizer), "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 1}
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 4,
        "patch_size": PATCH,
        "temporal_patch_size": TEMPORAL,
        "spatial_merge_size": MERGE,
        "out_hidden_size": 32,
    }
    return ids, {**text_config, **TEXT, **text}, vision


def save_qwen2_5_vl(directory: Path) -> Path:
    """A tiny `Qwen2_5_VLForConditionalGeneration` (windowed attention in the first vision layer)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    ids, text, vision = qwen_parts(directory, rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2]})
    vision.update(window_size=16, fullatt_block_indexes=[1], tokens_per_second=2)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(directory)
    return directory


def save_qwen3_vl(directory: Path) -> Path:
    """A tiny `Qwen3VLForConditionalGeneration` (the Qwen2.5 sizes, deepstack features from the first layer)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "mrope_interleaved": True}
    ids, text, vision = qwen_parts(directory, head_dim=8, rope_parameters=rope)
    vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **ids)
    Qwen3VLForConditionalGeneration(config).save_pretrained(directory)
    return directory


def save_tiny_vlm(directory: Path, host: str) -> Path:
    """Write the tiny model and tokenizer of `host` (one of `HOSTS`) to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    save = {"llava_onevision": save_llava_onevision, "qwen2_5_vl": save_qwen2_5_vl, "qwen3_vl": save_qwen3_vl}
    return save[host](directory)


def normalised(frames: np.ndarray) -> torch.Tensor:
    """uint8 `[T, H, W, 3]` -> float `[T, 3, 32, 32]` in [-1, 1] (resized bilinearly from another size)."""
    video = torch.as_tensor(frames).permute(0, 3, 1, 2).float()
    if video.shape[-2:] != (SIDE, SIDE):
        video = torch.nn.functional.interpolate(video, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return (video / 255 - 0.5) / 0.5


def qwen_patches(frames: np.ndarray) -> tuple[torch.Tensor, list[int]]:
    """What Qwen2-VL's video processor returns for one video: `[t * h * w, 3 * 2 * 4 * 4]` patches (merge blocks
    contiguous) and its `(t, h, w)` patch grid."""
    video = normalised(frames)[None]
    if pad := -video.shape[1] % TEMPORAL:
        video = torch.cat([video, video[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
    t, h, w = video.shape[1] // TEMPORAL, SIDE // PATCH, SIDE // PATCH
    patches = video.view(1, t, TEMPORAL, 3, h // MERGE, MERGE, PATCH, w // MERGE, MERGE, PATCH)
    patches = patches.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9).reshape(t * h * w, 3 * TEMPORAL * PATCH * PATCH)
    return patches, [t, h, w]


def pixel_inputs(host: str, videos: list[np.ndarray]) -> dict:
    """The video entries of the host's processor output for `videos`."""
    if host == "llava_onevision":
        return {"pixel_values_videos": torch.stack([normalised(video) for video in videos])}
    patches = [qwen_patches(video) for video in videos]
    inputs = {
        "pixel_values_videos": torch.cat([pixels for pixels, _ in patches]),
        "video_grid_thw": torch.tensor([grid for _, grid in patches]),
    }
    return inputs if host == "qwen3_vl" else {**inputs, "second_per_grid_ts": torch.ones(len(videos))}


def text_inputs(tokenizer, host: str, texts: list[str]) -> dict:
    """Left-padded tokens of `texts` (placeholders already expanded), with Qwen's `mm_token_type_ids`."""
    tokenizer.padding_side = "left"
    inputs = dict(tokenizer(texts, return_tensors="pt", padding=True))
    if host != "llava_onevision":
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == tokenizer.convert_tokens_to_ids(VIDEO_TOKEN[host])) * 2
    return inputs


def video_placeholders(host: str, count: int, temporal_patches: int) -> str:
    """A video's placeholder text: `count` tokens, between vision marks on Qwen, one run per temporal patch after its
    timestamp on Qwen3-VL."""
    token = VIDEO_TOKEN[host]
    if host == "llava_onevision":
        return token * count
    if host == "qwen2_5_vl":
        return f"<|vision_start|>{token * count}<|vision_end|>"
    run = token * (count // temporal_patches)
    return "".join(f"<{2 * k}.0 seconds><|vision_start|>{run}<|vision_end|>" for k in range(temporal_patches))


def video_inputs(tokenizer, host: str, videos: list[np.ndarray], queries: list[str], counts: list[int]) -> dict:
    """A left-padded batch as the host's processor returns it: one video per prompt with `counts[i]` placeholders."""
    texts = [
        f"user: {video_placeholders(host, n, len(video) // TEMPORAL)}{q}\nassistant:"
        for video, q, n in zip(videos, queries, counts, strict=True)
    ]
    return {**text_inputs(tokenizer, host, texts), **pixel_inputs(host, videos)}


class TinyProcessor:
    """Stands in for the host's processor where torchvision is missing: the same outputs, and each video's marker
    expanded by `replace_video_token` (which `compress_video_llm` replaces) as `ProcessorMixin` does."""

    chat_template = None

    def __init__(self, tokenizer, host: str) -> None:
        self.tokenizer, self.host = tokenizer, host
        self.video_token = VIDEO_TOKEN[host]
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        """The uncompressed placeholders: every frame's 2 x 2 pooled grid and a newline, Qwen2.5-VL's `t * h * w / 4`,
        or Qwen3-VL's timestamped run of `h * w / 4` per temporal patch (patches 2 s apart)."""
        if self.host == "llava_onevision":
            return self.video_token * (len(video_inputs["pixel_values_videos"][video_idx]) * 4 + 1)
        t, h, w = video_inputs["video_grid_thw"][video_idx].tolist()
        if self.host == "qwen2_5_vl":
            return self.video_token * (t * h * w // 4)
        return video_placeholders(self.host, t * h * w // 4, t)

    def __call__(self, text: list[str], videos: list[np.ndarray], return_tensors: str = "pt", **options) -> dict:
        """The processor's outputs for one video per prompt; `options` (video processor settings) are ignored."""
        pixels = pixel_inputs(self.host, videos)
        expanded = [
            prompt.replace(self.video_token, self.replace_video_token(pixels, index), 1)
            for index, prompt in enumerate(text)
        ]
        return {**text_inputs(self.tokenizer, self.host, expanded), **pixels}
