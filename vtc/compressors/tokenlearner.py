"""`"tokenlearner"`: TokenLearner (Ryoo et al., "TokenLearner: What Can 8 Learned Tokens Do for Images and
Videos?", NeurIPS 2021), applied to each frame.

Two known bugs of public PyTorch ports are avoided: the spatial maps are normalised over space (softmax over
the N positions of a frame, never over channels), and the `[B, H, W, C]` grid is moved to `[B, C, H, W]` with
`permute`, never with a `view`.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_tokens
from vtc.compressors.grid import optional_grid, square_grid
from vtc.compressors.ops import per_frame_output
from vtc.utils.checks import check_choice, check_int


class TokenLearnerV11(nn.Module):
    """Version 1.1 (`TokenLearnerModuleV11`): LayerNorm, MLP `D -> bottleneck -> S`, softmax over space."""

    def __init__(self, dim: int, num_tokens: int, bottleneck: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, bottleneck), nn.GELU(), nn.Linear(bottleneck, num_tokens))

    def maps(self, x: Tensor) -> Tensor:
        """`[F, N, D]` frames -> `[F, S, N]` spatial weight maps, each summing to 1 over the N positions."""
        return self.mlp(self.norm(x)).transpose(1, 2).softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """`[F, N, D]` -> `[F, S, D]`: each learned token is a map-weighted sum of the frame's raw tokens."""
        return self.maps(x) @ x


class TokenLearnerV10(nn.Module):
    """Version 1.0 (Sec. 2.1): LayerNorm, four 3x3 convolutions (GELU between), sigmoid maps, spatial mean.

    The paper's rho is "spatial global average pooling" (Sec. 2.1); the authors' code can also sum, which
    differs only by the factor N, so the mean is used.
    """

    def __init__(self, dim: int, num_tokens: int, grid: tuple[int, int] | None = None, num_layers: int = 4) -> None:
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(dim)
        layers: list[nn.Module] = []
        for layer in range(num_layers):
            layers.append(nn.Conv2d(dim if layer == 0 else num_tokens, num_tokens, 3, padding=1, bias=False))
            if layer < num_layers - 1:
                layers.append(nn.GELU())
        self.convs = nn.Sequential(*layers)

    def maps(self, x: Tensor) -> Tensor:
        """`[F, N, D]` frames -> `[F, S, N]` sigmoid maps (Eq. 1's alpha_i followed by gamma)."""
        frames, count, channels = x.shape
        height, width = square_grid(count, self.grid)
        grid = self.norm(x).reshape(frames, height, width, channels).permute(0, 3, 1, 2)
        return self.convs(grid).flatten(2).sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        """`[F, N, D]` -> `[F, S, D]`: z_i = rho(x * gamma(alpha_i(x))) with rho the spatial mean (Eq. 1)."""
        return (self.maps(x) @ x) / x.shape[1]


@register_compressor("tokenlearner")
class TokenLearner(Compressor):
    """TokenLearner per frame: `[B, T, N, D] -> [B, T * num_tokens, D]`; version "1.1" (default) or "1.0".

    Version 1.0 needs the frame's patch grid: square N, or `grid=(height, width)`.
    """

    card = MethodCard(
        family=Family.ATTENTION,  # learned spatial attention maps
        knobs=(Knob("num_tokens", up_to_tokens),),
    )

    def __init__(
        self,
        dim: int,
        num_tokens: int = 8,
        version: Literal["1.0", "1.1"] = "1.1",
        bottleneck: int = 64,
        grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(dim)
        self.num_tokens = check_int("num_tokens", num_tokens)
        check_int("bottleneck", bottleneck)
        grid = optional_grid("grid", grid)
        if check_choice("version", version, ("1.0", "1.1")) == "1.1":
            self.learner: nn.Module = TokenLearnerV11(dim, num_tokens, bottleneck)
        else:
            self.learner = TokenLearnerV10(dim, num_tokens, grid)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, T * num_tokens, D]`, frame-major; padded frames dropped."""
        batch, frames, per_frame, channels = tokens.shape
        learned = self.learner(tokens.reshape(batch * frames, per_frame, channels))
        return per_frame_output(learned.reshape(batch, frames, self.num_tokens, channels), timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return num_frames * self.num_tokens
