"""A tiny trainable vision encoder for CPU experiments: conv patch embedding + a few transformer layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vtc.encoders.base import VisionEncoder
from vtc.encoders.hf import HALF, ImageSettings, check_frames, preprocess_frames


class TinyVisionEncoder(VisionEncoder):
    """ViT-style encoder: uint8 `[T, H, W, 3]` -> `[T, (S/P)^2, dim]` (S = `image_size`, P = `patch_size`).

    Unlike the Hugging Face towers it is trainable (gradients flow through `encode`).
    """

    supports_training = True
    stores_weights_in_checkpoint = True

    def __init__(
        self, image_size: int = 32, patch_size: int = 8, dim: int = 32, depth: int = 2, heads: int = 2
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.settings = ImageSettings(size=(image_size, image_size), mean=HALF, std=HALF)
        self.output_dim = dim
        self.tokens_per_frame = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.randn(1, self.tokens_per_frame, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> float `[T, N, dim]`."""
        check_frames(frames)
        pixels = preprocess_frames(frames.to(self.position.device), self.settings)
        patches = self.patch_embed(pixels).flatten(2).transpose(1, 2)
        return self.norm(self.blocks(patches + self.position))
