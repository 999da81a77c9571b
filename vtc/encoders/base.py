"""The frozen vision encoder interface shared by the model, the feature cache and the CLI."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn


class VisionEncoder(nn.Module):
    """Maps video frames to per-frame visual tokens.

    Subclasses set `output_dim` (D) and `tokens_per_frame` (N) (and `grid` where N is a non-square patch grid,
    which the model hands to the compressors that read the grid) and implement `encode`; `supports_training` is
    True where gradients flow through `encode` (else it runs without them); `stores_weights_in_checkpoint` is True
    for an encoder built from its config alone (random, or from a weights file that may not stay beside the
    checkpoint), whose weights a model checkpoint therefore stores. `provides_attention` is True where
    `encode_with_attention` also gives the attention each token received in the tower (a CLIP or SigLIP tower built
    with `attention=True`); the `visionzip` compressor needs it.
    """

    output_dim: int
    tokens_per_frame: int
    grid: tuple[int, int] | None = None  # (rows, cols) of the tokens' patch grid, row-major; None: not a grid
    supports_training: bool = False
    stores_weights_in_checkpoint: ClassVar[bool] = False
    provides_attention: bool = False

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

    def encode_with_attention(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """`encode` plus the attention each token received in the encoder.

        Args:
            frames: `[T, H, W, 3]` uint8 RGB frames of one video.

        Returns:
            `([T, N, D] tokens, [T, N] attention)`, the attention finite and >= 0.

        Raises:
            ValueError: this encoder does not provide attention (`provides_attention` is False).
        """
        raise ValueError(
            f"the {type(self).__name__} encoder gives no attention per token: use a CLIP or SigLIP encoder (or BLIP-2 "
            "with output='patches') whose config sets attention: true"
        )
