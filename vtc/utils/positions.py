"""Position encodings shared by compressors and the projector."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_encoding(positions: Tensor, dim: int) -> Tensor:
    """Sine/cosine encoding (Vaswani et al. 2017, Sec. 3.5) of `positions [...]` -> `[..., dim]`."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / max(half, 1))
    angles = positions.float().unsqueeze(-1) * frequencies
    encoding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return torch.nn.functional.pad(encoding, (0, dim - 2 * half))
