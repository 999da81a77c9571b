"""The inputs of a Hugging Face video LLM with a compressor inside, built from decoded frames and text: the pixel
entries of the host's processor, the chat prompt with one video marker, and the placeholder text that the compressed
video takes in it (what `Predictor` and the training wrapper both send to the model).

The placeholder text is written here rather than by the processor, so that one encoded video serves many prompts and
the timestamps are those of the decoded frames:
- LLaVA-OneVision: `<video>` once per compressed token and the newline;
- Qwen2.5-VL: `<|vision_start|>`, `<|video_pad|>` once per compressed token, `<|vision_end|>`;
- Qwen3-VL: per temporal patch, `<{t:.1f} seconds>` then `<|vision_start|>`, the patch's compressed tokens and
  `<|vision_end|>`, `t` the mean time of the patch's first and last frame (as `Qwen3VLProcessor` writes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vtc.integrations.llava_onevision import frame_grid
from vtc.integrations.qwen_vl import frame_count, merged_grids
from vtc.integrations.tokens import VIDEO_TYPE, VideoTokenCompression

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
VIDEO_TOKENS = {"llava_onevision": "<video>", "qwen2_5_vl": "<|video_pad|>", "qwen3_vl": "<|video_pad|>"}
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")


def video_marker(host: str) -> str:
    """The text that stands for one video in a prompt before its placeholders are written."""
    token = VIDEO_TOKENS[host]
    return token if host == "llava_onevision" else f"{VISION_START}{token}{VISION_END}"


def chat_prompt(processor: Any, host: str, text: str) -> str:
    """The prompt of one video and `text`: the processor's chat template (generation prompt added), or the video
    marker, a newline and `text` for a processor without one."""
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    return f"{video_marker(host)}\n{text}"


def patch_times(timestamps: Sequence[float], temporal_patch: int) -> list[float]:
    """Qwen3-VL's time of each temporal patch: the mean of its first and last frame's seconds, the last frame
    repeated to fill the last patch (`timestamps` one per decoded frame)."""
    if not timestamps:
        raise ValueError("a video needs at least one frame timestamp")
    times = [float(t) for t in timestamps]
    times += [times[-1]] * (-len(times) % temporal_patch)
    return [(times[i] + times[i + temporal_patch - 1]) / 2 for i in range(0, len(times), temporal_patch)]


def placeholder_text(
    compression: VideoTokenCompression,
    host: str,
    video: dict[str, Tensor],
    index: int,
    timestamps: Sequence[float],
    vision_config: Any,
) -> str:
    """The placeholder text of video `index` of the processor's `video` entries once `compression` compresses it
    (what replaces its `video_marker`); Qwen reads its grid with `vision_config`'s merge and temporal patch sizes,
    and `timestamps` (seconds of the decoded frames) label Qwen3-VL's patches."""
    token = VIDEO_TOKENS[host]
    if host == "llava_onevision":
        return token * compression.placeholder_count(len(video["pixel_values_videos"][index]))
    grids = video["video_grid_thw"][index : index + 1]
    frames, rows, cols = merged_grids(grids, vision_config.spatial_merge_size)[0]
    if host == "qwen2_5_vl":
        return f"{VISION_START}{token * compression.placeholder_count(frames, (rows, cols))}{VISION_END}"
    run = f"{VISION_START}{token * frame_count(compression, frames, (rows, cols))}{VISION_END}"
    times = patch_times(timestamps, vision_config.temporal_patch_size)
    if len(times) != frames:
        raise ValueError(f"{len(timestamps)} timestamps give {len(times)} temporal patches; the video has {frames}")
    return "".join(f"<{time:.1f} seconds>{run}" for time in times)


def with_placeholders(prompt: str, host: str, placeholders: str) -> str:
    """`prompt` with its (first) video marker replaced by `placeholders`; the bare video token stands for the
    marker where a chat template writes no vision marks."""
    marker = video_marker(host)
    if marker not in prompt:
        marker = VIDEO_TOKENS[host]
    if marker not in prompt:
        raise ValueError(f"the prompt has no video marker {marker!r}: {prompt!r}")
    return prompt.replace(marker, placeholders, 1)


def pixel_inputs(processor: Any, host: str, videos: Sequence[Tensor]) -> dict[str, Tensor]:
    """The video entries of the processor's output (`pixel_values_videos`, Qwen's `video_grid_thw`, ...) for decoded
    `videos` (each `[T, H, W, 3]` uint8), frames taken as given (Qwen3-VL's own frame sampling off)."""
    options = {"do_sample_frames": False} if host == "qwen3_vl" else {}
    text = [video_marker(host)] * len(videos)
    frames = [video.numpy() if isinstance(video, Tensor) else video for video in videos]
    outputs = processor(text=text, videos=frames, return_tensors="pt", **options)
    return {key: value for key, value in outputs.items() if key not in TEXT_KEYS}


def video_layout(model: Any, host: str, video: dict[str, Tensor], pooling: bool) -> tuple[int, int]:
    """`(frames, tokens per frame)` that a compressor inside `model` reads of the processor's `video` entries (its
    first video): LLaVA-OneVision's frames on its grid (pooled 2 x 2 with `pooling`), Qwen's temporal patches of
    merged tokens."""
    if host == "llava_onevision":
        rows, cols = frame_grid(model, pooling)
        return video["pixel_values_videos"].shape[1], rows * cols
    frames, rows, cols = merged_grids(video["video_grid_thw"][:1], model.config.vision_config.spatial_merge_size)[0]
    return frames, rows * cols


def token_type_ids(input_ids: Tensor, video_token_id: int) -> Tensor:
    """Qwen-VL's `mm_token_type_ids [B, S]`: `VIDEO_TYPE` at video placeholders, 0 elsewhere."""
    return (input_ids == video_token_id).long() * VIDEO_TYPE


def padded(rows: Sequence[Sequence[int]], value: int, side: str) -> Tensor:
    """`[B, max length]` long tensor of `rows`, padded with `value` on `side` ("left" or "right")."""
    width = max(len(row) for row in rows)
    filled = [
        [value] * (width - len(row)) + list(row) if side == "left" else list(row) + [value] * (width - len(row))
        for row in rows
    ]
    return torch.tensor(filled, dtype=torch.long)
