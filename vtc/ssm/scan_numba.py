"""Fused CPU selective scan (backend `"numba"` of `vtc.ssm.selective_scan`): the Mamba-1 recurrence compiled with
Numba, one pass over time per (batch row, channel) with the channel's state `[state]` held in fp32 registers,
parallel over rows and channels. Imports only where `numba` does (`pip install vtc[fast]`); `vtc.ssm.dispatch` then
takes it for "auto" on CPU, and the chunked PyTorch scan otherwise.

Forward: `h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`, `y_t = (C_t . h_t + D u_t) silu(z_t)` (Gu & Dao 2023,
eqs. 2a-2b, with the skip and the gate of the mixer fused as in `mamba_ssm`), keeping the state every `CHECKPOINT`
steps when a gradient is wanted. Backward: a reverse scan of the adjoint `g_t = C_t dy'_t + exp(delta_{t+1} A) g_{t+1}`
(`dy'` the gradient before the gate) over the same blocks, each block's states and decays recomputed forward from its
checkpoint into a block-sized buffer. Everything is fp32; `exp` is a vectorisable fp32 polynomial (Cephes `expf`,
within 2 ulp), since a call to the C library's `expf` per step and state would keep the loop scalar. u, delta, z and
the output gradient are read with unit stride in time: a view whose steps are strided (the mixer's delta and z are
transposed views) is copied first, since a strided read per step costs more than the copy (1.05 s against 0.53 s
plus ~0.15 s of copies for one scan of 2,048 channels x 17k steps; the kernels still take any strides).

Numba compiles the kernels at their first call (about 10 s each for forward and backward on two cores) and caches the
machine code beside this file, or in the user's cache folder where that is read-only (`cache=True`; where neither is
writable, every process compiles). The arguments always have the same types (fp32 arrays of fixed dimensions, strided
inputs as flat memory), so each kernel compiles once.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

# Steps between the states that the forward pass keeps for the backward pass: [batch, dim, length / 64, state] fp32,
# 1/4 of the size of u at state 16, and a block's recomputed states and decays stay in the L1 cache.
CHECKPOINT = 64


def numba_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor, D: Tensor | None, z: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Selective scan with the skip `D u` and the gate `silu(z)`, differentiable in every input (delta_bias and
    softplus stay in autograd, before it).

    Args:
        u, delta: `[batch, dim, length]` fp32, any strides (delta after bias and softplus).
        A: `[dim, state]` fp32.
        B, C: `[batch, groups, state, length]` fp32, dim split evenly into groups.
        state: `[batch, dim, state]` fp32 state before the first step.
        D: optional `[dim]` fp32 skip.
        z: optional `[batch, dim, length]` fp32 gate, any strides.

    Returns:
        `y [batch, dim, length]` and the last state `[batch, dim, state]`, fp32.
    """
    D = u.new_zeros(u.shape[1]) if D is None else D
    u, delta, z = (None if tensor is None else _steps_contiguous(tensor) for tensor in (u, delta, z))
    inputs = (u, delta, A, B, C, state, D, z)
    if torch.is_grad_enabled() and any(tensor is not None and tensor.requires_grad for tensor in inputs):
        return _NumbaScan.apply(*inputs)
    y, last, _ = _forward(*inputs, keep_checkpoints=False)
    return y, last


def _steps_contiguous(tensor: Tensor) -> Tensor:
    """`tensor [..., L]` itself when its steps are adjacent in memory, else a contiguous copy."""
    return tensor if tensor.stride(-1) == 1 else tensor.contiguous()


def use_torch_threads() -> int:
    """Numba's worker threads for the next kernel: as many as torch uses (`torch.set_num_threads`), within the pool
    Numba started with."""
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    return threads


def _arrays(*tensors: Tensor) -> list[np.ndarray]:
    """C-contiguous NumPy views (copies only where a tensor is not contiguous) of fp32 tensors."""
    return [tensor.detach().contiguous().numpy() for tensor in tensors]


def _strided(tensor: Tensor | None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A 3-D fp32 tensor as the 1-D NumPy view of the memory it spans (no copy) and its strides in elements, so that
    the kernels take any layout with one compiled signature; None as one zero with zero strides."""
    if tensor is None:
        return np.zeros(1, dtype=np.float32), (0, 0, 0)
    span = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return tensor.detach().as_strided((span if tensor.numel() else 0,), (1,)).numpy(), tensor.stride()


def _forward(u, delta, A, B, C, state, D, z, keep_checkpoints: bool) -> tuple[Tensor, Tensor, Tensor]:
    """`y [b, d, L]`, the last state `[b, d, n]`, and the kept states `[b, d, ceil(L / CHECKPOINT), n]` (empty
    along time when not kept)."""
    batch, dim, length = u.shape
    blocks = -(-length // CHECKPOINT) if keep_checkpoints else 0
    y, last = u.new_empty(batch, dim, length), u.new_empty(batch, dim, A.shape[1])
    checkpoints = u.new_empty(batch, dim, blocks, A.shape[1])
    use_torch_threads()
    _forward_kernel(
        *_strided(u),
        *_strided(delta),
        *_strided(z),
        z is not None,
        *_arrays(A, B.transpose(-1, -2), C.transpose(-1, -2), D, state),
        y.numpy(),
        last.numpy(),
        checkpoints.numpy(),
    )
    return y, last, checkpoints


class _NumbaScan(torch.autograd.Function):
    """`numba_scan` with its hand-written backward (inputs fp32, B and C 4-D, D given)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0, D, z):
        y, last, checkpoints = _forward(u, delta, A, B, C, h0, D, z, keep_checkpoints=True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, checkpoints)
        return y, last

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u, delta, A, B, C, D, z, checkpoints = ctx.saved_tensors
        batch, dim, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        # B and C are shared by the channels of a group: each of `pieces` channel ranges per (row, group) sums its
        # gradient into its own buffer, so that a thread per piece has work when batch * groups < threads.
        pieces = min(dim // groups, -(-use_torch_threads() // (batch * groups)))
        grad_B = u.new_zeros(pieces, batch, groups, length, state)
        grad_C = u.new_zeros(pieces, batch, groups, length, state)
        grad_u, grad_delta = u.new_empty(u.shape), u.new_empty(u.shape)
        grad_z = u.new_empty(u.shape if z is not None else (1, 1, 1))
        grad_A, grad_D = u.new_empty(batch, dim, state), u.new_empty(batch, dim)  # per row, summed below
        adjoint = grad_last.float().clone(memory_format=torch.contiguous_format)  # becomes dL/dh0 in place
        _backward_kernel(
            *_strided(u),
            *_strided(delta),
            *_strided(z),
            z is not None,
            *_strided(_steps_contiguous(grad_y.float())),
            *_arrays(A, B.transpose(-1, -2), C.transpose(-1, -2), D, checkpoints),
            adjoint.numpy(),
            grad_u.numpy(),
            grad_delta.numpy(),
            grad_z.numpy(),
            grad_A.numpy(),
            grad_D.numpy(),
            grad_B.numpy(),
            grad_C.numpy(),
        )
        return (
            grad_u,
            grad_delta,
            grad_A.sum(0),
            grad_B.sum(0).transpose(-1, -2),
            grad_C.sum(0).transpose(-1, -2),
            adjoint,
            grad_D.sum(0),
            grad_z if z is not None else None,
        )


# ------------------------------------------------------------------------------------------------ kernels


def jit_kernel(**options):
    """`numba.njit(**options)` with the on-disk cache of compiled code, or without it where neither the package's
    `__pycache__` nor the user's cache folder is writable (Numba refuses `cache=True` there when decorating)."""

    def decorate(function):
        try:
            return njit(cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available": compile in every process
            return njit(**options)(function)

    return decorate


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bits are the int32 `bits`."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.int32), codegen


@jit_kernel(fastmath=True, inline="always")
def exp_f32(x):
    """fp32 `exp(x)` (Cephes `expf`): `2^k exp(r)` with `k = round(x / ln 2)`, `|r| <= ln(2) / 2`, a degree-7
    polynomial for `exp(r)`, and `2^k` built from its exponent bits. `x` is clamped to [-87.3, 88.3], the range of
    normal fp32 results."""
    x = min(max(x, np.float32(-87.3)), np.float32(88.3))
    k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)  # x - k ln 2, in two parts
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))


@jit_kernel(inline="always")
def _at(strides, row, channel):
    """(offset of step 0, stride of a step) of (row, channel) in a flat `[b, d, L]` array of `strides`."""
    return row * strides[0] + channel * strides[1], strides[2]


@jit_kernel(fastmath=True, inline="always")
def silu_parts(z):
    """`(silu(z), d silu / dz)` of a scalar."""
    sigmoid = np.float32(1.0) / (np.float32(1.0) + exp_f32(-z))
    return z * sigmoid, sigmoid * (np.float32(1.0) + z * (np.float32(1.0) - sigmoid))


@jit_kernel(fastmath=True, inline="always")
def _forward_channel(u, u_at, delta, delta_at, z, z_at, gated, a, B, C, skip, h, y, checkpoints):
    """One channel: step t's u, delta and z at `u[u_at[0] + t * u_at[1]]` and alike, `y [L]`, `a, h [n]` (h: the
    state, updated in place), `B, C [L, n]`, `skip` its D, `checkpoints [blocks, n]` (the state before every
    `CHECKPOINT`-th step; none when blocks is 0)."""
    length, state = B.shape
    keep = checkpoints.shape[0] > 0
    for t in range(length):
        if keep and t % CHECKPOINT == 0:
            checkpoints[t // CHECKPOINT] = h
        step, value = delta[delta_at[0] + t * delta_at[1]], u[u_at[0] + t * u_at[1]]
        input_step = step * value
        output = np.float32(0.0)
        for n in range(state):
            decayed = exp_f32(step * a[n]) * h[n] + input_step * B[t, n]
            h[n] = decayed
            output += C[t, n] * decayed
        output += skip * value
        if gated:
            output *= silu_parts(z[z_at[0] + t * z_at[1]])[0]
        y[t] = output


@jit_kernel(parallel=True, fastmath=True)
def _forward_kernel(u, u_strides, delta, delta_strides, z, z_strides, gated, A, B, C, D, h0, y, last, checkpoints):
    """u, delta, z `[b, d, L]` as flat memory and element strides (`_strided`), `A [d, n]`, `B, C [b, g, L, n]`,
    `D [d]`, `h0, last [b, d, n]`, `y [b, d, L]`, `checkpoints [b, d, blocks, n]`; one task per (row, channel)."""
    batch, dim, _ = y.shape
    per_group = dim // B.shape[1]
    for item in prange(batch * dim):
        row, channel = item // dim, item % dim
        group = channel // per_group
        h = h0[row, channel].copy()
        _forward_channel(
            u, _at(u_strides, row, channel), delta, _at(delta_strides, row, channel), z, _at(z_strides, row, channel),
            gated, A[channel].copy(), B[row, group], C[row, group], D[channel], h, y[row, channel],
            checkpoints[row, channel],
        )  # fmt: skip
        last[row, channel] = h


@jit_kernel(fastmath=True, inline="always")
def _backward_channel(
    u, u_at, delta, delta_at, z, z_at, gated, dy, dy_at, a, B, C, skip, checkpoints, adjoint,
    grad_u, grad_delta, grad_z, grad_a, grad_B, grad_C,
):  # fmt: skip
    """One channel, blocks of `CHECKPOINT` steps from the last: u, delta, z, dy at `_at` offsets (see
    `_forward_channel`), `grad_u, grad_delta, grad_z [L]`, `a, grad_a [n]`, `B, C [L, n]`, `checkpoints [blocks, n]`;
    `adjoint [n]` enters as dL/dh_{L-1} and leaves as dL/dh0; `grad_B, grad_C [L, n]` are added to (shared by the
    channels of a group). Returns dL/dD of the channel."""
    length, state = B.shape
    states = np.empty((CHECKPOINT + 1, state), dtype=np.float32)  # h_{t-1} of the block's steps, then its last
    decays = np.empty((CHECKPOINT, state), dtype=np.float32)
    grad_skip = np.float32(0.0)
    for block in range(checkpoints.shape[0] - 1, -1, -1):
        start = block * CHECKPOINT
        end = min(start + CHECKPOINT, length)
        states[0] = checkpoints[block]
        for t in range(start, end):
            i = t - start
            step = delta[delta_at[0] + t * delta_at[1]]
            input_step = step * u[u_at[0] + t * u_at[1]]
            for n in range(state):
                decay = exp_f32(step * a[n])
                decays[i, n] = decay
                states[i + 1, n] = decay * states[i, n] + input_step * B[t, n]
        for t in range(end - 1, start - 1, -1):
            i = t - start
            step, value = delta[delta_at[0] + t * delta_at[1]], u[u_at[0] + t * u_at[1]]
            grad_y = dy[dy_at[0] + t * dy_at[1]]
            if gated:  # y = (C . h + D u) silu(z): dL/dz, and the gradient before the gate
                gate, gate_slope = silu_parts(z[z_at[0] + t * z_at[1]])
                output = skip * value
                for n in range(state):
                    output += C[t, n] * states[i + 1, n]
                grad_z[t] = grad_y * output * gate_slope
                grad_y *= gate
            grad_skip += grad_y * value
            grad_input_step = np.float32(0.0)  # dL/d(delta_t u_t)
            grad_log_decay = np.float32(0.0)  # sum_n dL/d(delta_t a_n) a_n
            for n in range(state):
                g = C[t, n] * grad_y + adjoint[n]  # dL/dh_t
                grad_C[t, n] += grad_y * states[i + 1, n]
                grad_B[t, n] += g * step * value
                grad_input_step += g * B[t, n]
                grad_exponent = g * decays[i, n] * states[i, n]  # dL/d(delta_t a_n)
                grad_log_decay += grad_exponent * a[n]
                grad_a[n] += grad_exponent * step
                adjoint[n] = decays[i, n] * g
            grad_u[t] = grad_input_step * step + grad_y * skip
            grad_delta[t] = grad_input_step * value + grad_log_decay
    return grad_skip


@jit_kernel(parallel=True, fastmath=True)
def _backward_kernel(
    u, u_strides, delta, delta_strides, z, z_strides, gated, dy, dy_strides, A, B, C, D, checkpoints, adjoint,
    grad_u, grad_delta, grad_z, grad_A, grad_D, grad_B, grad_C,
):  # fmt: skip
    """u, delta, z, dy `[b, d, L]` as flat memory and element strides (`_strided`), `A [d, n]`, `B, C [b, g, L, n]`,
    `D [d]`, `checkpoints [b, d, blocks, n]`, `adjoint [b, d, n]` (in place, see `_backward_channel`),
    `grad_u, grad_delta, grad_z [b, d, L]` (grad_z [1, 1, 1] when not gated), `grad_A [b, d, n]` and `grad_D [b, d]` per
    row, `grad_B, grad_C [pieces, b, g, L, n]` zeroed; one task per (row, group, piece of the group's channels)."""
    batch, dim, _ = grad_u.shape
    pieces, groups = grad_B.shape[0], B.shape[1]
    per_group = dim // groups
    for task in prange(batch * groups * pieces):
        piece = task % pieces
        row, group = task // pieces // groups, task // pieces % groups
        first = group * per_group + piece * per_group // pieces
        last = group * per_group + (piece + 1) * per_group // pieces
        for channel in range(first, last):
            carried = adjoint[row, channel].copy()
            grad_a = np.zeros(A.shape[1], dtype=np.float32)
            grad_D[row, channel] = _backward_channel(
                u, _at(u_strides, row, channel), delta, _at(delta_strides, row, channel), z,
                _at(z_strides, row, channel), gated, dy, _at(dy_strides, row, channel), A[channel].copy(),
                B[row, group], C[row, group], D[channel], checkpoints[row, channel], carried, grad_u[row, channel],
                grad_delta[row, channel], grad_z[row, channel] if gated else grad_z[0, 0], grad_a,
                grad_B[piece, row, group], grad_C[piece, row, group],
            )  # fmt: skip
            adjoint[row, channel] = carried
            grad_A[row, channel] = grad_a
