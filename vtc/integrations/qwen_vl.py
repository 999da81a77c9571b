"""Qwen2.5-VL and Qwen3-VL (`Qwen2_5_VLForConditionalGeneration`, `Qwen3VLForConditionalGeneration`): the compressor
runs inside `get_video_features`, after the vision tower and its 2 x 2 patch merger, on each video's `[t, h * w, D]`
tokens (t temporal patches, an `(h, w)` grid of merged tokens, both from `video_grid_thw`); the processor writes the
compressed count of `<|video_pad|>`.

Three hooks, each on the instance:
- `get_video_features` compresses and records, per video, the uncompressed index of each token it keeps
  (`VideoTokenCompression.sources`); Qwen3-VL's deepstack features are taken at the same sources;
- `get_rope_index` lays the compressed sequence back out at full length (`expand_video_runs`), runs the model's own
  index on it and keeps the columns of the tokens that are there: a kept token has exactly its uncompressed
  (temporal, height, width) ids, text around the video keeps its ids, and the rope delta is that of the shorter
  sequence, so the cache positions of generation stay right;
- `generate` encodes (and so compresses) the videos before the model's generate computes the positions, and hands
  them on as `mm_encoder_outputs` (the model's own way of passing pre-encoded videos).

Qwen3-VL writes each temporal patch as its own placeholder run between timestamps, so there the compressor must keep
the same number of tokens in every frame (a per-frame compressor: avgpool2d, bilinear, tome with scope="frame", ...).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from vtc.compressors import Compressor
from vtc.integrations.tokens import VideoTokenCompression, expand_video_runs, frame_runs, rope_deltas


def merged_grids(video_grid_thw: Tensor, merge: int) -> list[tuple[int, int, int]]:
    """Per video, `(t, rows, cols)` of the merged tokens the language model receives."""
    return [(int(t), int(h) // merge, int(w) // merge) for t, h, w in video_grid_thw.tolist()]


def placeholder_runs(
    grids: list[tuple[int, int, int]], sources: list[Tensor], per_frame: bool
) -> tuple[list[int], list[Tensor]]:
    """The uncompressed length and the sources of each placeholder run: one run a video, or one a temporal patch
    (`per_frame`, Qwen3-VL)."""
    if not per_frame:
        return [t * h * w for t, h, w in grids], list(sources)
    lengths = [h * w for t, h, w in grids for _ in range(t)]
    return lengths, [run for (t, h, w), kept in zip(grids, sources, strict=True) for run in frame_runs(kept, t, h * w)]


def frame_count(compression: VideoTokenCompression, frames: int, grid: tuple[int, int]) -> int:
    """Tokens a frame of a Qwen3-VL video keeps; `ValueError` for a compressor whose count is not the same in every
    frame."""
    count = compression.placeholder_count(1, grid)
    if compression.placeholder_count(frames, grid) != frames * count:
        raise ValueError(
            f"Qwen3-VL writes placeholders frame by frame: {compression.compressor.registry_name} must keep the same "
            f"number of tokens in every frame (a per-frame compressor)"
        )
    return count


def attach(model: nn.Module, compressor: Compressor, processor: Any | None, per_frame: bool) -> VideoTokenCompression:
    """Put `compressor` into `model` (and the compressed placeholder count into `processor`, when given);
    `per_frame`: Qwen3-VL's placeholder run per temporal patch and deepstack features."""
    base = model.model
    merge = model.config.vision_config.spatial_merge_size
    compression = VideoTokenCompression(compressor)
    base.video_token_compression = compression
    original_features, original_rope, original_generate = base.get_video_features, base.get_rope_index, model.generate

    @functools.wraps(original_features)
    def get_video_features(pixel_values_videos: Tensor, video_grid_thw: Tensor | None = None, **kwargs: Any) -> Any:
        """`pooler_output` (and Qwen3-VL's `deepstack_features`): per video `[t * h * w, D]` -> `[L, D]`."""
        kwargs["return_dict"] = True
        outputs = original_features(pixel_values_videos, video_grid_thw, **kwargs)
        grids = merged_grids(video_grid_thw, merge)
        if per_frame:
            for t, h, w in grids:
                frame_count(compression, t, (h, w))
        videos = [tokens.reshape(t, h * w, -1) for tokens, (t, h, w) in zip(outputs.pooler_output, grids, strict=True)]
        outputs.pooler_output = tuple(compression(videos, [(h, w) for _, h, w in grids]))
        if per_frame:
            outputs.deepstack_features = [
                tuple(tokens[kept] for tokens, kept in zip(layer, compression.sources, strict=True))
                for layer in outputs.deepstack_features
            ]
        return outputs

    @functools.wraps(original_rope)
    def get_rope_index(
        input_ids: Tensor,
        mm_token_type_ids: Tensor,
        image_grid_thw: Tensor | None = None,
        video_grid_thw: Tensor | None = None,
        attention_mask: Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        """`([3, B, S] position ids, [B, 1] rope deltas)` of the compressed sequence."""
        if video_grid_thw is None:
            return original_rope(
                input_ids, mm_token_type_ids, image_grid_thw=image_grid_thw, attention_mask=attention_mask, **kwargs
            )
        lengths, sources = placeholder_runs(merged_grids(video_grid_thw, merge), compression.sources, per_frame)
        columns, types, mask = expand_video_runs(mm_token_type_ids, attention_mask, lengths, sources)
        ids = torch.zeros_like(types, dtype=input_ids.dtype)
        grids = {"image_grid_thw": image_grid_thw, "video_grid_thw": video_grid_thw}
        positions, _ = original_rope(ids, types, **grids, attention_mask=mask, **kwargs)
        positions = positions.gather(2, columns.unsqueeze(0).expand(3, -1, -1))
        if attention_mask is not None:
            positions = positions.masked_fill(~attention_mask.bool().unsqueeze(0), 0)
        return positions, rope_deltas(positions, attention_mask)

    @functools.wraps(original_generate)
    def generate(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("pixel_values_videos") is not None:
            encoded = get_video_features(kwargs.pop("pixel_values_videos"), kwargs["video_grid_thw"])
            kwargs["mm_encoder_outputs"] = {**(kwargs.get("mm_encoder_outputs") or {}), "video": encoded}
        return original_generate(*args, **kwargs)

    base.get_video_features, base.get_rope_index, model.generate = get_video_features, get_rope_index, generate
    if processor is not None:
        original_replace = processor.replace_video_token

        def replace_video_token(video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
            t, h, w = merged_grids(video_inputs["video_grid_thw"][video_idx : video_idx + 1], merge)[0]
            token = processor.video_token
            if not per_frame:
                return token * compression.placeholder_count(t, (h, w))
            runs = original_replace(video_inputs, video_idx, **kwargs)  # timestamps, then a run per temporal patch
            return runs.replace(token * (h * w), token * frame_count(compression, t, (h, w)))

        processor.replace_video_token = replace_video_token
    return compression
