"""Mamba mixers and blocks.

`Mamba` and `Mamba2` use the parameter names and shapes of Hugging Face's `MambaMixer` / `Mamba2Mixer` (and of
`mamba_ssm`'s `Mamba`), so their state dicts load with `strict=True`. Both can carry a recurrent state between calls
(`forward_with_state`), which gives streaming with memory constant in the number of steps; `step` is the one-token case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtc.ssm import dispatch
from vtc.ssm.scan import selective_scan, ssd_scan
from vtc.utils.checks import check_float, check_int


@dataclass
class MambaState:
    """Recurrent state of a mixer: the last `d_conv - 1` conv inputs `[B, C, d_conv - 1]` and the SSM state."""

    conv: Tensor
    ssm: Tensor


@dataclass
class MixerOutput:
    """`hidden [B, L, d_model]`, the state after the last step, and delta-time `[B, L, d_inner or heads]`."""

    hidden: Tensor
    state: MambaState
    delta: Tensor


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019) over the last dim; `[..., D] -> [..., D]`."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """`[..., D] -> [..., D]`."""
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


def _last_inputs(x: Tensor, width: int) -> Tensor:
    """The last `width` steps of `x [B, C, L]`, zeros before the first step -> `[B, C, width]` (the conv's tail)."""
    tail = x[..., max(x.shape[-1] - width, 0) :]
    return F.pad(tail, (width - tail.shape[-1], 0)) if tail.shape[-1] < width else tail.contiguous()


def _conv_silu(x: Tensor, conv: nn.Conv1d, previous: Tensor | None, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """`silu(causal depthwise conv)` of `x [B, C, L]` after `previous [B, C, k-1]` inputs (zeros when None, a fresh
    state) -> `([B, C, L], new tail [B, C, k-1])`; a fresh state on CUDA runs `causal_conv1d_fn` where it imports
    and `backend` allows it (`vtc.ssm.dispatch.use_conv_kernel`). On the PyTorch path the padded input is one
    contiguous copy, which the conv needs (on a strided view it is ~4x slower), and the tail is cut from it."""
    width = conv.kernel_size[0] - 1
    if dispatch.use_conv_kernel(backend, x.device.type, dispatch.available_kernels(), previous is not None):
        # a contiguous [B, C, L]: the kernel's channel-last path (a slice of in_proj's output) needs C % 8 == 0
        out = dispatch.kernel("causal_conv1d")(x.contiguous(), conv.weight.squeeze(1), conv.bias, activation="silu")
        return out, _last_inputs(x, width)
    padded = F.pad(x, (width, 0)) if previous is None else torch.cat([previous.to(x.dtype), x], dim=-1)
    out = F.conv1d(padded, conv.weight, conv.bias, groups=conv.groups)
    return F.silu(out), _last_inputs(padded, width)


def _init_dt_bias(size: int, dt_min: float, dt_max: float, dt_floor: float) -> Tensor:
    """Bias whose softplus is log-uniform in [dt_min, dt_max] (Mamba's dt initialisation)."""
    dt = torch.exp(torch.rand(size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_floor)
    return dt + torch.log(-torch.expm1(-dt))  # inverse softplus


def _check_sizes(d_model: int, d_state: int, d_conv: int, expand: int, dt_init: tuple[float, float, float]) -> None:
    """Refuse non-int or non-positive sizes and a dt initialisation that is not `0 < dt_min <= dt_max`, `floor > 0`."""
    for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
        check_int(name, value)
    dt_min, dt_max, dt_init_floor = dt_init
    check_float("dt_max", dt_max, 0, include_low=False)
    check_float("dt_min", dt_min, 0, dt_max, include_low=False)
    check_float("dt_init_floor", dt_init_floor, 0, include_low=False)


def _ssm_parameters(d_inner: int, d_state: int, d_conv: int, dt_rank: int, conv_bias: bool, dt_init: tuple) -> dict:
    """Fresh parameters of the selective SSM of a Mamba-1 mixer, keyed by their HF / mamba_ssm names."""
    dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
    nn.init.uniform_(dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
    with torch.no_grad():
        dt_proj.bias.copy_(_init_dt_bias(d_inner, *dt_init))
    return {
        "conv1d": nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias),
        "x_proj": nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False),
        "dt_proj": dt_proj,
        # S4D-real initialisation A = -(1..N) (Mamba, Section 3.6)
        "A_log": nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)),
        "D": nn.Parameter(torch.ones(d_inner)),
    }


def _selective_ssm(
    x: Tensor,
    z: Tensor,
    state: MambaState | None,
    conv1d: nn.Conv1d,
    x_proj: nn.Linear,
    dt_proj: nn.Linear,
    A_log: Tensor,
    D: Tensor,
    backend: str,
) -> tuple[Tensor, MambaState, Tensor]:
    """Mamba-1 after `in_proj`: conv1d -> SiLU -> x_proj -> dt_proj -> selective scan, gated by `z`.

    `x, z [B, d_inner, L]` -> `(y [B, d_inner, L], new state, delta [B, L, d_inner])`. `state` None is a fresh
    (zero) state, which lets `backend="auto"` take the fused kernels on CUDA (`vtc.ssm.dispatch`).
    """
    d_state = A_log.shape[1]
    x, conv_tail = _conv_silu(x, conv1d, None if state is None else state.conv, backend)
    dt, B, C = x_proj(x.transpose(1, 2)).split([dt_proj.in_features, d_state, d_state], dim=-1)
    delta = F.softplus(dt_proj(dt))  # [B, L, d_inner], computed once
    y, ssm_state = selective_scan(
        x,
        delta.transpose(1, 2),
        -torch.exp(A_log.float()),
        B.transpose(1, 2),
        C.transpose(1, 2),
        D=D.float(),
        z=z,
        return_last_state=True,
        initial_state=None if state is None else state.ssm,
        backend=backend,
    )
    return y, MambaState(conv_tail, ssm_state), delta


def _selective_step(
    x: Tensor,
    z: Tensor,
    state: MambaState,
    conv1d: nn.Conv1d,
    x_proj: nn.Linear,
    dt_proj: nn.Linear,
    A_log: Tensor,
    D: Tensor,
) -> tuple[Tensor, MambaState]:
    """One Mamba-1 step after `in_proj` with `selective_state_update` (eqs. 2a-2b for one token, fused):
    `x, z [B, d_inner]` -> `(y [B, d_inner], new state)`; `state` is not modified."""
    window = torch.cat([state.conv.to(x.dtype), x.unsqueeze(-1)], dim=-1)  # [B, d_inner, k]
    x = (window * conv1d.weight.squeeze(1)).sum(-1)
    x = F.silu(x if conv1d.bias is None else x + conv1d.bias)
    dt, B, C = x_proj(x).split([dt_proj.in_features, A_log.shape[1], A_log.shape[1]], dim=-1)
    ssm = state.ssm.clone()  # the kernel updates its state in place
    y = dispatch.kernel("state_update")(
        ssm,
        x,
        dt @ dt_proj.weight.T,
        -torch.exp(A_log.float()),
        B,
        C,
        D.float(),
        z=z,
        dt_bias=dt_proj.bias,
        dt_softplus=True,
    )
    return y, MambaState(window[..., 1:], ssm)


class Mamba(nn.Module):
    """Mamba-1 mixer (Gu & Dao 2023, Figure 3), parameter names of HF `MambaMixer` / `mamba_ssm.Mamba`.

    Args:
        d_model: model width; `d_inner = expand * d_model`.
        d_state, d_conv, expand, dt_rank ("auto" = ceil(d_model / 16)), dt_min, dt_max, dt_init_floor: as in Mamba.
        conv_bias, bias: biases of conv1d and of in/out projections.
        backend: selective-scan backend (`vtc.ssm.BACKENDS`).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_sizes(d_model, d_state, d_conv, expand, (dt_min, dt_max, dt_init_floor))
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else check_int("dt_rank", dt_rank)
        self.backend = backend
        self._ssm_config = (
            self.d_inner,
            d_state,
            d_conv,
            self.dt_rank,
            conv_bias,
            (dt_min, dt_max, dt_init_floor),
        )
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        for name, value in _ssm_parameters(*self._ssm_config).items():
            setattr(self, name, value)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def init_state(self, batch_size: int, device: torch.device | None = None) -> MambaState:
        """Zero state for `batch_size` sequences."""
        device = device or self.in_proj.weight.device
        return MambaState(
            torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device),
            torch.zeros(batch_size, self.d_inner, self.d_state, device=device),
        )

    def forward_with_state(self, hidden_states: Tensor, state: MambaState | None = None) -> MixerOutput:
        """`[B, L, d_model]` continuing from `state` (a fresh zero state when None, which the fused CUDA kernels
        take) -> output, new state, delta `[B, L, d_inner]`."""
        _check_sequence(hidden_states, self.d_model)
        x, z = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)
        y, state, delta = _selective_ssm(
            x, z, state, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D, self.backend
        )
        return MixerOutput(self.out_proj(y.transpose(1, 2)), state, delta)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """`[B, L, d_model] -> [B, L, d_model]`."""
        if self._runs_fused(hidden_states):
            return self._fused_forward(hidden_states)
        return self.forward_with_state(hidden_states).hidden

    def _ssm_directions(self) -> list[tuple]:
        """The parts of each direction's SSM, in `vtc.ssm.mixer_numba.Direction`'s order."""
        return [(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D, False)]

    def _runs_fused(self, hidden_states: Tensor) -> bool:
        """Whether `forward` takes the fused CPU mixer (`vtc.ssm.dispatch.use_cpu_mixer`)."""
        wants_grad = torch.is_grad_enabled() and (
            hidden_states.requires_grad or any(parameter.requires_grad for parameter in self.parameters())
        )
        device = hidden_states.device.type
        return dispatch.use_cpu_mixer(self.backend, device, dispatch.available_kernels(), wants_grad)

    def _fused_forward(self, hidden_states: Tensor) -> Tensor:
        """`[B, L, d_model] -> [B, L, d_model]` with `in_proj`, the fused CPU kernels and `out_proj`."""
        _check_sequence(hidden_states, self.d_model)
        y = dispatch.kernel("numba_mixer")(self.in_proj(hidden_states), self._ssm_directions())
        return self.out_proj(y.to(hidden_states.dtype))

    def step(self, hidden_state: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """One recurrent step: `[B, d_model]` -> `([B, d_model], new state)`; memory does not grow with steps.
        On CUDA with `mamba_ssm`, the fused `selective_state_update` (`vtc.ssm.dispatch.use_step_kernel`)."""
        if not dispatch.use_step_kernel(self.backend, hidden_state.device.type, dispatch.available_kernels()):
            out = self.forward_with_state(hidden_state.unsqueeze(1), state)
            return out.hidden.squeeze(1), out.state
        x, z = self.in_proj(hidden_state).chunk(2, dim=-1)
        y, state = _selective_step(x, z, state, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        return self.out_proj(y), state


class BiMamba(Mamba):
    """Bidirectional Mamba, MambaMia / Vision-Mamba "v2" style: `in_proj` and `out_proj` are shared, the reversed
    direction has its own conv1d, x_proj, dt_proj, A and D (`conv1d_b`, ..., `A_b_log`, `D_b`, as in Vim); the two
    directions' outputs are summed before `out_proj`. Not streamable (it sees the future).
    """

    BACKWARD_NAMES: ClassVar[dict[str, str]] = {
        "conv1d": "conv1d_b",
        "x_proj": "x_proj_b",
        "dt_proj": "dt_proj_b",
        "A_log": "A_b_log",
        "D": "D_b",
    }

    def __init__(self, d_model: int, **kwargs) -> None:
        super().__init__(d_model, **kwargs)
        for name, value in _ssm_parameters(*self._ssm_config).items():
            setattr(self, self.BACKWARD_NAMES[name], value)

    def _directions(self, hidden_states: Tensor) -> tuple[Tensor, MambaState, Tensor, Tensor]:
        """`[B, L, d_model]` -> output `[B, L, d_model]`, the forward direction's final state, and each direction's
        delta `[B, L, d_inner]` (the backward one in its own, reversed, order)."""
        _check_sequence(hidden_states, self.d_model)
        x, z = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)
        y, forward_state, delta = _selective_ssm(
            x, z, None, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D, self.backend
        )
        y_b, _, delta_b = _selective_ssm(
            x.flip(-1),
            z.flip(-1),
            None,
            self.conv1d_b,
            self.x_proj_b,
            self.dt_proj_b,
            self.A_b_log,
            self.D_b,
            self.backend,
        )
        return self.out_proj((y + y_b.flip(-1)).transpose(1, 2)), forward_state, delta, delta_b

    def forward_with_state(self, hidden_states: Tensor, state: MambaState | None = None) -> MixerOutput:
        """`[B, L, d_model]` -> output `[B, L, d_model]`, the forward direction's final state, and the summed delta
        of both directions `[B, L, d_inner]`. `state` must be None."""
        if state is not None:
            raise ValueError("BiMamba sees the future of the sequence and cannot continue from a state")
        hidden, forward_state, delta, delta_b = self._directions(hidden_states)
        return MixerOutput(hidden, forward_state, delta + delta_b.flip(1))

    def forward(self, hidden_states: Tensor) -> Tensor:
        """`[B, L, d_model] -> [B, L, d_model]` (no delta summed)."""
        if self._runs_fused(hidden_states):
            return self._fused_forward(hidden_states)
        return self._directions(hidden_states)[0]

    def _ssm_directions(self) -> list[tuple]:
        """Both directions' SSM parts, the backward one reversed (`vtc.ssm.mixer_numba.Direction`)."""
        backward = (self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b, True)
        return [*super()._ssm_directions(), backward]

    def step(self, hidden_state: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        raise ValueError("BiMamba sees the future of the sequence and cannot stream")


class GatedRMSNorm(nn.Module):
    """Mamba-2's gated, grouped RMSNorm: `norm(x * silu(gate))` per group of channels (HF `MambaRMSNormGated`)."""

    def __init__(self, dim: int, group_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: Tensor, gate: Tensor) -> Tensor:
        """`x, gate [..., dim] -> [..., dim]`."""
        dtype = x.dtype
        x = x.float() * F.silu(gate.float())
        grouped = x.view(*x.shape[:-1], -1, self.group_size)
        grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * grouped.view_as(x).to(dtype)


class Mamba2(nn.Module):
    """Mamba-2 mixer (Dao & Gu 2024, Figure 6), parameter names of HF `Mamba2Mixer`.

    Args:
        d_model: model width; `d_inner = expand * d_model = heads * head_dim`.
        d_state, d_conv, expand, head_dim, n_groups, chunk_size: as in Mamba-2.
        dt_min, dt_max, dt_init_floor: dt initialisation; `dt_limit` clamps softplus(dt) (HF `time_step_limit`).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 64,
        n_groups: int = 1,
        chunk_size: int = 64,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
        conv_bias: bool = True,
        bias: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_sizes(d_model, d_state, d_conv, expand, (dt_min, dt_max, dt_init_floor))
        for name, value in (("head_dim", head_dim), ("n_groups", n_groups), ("chunk_size", chunk_size)):
            check_int(name, value)
        check_float("norm_eps", norm_eps, 0)
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        if self.d_inner % head_dim:
            raise ValueError(f"d_inner={self.d_inner} is not a multiple of head_dim={head_dim}")
        self.head_dim, self.num_heads, self.n_groups = head_dim, self.d_inner // head_dim, n_groups
        self.chunk_size, self.dt_limit = chunk_size, dt_limit
        self.conv_dim = self.d_inner + 2 * n_groups * d_state
        self.in_proj = nn.Linear(d_model, self.d_inner + self.conv_dim + self.num_heads, bias=bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1, bias=conv_bias
        )
        self.dt_bias = nn.Parameter(_init_dt_bias(self.num_heads, dt_min, dt_max, dt_init_floor))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.num_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.norm = GatedRMSNorm(self.d_inner, self.d_inner // n_groups, eps=norm_eps)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def init_state(self, batch_size: int, device: torch.device | None = None) -> MambaState:
        """Zero state for `batch_size` sequences."""
        device = device or self.in_proj.weight.device
        return MambaState(
            torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device),
            torch.zeros(batch_size, self.num_heads, self.head_dim, self.d_state, device=device),
        )

    def forward_with_state(self, hidden_states: Tensor, state: MambaState | None = None) -> MixerOutput:
        """`[B, L, d_model]` continuing from `state` (a fresh zero state when None) -> output, new state, delta
        `[B, L, heads]`. On CUDA the scan is `mamba_ssm`'s SSD kernel, and a fresh state's conv `causal_conv1d_fn`."""
        _check_sequence(hidden_states, self.d_model)
        batch, length, _ = hidden_states.shape
        gate, xBC, dt = self.in_proj(hidden_states).split([self.d_inner, self.conv_dim, self.num_heads], dim=-1)
        xBC, conv_tail = _conv_silu(xBC.transpose(1, 2), self.conv1d, None if state is None else state.conv)
        x, B, C = xBC.transpose(1, 2).split(
            [self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], dim=-1
        )
        delta = F.softplus(dt + self.dt_bias).clamp(*self.dt_limit)
        y, ssm_state = ssd_scan(
            x.reshape(batch, length, self.num_heads, self.head_dim),
            delta,
            -torch.exp(self.A_log.float()),
            B.reshape(batch, length, self.n_groups, self.d_state),
            C.reshape(batch, length, self.n_groups, self.d_state),
            chunk_size=self.chunk_size,
            D=self.D,
            initial_state=None if state is None else state.ssm,
            return_last_state=True,
        )
        y = self.norm(y.reshape(batch, length, self.d_inner), gate)
        return MixerOutput(self.out_proj(y.to(hidden_states.dtype)), MambaState(conv_tail, ssm_state), delta)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """`[B, L, d_model] -> [B, L, d_model]`."""
        return self.forward_with_state(hidden_states).hidden

    def step(self, hidden_state: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """One recurrent step: `[B, d_model]` -> `([B, d_model], new state)`."""
        out = self.forward_with_state(hidden_state.unsqueeze(1), state)
        return out.hidden.squeeze(1), out.state


MIXERS = {"mamba": Mamba, "bimamba": BiMamba, "mamba2": Mamba2}


class MambaBlock(nn.Module):
    """Pre-norm residual block `x + mixer(norm(x))`, the unit the SSM compressors stack.

    Args:
        d_model: width.
        mixer: "mamba", "bimamba" or "mamba2".
        norm: "rmsnorm" or "layernorm".
        mixer_kwargs: passed to the mixer.
    """

    def __init__(self, d_model: int, mixer: str = "mamba", norm: str = "rmsnorm", **mixer_kwargs) -> None:
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {sorted(MIXERS)}, got {mixer!r}")
        if norm not in ("rmsnorm", "layernorm"):
            raise ValueError(f"norm must be 'rmsnorm' or 'layernorm', got {norm!r}")
        self.d_model = d_model
        self.norm = RMSNorm(d_model) if norm == "rmsnorm" else nn.LayerNorm(d_model)
        self.mixer = MIXERS[mixer](d_model, **mixer_kwargs)

    def forward_with_state(self, x: Tensor, state: MambaState | None = None) -> MixerOutput:
        """`[B, L, d_model]` -> residual output, mixer state, mixer delta."""
        _check_sequence(x, self.d_model)
        out = self.mixer.forward_with_state(self.norm(x), state)
        return MixerOutput(x + out.hidden, out.state, out.delta)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, L, d_model] -> [B, L, d_model]`."""
        _check_sequence(x, self.d_model)
        return x + self.mixer(self.norm(x))

    def init_state(self, batch_size: int, device: torch.device | None = None) -> MambaState:
        return self.mixer.init_state(batch_size, device)

    def step(self, x: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """`[B, d_model]` -> `([B, d_model], new state)`."""
        y, state = self.mixer.step(self.norm(x), state)
        return x + y, state


def _check_sequence(hidden_states: Tensor, d_model: int) -> None:
    if hidden_states.dim() != 3 or hidden_states.shape[-1] != d_model:
        raise ValueError(f"expected [B, L, d_model={d_model}], got shape {tuple(hidden_states.shape)}")
    if hidden_states.shape[1] == 0:
        raise ValueError("sequence length is 0")
