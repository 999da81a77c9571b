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
from vtc.compressors.validation import validate_attention, validate_frame, validate_inputs
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
