"""The one compressor interface: `Compressor`, `CompressedTokens`, and the registry.

Every compressor maps visual tokens `[B, T, N, D]` (batch, frames, tokens per frame, channels) to a flat,
time-ordered sequence `[B, L, D]` with a validity mask, the source frame of every token and its timestamp.
Subclasses declare their facts (`card`, a `MethodCard`), and implement `compress` on inputs that `forward` has
already validated, and `num_output_tokens`; `@register_compressor(name)` registers them and their presets.
A compressor with `uses_attention = True` (VisionZip) also gets the encoder's `attention [B, T, N]` in `compress`.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.compressors.card import MethodCard
from vtc.utils.checks import check_int
from vtc.utils.io import atomic_save_safetensors, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class CompressedTokens:
    """What every compressor returns.

    Attributes:
        tokens: `[B, L, D]` compressed tokens in time order; rows are right-padded when videos differ in L.
        mask: `[B, L]` bool, True for valid tokens.
        frame_index: `[B, L]` long, source frame of each token, -1 where a token is not tied to one frame
            (and for padding).
        timestamps: `[B, L]` float seconds of each token (0 for padding).
        scores: optional `[B, L]` per-token saliency the compressor used to select.
        aux: method-specific extras for plots and analysis (selected frames, delta-time, ...).
    """

    tokens: Tensor
    mask: Tensor
    frame_index: Tensor
    timestamps: Tensor
    scores: Tensor | None = None
    aux: dict[str, Any] = field(default_factory=dict)

    @property
    def num_tokens(self) -> Tensor:
        """`[B]` number of valid tokens per video."""
        return self.mask.sum(dim=1)


class Compressor(nn.Module):
    """Base class: validates inputs, records its config as plain data, saves and loads itself.

    Subclasses declare their facts as `card = MethodCard(...)` and implement `compress` and `num_output_tokens`. Every
    constructor argument, defaults filled in, is recorded in `self.config` after construction (they must be named
    and JSON-serialisable), so `save_pretrained` / `from_pretrained` rebuild the same model.
    """

    registry_name: ClassVar[str] = ""
    card: ClassVar[MethodCard]
    uses_attention: ClassVar[bool] = False  # True: `compress` takes `attention [B, T, N]`, which `forward` requires
    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__init__ = recording_config(cls.__init__)
        if "step_frame" in cls.__dict__:
            cls.step_frame = checked_step(cls.__dict__["step_frame"])

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)

    def forward(
        self,
        tokens: Tensor,
        timestamps: Tensor | None = None,
        frame_mask: Tensor | None = None,
        attention: Tensor | None = None,
    ) -> CompressedTokens:
        """Compress a batch of videos.

        Any floating dtype is accepted: the compressor computes in its parameters' dtype (a parameter-free one in the
        input's) and returns `tokens` in the input's dtype.

        Args:
            tokens: `[B, T, N, D]` visual tokens, D = `self.dim`, finite.
            timestamps: `[B, T]` finite frame times in seconds, never decreasing along a video's valid frames (ties
                keep frame order); frame indices (0, 1, ...) when None.
            frame_mask: `[B, T]` bool (or numbers that are exactly 0 / 1), False for padded frames (never selected,
                never averaged in); all True when None.
            attention: `[B, T, N]` attention each token received in the vision encoder (finite, >= 0), for a
                compressor with `uses_attention` (required there); checked, then ignored by every other one.

        Returns:
            `CompressedTokens` with `tokens [B, L, D]`, `L <= num_output_tokens(T, N)`.

        Raises:
            ValueError: wrong shapes, an empty video, non-finite values, a frame_mask with other values than 0 / 1,
                timestamps that go back in time, a bad `attention`, or none for a compressor that uses it.
        """
        timestamps, frame_mask = validate_inputs(tokens, self.dim, timestamps, frame_mask)
        attention = validate_attention(attention, tokens, self.registry_name if self.uses_attention else None)
        extra = (attention,) if self.uses_attention else ()  # the attention reaches only a compressor that uses it
        out = self.compress(tokens.to(self.compute_dtype(tokens.dtype)), timestamps, frame_mask, *extra)
        out.tokens = out.tokens.to(tokens.dtype)
        return out

    def compute_dtype(self, input_dtype: torch.dtype) -> torch.dtype:
        """The dtype the compressor computes in: its first floating parameter's, or `input_dtype` when it has none."""
        floating = (parameter.dtype for parameter in self.parameters() if parameter.is_floating_point())
        return next(floating, input_dtype)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """Compress validated inputs (`[B, T, N, D]`, `[B, T]` float, `[B, T]` bool)."""
        raise NotImplementedError

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        """Maximum number of output tokens L for one video, without running the model."""
        raise NotImplementedError

    @property
    def supports_streaming(self) -> bool:
        """Whether `init_state` / `step_frame` work: unbounded video, memory constant in the number of frames."""
        return self.card.streams(self.config)

    def init_state(self, batch_size: int, device: torch.device | None = None) -> Any:
        """Initial streaming state for `batch_size` videos."""
        raise NotImplementedError(f"{type(self).__name__} does not support streaming (it looks at future frames)")

    def step_frame(self, frame_tokens: Tensor, timestamp: Tensor, state: Any) -> tuple[CompressedTokens, Any]:
        """Compress one more frame `[B, N, D]` at `timestamp [B]`; returns that frame's output and the new state.

        A subclass's `step_frame` is wrapped by `checked_step`: a bad frame (wrong shape, NaN or Inf) raises
        `ValueError` before the state is touched, so the caller may skip it and go on with the same state; dtypes are
        handled as in `forward`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support streaming (it looks at future frames)")

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `config.json` (registry name + config) and `model.safetensors`, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"compressor": self.registry_name, "config": self.config}
        atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True))
        state = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        atomic_save_safetensors(state, directory / WEIGHTS_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> Compressor:
        """Rebuild a compressor saved with `save_pretrained` (strict weight loading)."""
        directory = Path(directory)
        saved = json.loads((directory / CONFIG_NAME).read_text())
        model = create_compressor(saved["compressor"], **{**saved["config"], **overrides})
        if not isinstance(model, cls):
            raise TypeError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}")
        weights = directory / WEIGHTS_NAME
        if weights.exists():
            model.load_state_dict(load_file(str(weights)), strict=True)
        elif model.state_dict():
            raise FileNotFoundError(f"{weights} is missing: {type(model).__name__} has weights to load")
        return model

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config.items())


def validate_inputs(
    tokens: Tensor, dim: int, timestamps: Tensor | None, frame_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Check `tokens [B, T, N, D]`, `timestamps [B, T]`, `frame_mask [B, T]`; fill the defaults.

    Raises `ValueError` naming the expected and received shapes for any wrong rank or size, an empty video,
    non-finite values, a `frame_mask` that is neither bool nor exactly 0 / 1, or timestamps that decrease along a
    video's valid frames (`check_time_order`).
    """
    if not isinstance(tokens, Tensor):
        raise TypeError(f"tokens must be a torch.Tensor [B, T, N, D], got {type(tokens).__name__}")
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be [B, T, N, D={dim}], got shape {tuple(tokens.shape)}")
    batch, frames, per_frame, channels = tokens.shape
    if channels != dim:
        raise ValueError(f"tokens must be [B, T, N, D={dim}], got D={channels} (shape {tuple(tokens.shape)})")
    if batch == 0 or frames == 0 or per_frame == 0:
        raise ValueError(f"tokens must be non-empty [B>0, T>0, N>0, D], got shape {tuple(tokens.shape)}")
    if not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating-point tensor, got {tokens.dtype}")
    if not torch.isfinite(tokens).all():
        raise ValueError("tokens contain NaN or Inf")
    if timestamps is None:
        timestamps = torch.arange(frames, device=tokens.device, dtype=torch.float32).expand(batch, frames)
    else:
        if tuple(timestamps.shape) != (batch, frames):
            raise ValueError(f"timestamps must be [B={batch}, T={frames}], got shape {tuple(timestamps.shape)}")
        if not torch.isfinite(timestamps).all():
            raise ValueError("timestamps contain NaN or Inf")
        timestamps = timestamps.to(device=tokens.device, dtype=torch.float32)
    if frame_mask is None:
        frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=tokens.device)
    else:
        if tuple(frame_mask.shape) != (batch, frames):
            raise ValueError(f"frame_mask must be [B={batch}, T={frames}], got shape {tuple(frame_mask.shape)}")
        other = frame_mask[(frame_mask != 0) & (frame_mask != 1)]
        if other.numel():
            raise ValueError(f"frame_mask must be bool or exactly 0 / 1, got {other[0].item()} ({frame_mask.dtype})")
        frame_mask = frame_mask.to(device=tokens.device, dtype=torch.bool)
        if not frame_mask.any(dim=1).all():
            raise ValueError("every video needs at least one valid frame (a frame_mask row is all False)")
    check_time_order(timestamps, frame_mask)
    return timestamps, frame_mask


def validate_attention(attention: Tensor | None, tokens: Tensor, needed_by: str | None) -> Tensor | None:
    """Check `attention [B, T, N]` against `tokens [B, T, N, D]` (floating, finite, >= 0) and return it as float32;
    None stays None unless the compressor `needed_by` (its name) uses it."""
    if attention is None and needed_by is not None:
        raise ValueError(f"{needed_by} needs the encoder's attention: pass attention=[B, T, N] (received per patch)")
    if attention is None:
        return None
    if not isinstance(attention, Tensor) or attention.shape != tokens.shape[:3]:
        got = tuple(attention.shape) if isinstance(attention, Tensor) else type(attention).__name__
        raise ValueError(f"attention must be [B, T, N] = {tuple(tokens.shape[:3])} like the tokens, got {got}")
    if not attention.is_floating_point() or not torch.isfinite(attention).all() or (attention < 0).any():
        raise ValueError(
            f"attention must hold finite floating-point weights >= 0, got {attention.dtype}, min {attention.min()}"
        )
    return attention.to(device=tokens.device, dtype=torch.float32)


def check_time_order(timestamps: Tensor, frame_mask: Tensor) -> None:
    """Raise `ValueError` if a video's timestamps `[B, T]` decrease from one valid frame to the next."""
    valid_times = timestamps.masked_fill(~frame_mask, float("-inf")).cummax(dim=1).values
    going_back = frame_mask[:, 1:] & (timestamps[:, 1:] < valid_times[:, :-1])
    if going_back.any():
        video, frame = (int(index) for index in going_back.nonzero()[0])
        raise ValueError(
            f"timestamps must not decrease along a video's valid frames; video {video} goes back from "
            f"{float(valid_times[video, frame])} s to {float(timestamps[video, frame + 1])} s at frame {frame + 1}"
        )


def validate_frame(frame_tokens: Tensor, dim: int, timestamp: Tensor) -> None:
    """Check one streamed frame `[B, N, D]` and its `timestamp [B]` as `validate_inputs` checks a video."""
    if not isinstance(frame_tokens, Tensor) or frame_tokens.dim() != 3 or frame_tokens.shape[-1] != dim:
        shape = tuple(frame_tokens.shape) if isinstance(frame_tokens, Tensor) else type(frame_tokens).__name__
        raise ValueError(f"frame_tokens must be a tensor [B, N, D={dim}], got {shape}")
    if not isinstance(timestamp, Tensor) or tuple(timestamp.shape) != frame_tokens.shape[:1]:
        raise ValueError(f"timestamp must be a tensor [B={frame_tokens.shape[0]}], got {timestamp!r}")
    validate_inputs(frame_tokens.unsqueeze(1), dim, timestamp.unsqueeze(1), None)


def checked_step(step: Callable[..., tuple[CompressedTokens, Any]]) -> Callable[..., tuple[CompressedTokens, Any]]:
    """Wrap a compressor class's `step_frame`: validate the frame before the state is touched, compute in
    `compute_dtype` and return tokens in the frame's dtype."""

    @functools.wraps(step)
    def step_checked(
        self: Compressor, frame_tokens: Tensor, timestamp: Tensor, state: Any
    ) -> tuple[CompressedTokens, Any]:
        validate_frame(frame_tokens, self.dim, timestamp)
        out, state = step(self, frame_tokens.to(self.compute_dtype(frame_tokens.dtype)), timestamp, state)
        out.tokens = out.tokens.to(frame_tokens.dtype)
        return out, state

    return step_checked


# ---------------------------------------------------------------------------------------------------- config


def recording_config(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a compressor class's `__init__` so that the outermost constructor call records its arguments.

    After construction, `self.config` holds every argument but `self`, defaults filled in, as JSON data (tuples
    become lists), which is exactly what `from_pretrained` passes back.
    """
    signature = inspect.signature(init)
    variadic = [p.name for p in signature.parameters.values() if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if variadic:
        raise TypeError(f"{init.__qualname__} takes {variadic[0]!r}: compressor arguments must be named to be saved")

    @functools.wraps(init)
    def init_and_record(self: Compressor, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is init_and_record:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(list(bound.arguments.items())[1:])
            try:
                self.config = json.loads(json.dumps(arguments))
            except TypeError as error:
                raise TypeError(f"{type(self).__name__} arguments must be JSON-serialisable: {error}") from error

    return init_and_record


# ---------------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, tuple[type[Compressor], dict[str, Any]]] = {}


def register_compressor(name: str) -> Callable[[type[Compressor]], type[Compressor]]:
    """Class decorator: register `cls` under `name`, and each preset of its `card` under the preset's name."""

    def decorator(cls: type[Compressor]) -> type[Compressor]:
        card = cls.__dict__.get("card")
        if not isinstance(card, MethodCard):
            raise TypeError(f"{cls.__name__} must declare its facts as a class attribute `card = MethodCard(...)`")
        entries = {name: {}, **card.presets}
        taken = sorted(set(entries) & set(_REGISTRY))
        if taken:
            raise ValueError(f"compressor names already registered: {', '.join(taken)}")
        for defaults in entries.values():
            inspect.signature(cls).bind_partial(**defaults)  # a preset naming no argument fails here, not when built
        cls.registry_name = name
        _REGISTRY.update((entry, (cls, defaults)) for entry, defaults in entries.items())
        return cls

    return decorator


def create_compressor(name: str, **config: Any) -> Compressor:
    """Build the compressor registered as `name`; `config` overrides its (or its preset's) defaults."""
    cls, preset = _registered(name)
    return cls(**{**preset, **config})


def list_compressors() -> list[str]:
    """Names of all registered compressors (presets included), sorted."""
    return sorted(_REGISTRY)


def compressor_class(name: str) -> type[Compressor]:
    """The class registered as `name` (a preset's base class); its `card` holds the method's facts."""
    return _registered(name)[0]


def takes_argument(name: str, argument: str) -> bool:
    """Whether the compressor registered as `name` has the constructor argument `argument` (e.g. `grid`, `seed`)."""
    return argument in inspect.signature(compressor_class(name)).parameters


def _registered(name: str) -> tuple[type[Compressor], dict[str, Any]]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown compressor {name!r}; registered: {', '.join(list_compressors())}")
    return _REGISTRY[name]
