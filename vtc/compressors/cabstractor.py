"""`"cabstractor"`: Honeybee's C-Abstractor (Cha et al., "Honeybee: Locality-enhanced Projector for Multimodal
LLM", CVPR 2024, Sec. 3.2 and Fig. 4a), applied to each frame's patch grid.

ResNet (RegNet bottleneck) blocks, adaptive average pooling to `grid_out`, more ResNet blocks, then an MLP
readout, as in the authors' `CAbstractor` (`depth` blocks per stage, SiLU, LayerNorm over
channels, squeeze-excite).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, side_up
from vtc.compressors.grid import as_pair, ceil_div, from_grid, optional_grid, square_grid, to_grid
from vtc.compressors.ops import per_frame_output
from vtc.utils.checks import check_int


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of `[B, C, H, W]`."""

    def forward(self, x: Tensor) -> Tensor:
        """`[B, C, H, W]` -> `[B, C, H, W]`."""
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (Hu et al. 2018)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, C, H, W]` -> `[B, C, H, W]`."""
        return x * self.expand(F.silu(self.reduce(x.mean(dim=(2, 3), keepdim=True)))).sigmoid()


class Bottleneck(nn.Module):
    """RegNet bottleneck block (timm `RegStage` defaults as Honeybee uses them): 1x1 conv, depthwise 3x3 conv,
    squeeze-excite (ratio 0.25 of the input width), 1x1 conv, residual (1x1 projection when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), ChannelLayerNorm(out_channels))
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False),
            ChannelLayerNorm(out_channels),
        )
        self.se = SqueezeExcite(out_channels, max(1, round(in_channels * 0.25)))
        self.conv3 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 1, bias=False), ChannelLayerNorm(out_channels))
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), ChannelLayerNorm(out_channels))
        )

    def forward(self, x: Tensor) -> Tensor:
        """`[F, C_in, H, W]` -> `[F, C_out, H, W]`."""
        y = self.conv3(self.se(F.silu(self.conv2(F.silu(self.conv1(x))))))
        return F.silu(y + self.shortcut(x))


def res_stage(depth: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """`depth` bottleneck blocks, the first one changing the width."""
    return nn.Sequential(*(Bottleneck(in_channels if i == 0 else out_channels, out_channels) for i in range(depth)))


@register_compressor("cabstractor")
class CAbstractor(Compressor):
    """C-Abstractor per frame: `[B, T, H*W, D] -> [B, T * gh * gw, D]`.

    `grid_out=(gh, gw)` fixes the pooled grid; when None it is the grid a `kernel=(kh, kw)` pooling would
    give, `(ceil(H/kh), ceil(W/kw))` (default 2x2; MambaMia's 10x1 variant is `kernel=(10, 1)`). Pooling is
    adaptive average pooling as in Honeybee, so any grid size works. Honeybee's learned positional embedding of
    the input grid is left out: it ties the module to one grid size, and the vision encoder's tokens already
    carry positions.
    """

    card = MethodCard(
        family=Family.ATTENTION,  # trained convolutions, the family of the trained non-state-space methods
        knobs=(Knob("grid_out", side_up, lambda side, _: (side, side)),),
    )

    def __init__(
        self,
        dim: int,
        hidden_dim: int | None = None,
        depth: int = 3,
        grid_out: tuple[int, int] | None = None,
        kernel: tuple[int, int] = (2, 2),
        grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(dim)
        hidden_dim = dim if hidden_dim is None else check_int("hidden_dim", hidden_dim)
        check_int("depth", depth)
        self.grid_out = optional_grid("grid_out", grid_out)
        self.kernel = as_pair("kernel", kernel)
        self.grid = optional_grid("grid", grid)
        self.stage1 = res_stage(depth, dim, hidden_dim)
        self.stage2 = res_stage(depth, hidden_dim, hidden_dim)
        self.readout = nn.Sequential(nn.Linear(hidden_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def output_grid(self, tokens_per_frame: int) -> tuple[int, int]:
        """The pooled `(gh, gw)` grid for frames of `tokens_per_frame` patches."""
        if self.grid_out is not None:
            square_grid(tokens_per_frame, self.grid)
            return self.grid_out
        height, width = square_grid(tokens_per_frame, self.grid)
        return ceil_div(height, self.kernel[0]), ceil_div(width, self.kernel[1])

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, H*W, D]` -> `[B, T * gh * gw, D]`, frame-major; padded frames dropped."""
        grid = to_grid(tokens, self.grid)
        pooled = F.adaptive_avg_pool2d(self.stage1(grid), self.output_grid(tokens.shape[2]))
        abstracted = self.readout(from_grid(self.stage2(pooled), tokens.shape[0]))
        return per_frame_output(abstracted, timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        height, width = self.output_grid(tokens_per_frame)
        return num_frames * height * width
