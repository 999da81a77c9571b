"""Fused CPU Mamba-1 mixer for inference: what `mamba_ssm`'s `mamba_inner_fn` does on CUDA, compiled with Numba.

After `in_proj`, a Mamba-1 mixer runs conv1d -> SiLU -> x_proj -> dt_proj -> softplus -> selective scan -> skip and
gate (Gu & Dao 2023, Figure 3 and eqs. 2a-2b). In PyTorch each of these is a pass over `[B, d_inner, L]` tensors,
and the mixer's channel-first layout costs transposing copies, and a bidirectional mixer's backward direction two
flips: at the prefill benchmark's size (16,000 steps x 2,048 channels) these passes took more time than the scan
itself. Here the sequence stays token-major as `in_proj` writes it (`[B, L, 2 d_inner]`, x then z):

1. `_conv_silu_kernel`: the causal depthwise convolution (anti-causal for the reversed direction, so nothing is
   flipped) with its bias and SiLU, vectorised over channels, parallel over blocks of steps;
2. x_proj and dt_proj as two BLAS products (dt_proj without its bias);
3. `_scan_kernel`: softplus(dt + bias), the recurrence, the skip `D u` and the gate `silu(z)` in one pass over time
   (backwards for the reversed direction), each thread holding a block of channels' states `[state, channels]`,
   vectorised over channels; each direction's output is added into `y`, which `out_proj` reads as it is.

No gradient flows through the kernels: `vtc.ssm.dispatch.use_cpu_mixer` takes this path only where none is wanted,
and the PyTorch mixer (with the differentiable Numba scan) otherwise. All in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from numba import prange
from torch import Tensor, nn

from vtc.ssm.scan_numba import exp_f32, jit_kernel, use_torch_threads

# Steps per task of the convolution, and channels per task of the scan: a block's states ([16, 256] fp32, 16 KB at
# state 16) stay in the L1 cache.
STEP_BLOCK = 256
CHANNEL_BLOCK = 256


class Direction(NamedTuple):
    """One direction's selective SSM, the parts of a `vtc.ssm.Mamba` (a plain tuple in this order will do):
    `conv1d` (depthwise, `[d, 1, k]`), `x_proj` (`d -> rank + 2 state`), `dt_proj` (`rank -> d`), `A_log [d, state]`,
    `D [d]`; `reverse` runs it from the last step to the first (a bidirectional mixer's backward direction)."""

    conv1d: nn.Conv1d
    x_proj: nn.Linear
    dt_proj: nn.Linear
    A_log: Tensor
    D: Tensor
    reverse: bool


def fused_mixer(xz: Tensor, directions: Sequence[Direction]) -> Tensor:
    """The gated SSM output of a Mamba-1 mixer summed over `directions`, before `out_proj`.

    Args:
        xz: `[B, L, 2 d_inner]`, `in_proj`'s output (x, then the gate z).
        directions: one `Direction` (Mamba) or two (BiMamba: forward, then reversed).

    Returns:
        `y [B, L, d_inner]` fp32: per direction `(C_t . h_t + D u_t) silu(z_t)`, summed.
    """
    batch, length, width = xz.shape
    d_inner = width // 2
    xz = xz.detach().float().contiguous()
    y, u = xz.new_empty(batch, length, d_inner), xz.new_empty(batch, length, d_inner)  # u: one direction's input
    use_torch_threads()
    for index, (conv1d, x_proj, dt_proj, A_log, D, reverse) in enumerate(map(Direction._make, directions)):
        weight = conv1d.weight.detach().float().squeeze(1).t().contiguous()  # [k, d]
        bias = xz.new_zeros(d_inner) if conv1d.bias is None else conv1d.bias.detach().float().contiguous()
        _conv_silu_kernel(xz.numpy(), weight.numpy(), bias.numpy(), reverse, u.numpy())
        projected = F.linear(u, x_proj.weight.detach().float())  # [B, L, rank + 2 state]: dt, B, C
        rank = dt_proj.in_features
        dt = F.linear(projected[..., :rank], dt_proj.weight.detach().float()).contiguous()
        decay_rates = (-torch.exp(A_log.detach().float())).t().contiguous()  # A [state, d]
        _scan_kernel(
            u.numpy(),
            dt.numpy(),
            dt_proj.bias.detach().float().contiguous().numpy(),
            decay_rates.numpy(),
            projected[..., rank:].contiguous().numpy(),
            D.detach().float().contiguous().numpy(),
            xz.numpy(),
            reverse,
            index > 0,
            y.numpy(),
        )
    return y


@jit_kernel(fastmath=True, inline="always")
def _log1p_small(w):
    """fp32 `log(1 + w)` for `0 <= w <= 1`, accurate for tiny `w`: `2 atanh(s)`, `s = w / (2 + w) <= 1/3`, by its
    series to s^15 (the next term is below fp32's resolution)."""
    s = w / (np.float32(2.0) + w)
    s2 = s * s
    p = np.float32(1.0 / 15.0)
    p = p * s2 + np.float32(1.0 / 13.0)
    p = p * s2 + np.float32(1.0 / 11.0)
    p = p * s2 + np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + np.float32(1.0)
    return np.float32(2.0) * s * p


@jit_kernel(fastmath=True, inline="always")
def _softplus(x):
    """fp32 `log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`, branch-free so that it vectorises."""
    return max(x, np.float32(0.0)) + _log1p_small(exp_f32(-abs(x)))


@jit_kernel(fastmath=True, inline="always")
def _silu(x):
    """fp32 `x sigmoid(x)`."""
    return x / (np.float32(1.0) + exp_f32(-x))


@jit_kernel(parallel=True, fastmath=True)
def _conv_silu_kernel(xz, weight, bias, reverse, out):
    """`out [b, L, d] = silu(bias + sum_k weight[k] * x[t - (k_max - k)])` with `x = xz[..., :d]` (`xz [b, L, 2d]`,
    `weight [k, d]`): causal, or with `reverse` anti-causal (`x[t + (k_max - k)]`, the causal conv of the reversed
    sequence, reversed back); steps outside the sequence are zeros. One task per block of `STEP_BLOCK` steps."""
    batch, length, dim = out.shape
    width = weight.shape[0]
    blocks = (length + STEP_BLOCK - 1) // STEP_BLOCK
    for task in prange(batch * blocks):
        row, block = task // blocks, task % blocks
        total = np.empty(dim, dtype=np.float32)
        for t in range(block * STEP_BLOCK, min((block + 1) * STEP_BLOCK, length)):
            for channel in range(dim):
                total[channel] = bias[channel]
            for k in range(width):
                source = t + (width - 1 - k) if reverse else t - (width - 1 - k)
                if 0 <= source < length:
                    for channel in range(dim):
                        total[channel] += weight[k, channel] * xz[row, source, channel]
            for channel in range(dim):
                out[row, t, channel] = _silu(total[channel])


@jit_kernel(parallel=True, fastmath=True)
def _scan_kernel(u, dt, dt_bias, A, BC, D, xz, reverse, accumulate, y):
    """`y [b, L, d] (+)= (C_t . h_t + D u_t) silu(z_t)` with `h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`,
    `delta_t = softplus(dt_t + dt_bias)`, from the first step (or, with `reverse`, the last) and a zero state;
    written to `y`, or with `accumulate` added to it.
    `u, dt [b, L, d]`, `A [state, d]`, `BC [b, L, 2 state]` (B then C), `D [d]`, `xz [b, L, 2d]` (z its second
    half). One task per block of `CHANNEL_BLOCK` channels of a row, its states `[state, block]` in the L1 cache."""
    batch, length, dim = u.shape
    state = A.shape[0]
    blocks = (dim + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    for task in prange(batch * blocks):
        row, block = task // blocks, task % blocks
        first = block * CHANNEL_BLOCK
        last = min(first + CHANNEL_BLOCK, dim)
        count = last - first
        # 1-D views of the block, indexed from 0: an index that cannot be negative keeps the loops vectorised
        a, bias, skip = A[:, first:last].copy(), dt_bias[first:last], D[first:last]
        h = np.zeros((state, count), dtype=np.float32)
        delta = np.empty(count, dtype=np.float32)
        drive = np.empty(count, dtype=np.float32)  # delta_t u_t
        total = np.empty(count, dtype=np.float32)
        for i in range(length):
            t = length - 1 - i if reverse else i
            dt_t, u_t = dt[row, t, first:last], u[row, t, first:last]
            z_t, y_t = xz[row, t, dim + first : dim + last], y[row, t, first:last]
            for j in range(count):
                step = _softplus(dt_t[j] + bias[j])
                delta[j] = step
                drive[j] = step * u_t[j]
                total[j] = skip[j] * u_t[j]
            for n in range(state):
                b, c = BC[row, t, n], BC[row, t, state + n]
                for j in range(count):
                    value = exp_f32(delta[j] * a[n, j]) * h[n, j] + drive[j] * b
                    h[n, j] = value
                    total[j] += value * c
            for j in range(count):
                gated = total[j] * _silu(z_t[j])
                y_t[j] = y_t[j] + gated if accumulate else gated
