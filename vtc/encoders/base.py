"""The frozen vision encoder interface shared by the model, the feature cache and the CLI."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn


class VisionEncoder(nn.Module):
    """Maps video frames to per-frame visual tokens.

    Subclasses set `output_dim` (D) and `tokens_per_frame` (N) and implement `encode`; `supports_training` is
    True where gradients flow through `encode` (else it runs without them); `stores_weights_in_checkpoint` is True
    for an encoder built from its config alone (random, or from a weights file that may not stay beside the
    checkpoint), whose weights a model checkpoint therefore stores.
    """

    output_dim: int
    tokens_per_frame: int
    supports_training: bool = False
    stores_weights_in_checkpoint: ClassVar[bool] = False

    def encode(self, frames: Tensor) -> Tensor:
        """Encode frames.

        Args:
            frames: `[T, H, W, 3]` uint8 RGB frames of one video (as `vtc.video.load_video` returns them).

        Returns:
            `[T, N, D]` float tokens, `N = tokens_per_frame`, `D = output_dim`.
        """
        raise NotImplementedError

    def forward(self, frames: Tensor) -> Tensor:
        """Same as `encode`."""
        return self.encode(frames)
