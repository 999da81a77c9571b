"""Selective scans: Mamba-1 (`selective_scan`, in the layout of `mamba_ssm`'s `selective_scan_fn`) and Mamba-2
(`ssd_scan`).

Backends of `selective_scan`:
- `"reference"`: a readable sequential loop over time (the test oracle), autograd through it.
- `"chunked"`: fast pure PyTorch. Time is cut into chunks; inside a chunk the linear recurrence
  `h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t` is solved in closed form with two cumulative sums, and chunks are
  chained sequentially, so the working set is one chunk and memory is O(batch * dim * state) besides inputs and
  outputs. The backward pass is a hand-written reverse scan over the same chunks (recomputing states from the stored
  chunk-start states), not autograd through the forward. All accumulation is fp32. The closed form needs
  `exp(-cumsum(delta A))` inside a chunk; chunks are shortened wherever the decay within one would exceed
  `exp(-MAX_CHUNK_DECAY)`, so the result is exact (to fp32) for any decay and any length.
- `"numba"`: the fused CPU scan of `vtc.ssm.scan_numba` (forward and backward compiled with Numba, fp32), when
  `numba` imports and inputs are on the CPU.
- `"cuda"`: `mamba_ssm.ops.selective_scan_interface.selective_scan_fn`, when importable and inputs are on CUDA.
- `"auto"`: `"cuda"` where possible (and no `initial_state` is given, which the kernel does not take), else `"numba"`
  where possible, else `"chunked"` (the decision: `vtc.ssm.dispatch.scan_backend`).

`ssd_scan` runs `mamba_ssm`'s `mamba_chunk_scan_combined` under the same conditions (`vtc.ssm.dispatch.ssd_backend`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.ssm import dispatch

CHUNK_SIZE = 64
# Elements of one chunk's working tensors [batch, dim, state, chunk]: larger problems run in tiles of batch rows and
# channels (the scan is independent across both), which bounds memory and keeps the working set in cache.
TILE_ELEMENTS = 1 << 22
# Largest total log-decay allowed inside one chunk. Decays are taken relative to the chunk's midpoint, so factors
# stay within exp(+-60) ~ 1e26, far from fp32 overflow (3e38).
MAX_CHUNK_DECAY = 120.0


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    initial_state: Tensor | None = None,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba-1 selective scan (Gu & Dao 2023, Algorithm 2; eqs. 2a-2b with the ZOH/Euler discretisation of 4).

    Args:
        u: `[batch, dim, length]` input.
        delta: `[batch, dim, length]` time steps (before `delta_bias` / softplus).
        A: `[dim, state]` (real, normally negative).
        B, C: `[batch, state, length]` or `[batch, groups, state, length]` (dim split evenly into groups).
        D: optional `[dim]` skip connection.
        z: optional `[batch, dim, length]` gate: output multiplied by `silu(z)`.
        delta_bias: optional `[dim]` added to delta; `delta_softplus` applies softplus after it.
        return_last_state: also return the final state `[batch, dim, state]`.
        initial_state: optional `[batch, dim, state]` state before the first step (not in `mamba_ssm`'s API).
        backend: one of `vtc.ssm.BACKENDS`.

    Returns:
        `out [batch, dim, length]` in u's dtype, and `last_state [batch, dim, state]` (fp32) if asked.
    """
    batch, dim, _ = _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state)
    backend = dispatch.scan_backend(backend, u.device.type, dispatch.available_kernels(), initial_state is not None)
    if backend == "cuda":
        selective_scan_fn = dispatch.kernel("selective_scan")
        return selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

    dtype = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B = B.float() if B.dim() == 4 else B.float().unsqueeze(1)
    C = C.float() if C.dim() == 4 else C.float().unsqueeze(1)
    state = initial_state.float() if initial_state is not None else u.new_zeros(batch, dim, A.shape[1])
    D = None if D is None else D.float()
    z = None if z is None else z.float()
    if backend == "numba":  # skip and gate fused into the scan
        y, last_state = dispatch.kernel("numba_scan")(u, delta, A, B, C, state, D, z)
    else:
        scan = _scan_reference if backend == "reference" else _scan_chunked_tiles
        y, last_state = scan(u, delta, A, B, C, state)
        if D is not None:
            y = y + u * D[:, None]
        if z is not None:
            y = y * F.silu(z)
    y = y.to(dtype)
    return (y, last_state) if return_last_state else y


def _scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """Sequential loop (the oracle): `h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`, `y_t = C_t . h_t`."""
    dim, length = u.shape[1:]
    groups = B.shape[1]
    B = B.repeat_interleave(dim // groups, dim=1)  # [batch, dim, state, length]
    C = C.repeat_interleave(dim // groups, dim=1)
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)
        state = decay * state + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, :, :, t]
        outputs.append((state * C[:, :, :, t]).sum(-1))
    return torch.stack(outputs, dim=-1), state


def cuda_kernel_available() -> bool:
    """True when `mamba_ssm`'s fused selective-scan kernel imports."""
    return dispatch.kernel("selective_scan") is not None


def _check_scan_shapes(u, delta, A, B, C, D, z, delta_bias, initial_state) -> tuple[int, int, int]:
    if u.dim() != 3:
        raise ValueError(f"u must be [batch, dim, length], got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if length == 0:
        raise ValueError("u has length 0; a scan needs at least one step")
    expected = {"delta": (delta, (batch, dim, length)), "A": (A, (dim, A.shape[-1] if A.dim() == 2 else -1))}
    if z is not None:
        expected["z"] = (z, (batch, dim, length))
    for name, vector in (("D", D), ("delta_bias", delta_bias)):
        if vector is not None:
            expected[name] = (vector, (dim,))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    state = A.shape[1]
    for name, tensor in (("B", B), ("C", C)):
        if tensor.dim() == 3 and tuple(tensor.shape) == (batch, state, length):
            continue
        if tensor.dim() == 4 and tensor.shape[0] == batch and tuple(tensor.shape[2:]) == (state, length):
            if dim % tensor.shape[1]:
                raise ValueError(f"{name} has {tensor.shape[1]} groups, which do not divide dim={dim}")
            continue
        raise ValueError(
            f"{name} must be [batch={batch}, state={state}, length={length}] or [batch, groups, state, length], "
            f"got {tuple(tensor.shape)}"
        )
    if initial_state is not None and tuple(initial_state.shape) != (batch, dim, state):
        raise ValueError(f"initial_state must be [{batch}, {dim}, {state}], got {tuple(initial_state.shape)}")
    return batch, dim, length


# ---------------------------------------------------------------------------------------- chunked backend


def _chunk_bounds(delta: Tensor, A: Tensor, chunk_size: int) -> list[tuple[int, int]]:
    """Split [0, length) into chunks of at most `chunk_size` steps whose log-decay `sum_t delta_t |A|` stays below
    `MAX_CHUNK_DECAY` for every channel and state; with ordinary Mamba parameters every chunk has the full size, and a
    single step may exceed the limit (such one-step chunks use the direct recurrence)."""
    length = delta.shape[-1]
    worst_rate = A.abs().amax(dim=1)[:, None]  # [dim, 1]
    whole = length // chunk_size * chunk_size
    chunk_sums = [delta[..., :whole].unflatten(-1, (-1, chunk_size)).sum(-1)] if whole else []
    chunk_sums += [delta[..., whole:].sum(-1, keepdim=True)] if whole < length else []
    if bool((torch.cat(chunk_sums, dim=-1).amax(dim=0) * worst_rate <= MAX_CHUNK_DECAY).all()):
        return [(start, min(start + chunk_size, length)) for start in range(0, length, chunk_size)]
    # Cumulative worst log-decay per (batch, channel), float64 so that differences stay exact on long sequences.
    worst = F.pad(delta.double().cumsum(-1) * worst_rate.double(), (1, 0))
    bounds, start = [], 0
    while start < length:
        window = worst[..., start + 1 : min(start + chunk_size, length) + 1] - worst[..., start : start + 1]
        within = int((window.amax(dim=(0, 1)) <= MAX_CHUNK_DECAY).sum())  # non-decreasing, so a prefix count
        end = start + max(within, 1)
        bounds.append((start, end))
        start = end
    return bounds


def _split_chunks(tensor: Tensor, bounds: list[tuple[int, int]]) -> list[Tensor]:
    """Contiguous copies of `tensor [..., length]` cut along time at `bounds`.

    Slicing a chunk out of a long sequence gives rows thousands of elements apart, and every operation on such a
    view pays for it (TLB misses: it took a third of the forward time); one copy up front makes each chunk one dense
    block. Regular bounds (the common case) take one strided copy of the whole tensor.
    """
    size, length = bounds[0][1], tensor.shape[-1]
    regular = [(start, min(start + size, length)) for start in range(0, length, size)]
    if bounds != regular:  # e.g. (0, 30), (30, 65): same starts as size 30, but one chunk fewer
        return [tensor[..., start:end].contiguous() for start, end in bounds]
    whole = length // size * size
    chunks = list(tensor[..., :whole].unflatten(-1, (-1, size)).movedim(-2, 0).contiguous().unbind(0))
    return chunks + ([tensor[..., whole:].contiguous()] if whole < length else [])


class _Workspace:
    """Chunk-sized buffers reused from chunk to chunk. A fresh multi-megabyte tensor for every step of the formula
    costs page faults on every chunk (the C allocator hands large blocks back to the system), which took about a
    third of the forward time on CPU."""

    def __init__(self, like: Tensor) -> None:
        self.like = like
        self.buffers: dict[tuple[str, tuple[int, ...]], Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> Tensor:
        key = (name, tuple(shape))
        if key not in self.buffers:
            self.buffers[key] = self.like.new_empty(shape)
        return self.buffers[key]


def _chunk_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, workspace: _Workspace) -> tuple[Tensor, Tensor]:
    """`A [g, dg, n, 1]` and `x = delta B u [b, g, dg, n, T]` (in the workspace) of one chunk from its contiguous
    `u, delta [b, g, dg, T]` and `B [b, g, 1, n, T]`."""
    groups, per_group = u.shape[1], u.shape[2]
    shape = (*u.shape[:3], A.shape[1], u.shape[3])
    return A.view(groups, per_group, -1, 1), torch.mul((delta * u).unsqueeze(3), B, out=workspace.get("x", shape))


def _chunk_decay(delta: Tensor, A: Tensor, workspace: _Workspace) -> tuple[Tensor, Tensor]:
    """Decays of one chunk relative to its midpoint: `exp(A (cumsum(delta)_t - m))` `[b, g, dg, n, T]` and
    `exp(A m)` `[b, g, dg, n]`, with `m` half the chunk's total `delta`.

    A does not depend on time, so the cumulative log-decay is one cumulative sum over `[b, g, dg, T]` times A.
    Centring on the midpoint keeps both the decay and its inverse within `exp(+-MAX_CHUNK_DECAY / 2)`.
    """
    cumulative = delta.cumsum(dim=-1)
    middle = cumulative[..., -1:] / 2
    shape = (*delta.shape[:3], A.shape[2], delta.shape[3])
    decay = torch.mul((cumulative - middle).unsqueeze(3), A, out=workspace.get("decay", shape)).exp_()
    return decay, (middle.unsqueeze(3) * A).squeeze(-1).exp_()


def _chunk_states(x: Tensor, h0: Tensor, decays: tuple[Tensor, Tensor], workspace: _Workspace) -> Tensor:
    """All states of one chunk, `h_t = exp(delta_t A) h_{t-1} + x_t`, in closed form from `h0` (eq. 2a):
    `h_t = d_t (exp(A m) h0 + sum_{s<=t} x_s / d_s)` with `d_t = exp(A (cumsum(delta)_t - m))`.

    Overwrites `x`; the states live in the workspace until the next chunk.
    """
    decay, offset = decays
    start = (offset * h0).unsqueeze(-1)
    if x.shape[-1] == 1:
        return x.addcmul_(decay, start)
    states = torch.cumsum(x.div_(decay), dim=-1, out=workspace.get("states", x.shape))
    return states.add_(start).mul_(decay)


def _chunk_adjoints(source: Tensor, carry: Tensor, decays: tuple[Tensor, Tensor]) -> Tensor:
    """Reverse scan `g_t = source_t + exp(delta_{t+1} A) g_{t+1}`, with `g_{T-1} = source_{T-1} + carry`:
    `g_t = (sum_{s>=t} d_s source_s + d_{T-1} carry) / d_t` (the midpoint cancels). Overwrites `source`.
    """
    if source.shape[-1] == 1:
        return source.add_(carry.unsqueeze(-1))
    decay = decays[0]
    tail = source.mul_(decay).flip(-1).cumsum(dim=-1).flip(-1)
    return tail.add_((decay[..., -1] * carry).unsqueeze(-1)).div_(decay)


def _scan_chunked_tiles(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor):
    """`_ChunkedScan` over tiles of batch rows and of channels within each group, each tile's chunk working set at
    most `TILE_ELEMENTS` (one channel per group at the least); outputs reassembled in the input layout."""
    batch, dim, _ = u.shape
    groups, state_size = B.shape[1], A.shape[1]
    per_group = dim // groups
    per_channel = groups * state_size * CHUNK_SIZE  # one channel of every group, one batch row
    channels = min(per_group, max(1, TILE_ELEMENTS // per_channel))
    rows = max(1, TILE_ELEMENTS // (per_channel * channels)) if channels == per_group else 1
    if rows >= batch and channels == per_group:
        return _ChunkedScan.apply(u, delta, A, B, C, state)

    def channel_tile(tensor: Tensor, first: int, last: int) -> Tensor:  # [b, dim, ...] -> [b, groups*(last-first), ...]
        return tensor.unflatten(1, (groups, per_group))[:, :, first:last].flatten(1, 2)

    row_outputs, row_states = [], []
    for row in range(0, batch, rows):
        rows_slice = slice(row, row + rows)
        pieces = [
            _ChunkedScan.apply(
                channel_tile(u[rows_slice], first, first + channels),
                channel_tile(delta[rows_slice], first, first + channels),
                A.unflatten(0, (groups, per_group))[:, first : first + channels].flatten(0, 1),
                B[rows_slice],
                C[rows_slice],
                channel_tile(state[rows_slice], first, first + channels),
            )
            for first in range(0, per_group, channels)
        ]
        row_outputs.append(torch.cat([y.unflatten(1, (groups, -1)) for y, _ in pieces], dim=2).flatten(1, 2))
        row_states.append(torch.cat([h.unflatten(1, (groups, -1)) for _, h in pieces], dim=2).flatten(1, 2))
    return torch.cat(row_outputs), torch.cat(row_states)


class _ChunkedScan(torch.autograd.Function):
    """Core scan `y = C . h` without D / z / bias (those stay in autograd). Inputs fp32, B and C 4-D."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0):
        batch, dim, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        bounds = _chunk_bounds(delta, A, CHUNK_SIZE)
        chunks = _grouped_chunks(u, delta, B, C, groups, bounds)
        outputs, starts = [], []
        h = h0.reshape(batch, groups, dim // groups, state)
        workspace = _Workspace(u)
        for u_c, delta_c, B_c, C_c in zip(*chunks, strict=True):
            starts.append(h)
            A_c, x = _chunk_inputs(u_c, delta_c, A, B_c, workspace)
            states = _chunk_states(x, h, _chunk_decay(delta_c, A_c, workspace), workspace)
            h = states[..., -1].clone()
            outputs.append(torch.mul(states, C_c, out=workspace.get("product", states.shape)).sum(-2))
        ctx.bounds = bounds
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts))
        return torch.cat(outputs, dim=-1).reshape(batch, dim, length), h.reshape(batch, dim, state)

    @staticmethod
    def backward(ctx, grad_y, grad_last):
        u, delta, A, B, C, starts = ctx.saved_tensors
        batch, dim, length = u.shape
        groups, state = B.shape[1], A.shape[1]
        chunks = _grouped_chunks(u, delta, B, C, groups, ctx.bounds)
        grad_y_chunks = _split_chunks(grad_y.float().reshape(batch, groups, dim // groups, length), ctx.bounds)
        grads = {name: [] for name in ("u", "delta", "B", "C")}
        grad_A = torch.zeros(groups, dim // groups, state, device=u.device)
        carry = grad_last.float().reshape(batch, groups, dim // groups, state)
        workspace = _Workspace(u)
        for index in reversed(range(len(ctx.bounds))):
            u_c, delta_c, B_c, C_c = (tensors[index] for tensors in chunks)
            A_c, x = _chunk_inputs(u_c, delta_c, A, B_c, workspace)
            decays = _chunk_decay(delta_c, A_c, workspace)
            states = _chunk_states(x, starts[index], decays, workspace)
            dy = grad_y_chunks[index].unsqueeze(3)  # [b, g, dg, 1, T]
            shape = states.shape

            def product(a: Tensor, b: Tensor, shape=shape) -> Tensor:
                return torch.mul(a, b, out=workspace.get("product", shape))

            grads["C"].append(product(states, dy).sum(2))
            adjoint = _chunk_adjoints(torch.mul(C_c, dy, out=workspace.get("source", shape)), carry, decays)
            grad_delta_u = product(adjoint, B_c).sum(-2)  # dL/d(delta_t u_t)
            grads["B"].append(product(adjoint, (delta_c * u_c).unsqueeze(3)).sum(2))
            step_decay = torch.mul(delta_c.unsqueeze(3), A_c, out=workspace.get("step", shape)).exp_()  # exp(delta_t A)
            previous = torch.cat(  # h_{t-1}
                [starts[index].unsqueeze(-1), states[..., :-1]], dim=-1, out=workspace.get("previous", shape)
            )
            grad_log_decay = previous.mul_(step_decay).mul_(adjoint)  # dL/d(delta_t A) = g_t exp(delta_t A) h_{t-1}
            grad_A += product(grad_log_decay, delta_c.unsqueeze(3)).sum(dim=(0, -1))
            grads["delta"].append(product(grad_log_decay, A_c).sum(-2) + grad_delta_u * u_c)
            grads["u"].append(grad_delta_u * delta_c)
            carry = step_decay[..., 0] * adjoint[..., 0]
        grad_u, grad_delta, grad_B, grad_C = (torch.cat(grads[name][::-1], dim=-1) for name in grads)
        return (
            grad_u.reshape(batch, dim, length),
            grad_delta.reshape(batch, dim, length),
            grad_A.reshape(dim, state),
            grad_B,
            grad_C,
            carry.reshape(batch, dim, state),
        )


def _grouped_chunks(u, delta, B, C, groups: int, bounds) -> tuple[list[Tensor], ...]:
    """Contiguous chunks `u, delta [b, g, dg, T]` and `B, C [b, g, 1, n, T]` of the scan inputs."""
    batch, dim, length = u.shape
    grouped = (batch, groups, dim // groups, length)
    return (
        _split_chunks(u.reshape(grouped), bounds),
        _split_chunks(delta.reshape(grouped), bounds),
        _split_chunks(B.unsqueeze(2), bounds),
        _split_chunks(C.unsqueeze(2), bounds),
    )


# ------------------------------------------------------------------------------------------- Mamba-2 (SSD)


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int = 64,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_last_state: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba-2 state-space duality scan, chunked (Dao & Gu 2024, Section 6 / Listing 1), scalar A per head.

    `h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T`, `y_t = h_t C_t (+ D x_t)`, computed as quadratic attention-like
    products inside chunks and a linear recurrence between chunks.

    Args:
        x: `[batch, length, heads, head_dim]`.
        dt: `[batch, length, heads]` time steps (already biased, softplus'ed and clamped).
        A: `[heads]` (negative).
        B, C: `[batch, length, groups, state]`, heads split evenly into groups.
        D: optional `[heads]` or `[heads, head_dim]` skip.
        initial_state: optional `[batch, heads, head_dim, state]`.
        backend: "chunked" (this PyTorch code), "cuda" (`mamba_ssm`'s `mamba_chunk_scan_combined`) or "auto" (the
            kernel on CUDA tensors where it imports).

    Returns:
        `y [batch, length, heads, head_dim]` (x's dtype) and, if asked, the last state
        `[batch, heads, head_dim, state]`.
    """
    batch, length, heads, head_dim = x.shape
    groups, state = B.shape[2], B.shape[3]
    if heads % groups:
        raise ValueError(f"{groups} groups do not divide {heads} heads")
    if dispatch.ssd_backend(backend, x.device.type, dispatch.available_kernels()) == "cuda":
        return dispatch.kernel("ssd")(
            x, dt, A, B, C, chunk_size, D=D, initial_states=initial_state, return_final_states=return_last_state
        )
    dtype = x.dtype
    padding = (-length) % chunk_size
    chunks = (length + padding) // chunk_size

    def to_chunks(tensor: Tensor) -> Tensor:
        tensor = F.pad(tensor, (0, 0) * (tensor.dim() - 2) + (0, padding))
        return tensor.reshape(batch, chunks, chunk_size, *tensor.shape[2:])

    x_dt = to_chunks(x.float() * dt.float().unsqueeze(-1))  # [b, c, T, h, p]
    log_decay = to_chunks(dt.float() * A.float()).permute(0, 3, 1, 2)  # [b, h, c, T]
    B = to_chunks(B.float().repeat_interleave(heads // groups, dim=2))  # [b, c, T, h, n]
    C = to_chunks(C.float().repeat_interleave(heads // groups, dim=2))
    cumulative = log_decay.cumsum(dim=-1)  # [b, h, c, T]

    # 1. Within chunks: y_t = sum_{s<=t} C_t . B_s exp(cum_t - cum_s) x_s dt_s (the "diagonal blocks").
    segment = cumulative.unsqueeze(-1) - cumulative.unsqueeze(-2)  # [b, h, c, T(t), T(s)]
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=x.device).tril()
    weights = segment.masked_fill(~causal, float("-inf")).exp()
    y = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, weights, x_dt)

    # 2. State at each chunk's end from its own inputs, then the recurrence between chunks.
    decay_to_end = (cumulative[..., -1:] - cumulative).exp()  # [b, h, c, T]
    chunk_states = torch.einsum("bcshn,bhcs,bcshp->bchpn", B, decay_to_end, x_dt)
    chunk_decay = cumulative[..., -1].exp()  # [b, h, c]
    h = (
        x.new_zeros(batch, heads, head_dim, state, dtype=torch.float32)
        if initial_state is None
        else (initial_state.float())
    )
    starts = []
    for chunk in range(chunks):
        starts.append(h)
        h = chunk_decay[:, :, chunk, None, None] * h + chunk_states[:, chunk]
    start_states = torch.stack(starts, dim=1)  # [b, c, h, p, n]

    # 3. Contribution of each chunk's start state to its outputs.
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, start_states, cumulative.exp())
    y = y.reshape(batch, chunks * chunk_size, heads, head_dim)[:, :length]
    if D is not None:
        y = y + x.float() * (D.float() if D.dim() == 2 else D.float()[:, None])
    y = y.to(dtype)
    return (y, h) if return_last_state else y
