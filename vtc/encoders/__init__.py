"""Vision encoders: frozen Hugging Face towers (BLIP-2, CLIP, SigLIP), a tiny trainable one, and a registry that
other packages add theirs to (`register_encoder`; the embedded benchmark's `scene` encoder comes with `vtc.world`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vtc.encoders.base import VisionEncoder
from vtc.encoders.hf import Blip2VisionEncoder, CLIPVisionEncoder, SiglipVisionEncoder
from vtc.encoders.tiny import TinyVisionEncoder

ENCODERS: dict[str, Callable[..., VisionEncoder]] = {
    "blip2": Blip2VisionEncoder.from_pretrained,
    "clip": CLIPVisionEncoder,
    "siglip": SiglipVisionEncoder,
    "tiny": TinyVisionEncoder,
}


def register_encoder(name: str, factory: Callable[..., VisionEncoder]) -> None:
    """Make `factory(**options)` the encoder type `name` of `build_encoder`; a name is registered once."""
    if ENCODERS.get(name, factory) is not factory:
        raise ValueError(f"an encoder type named {name!r} is already registered")
    ENCODERS[name] = factory


def build_encoder(config: dict[str, Any]) -> VisionEncoder:
    """Build an encoder from `{"type": <a registered type>, **its arguments}` (`ENCODERS`).

    The Hugging Face types need `path` (a local folder); `chunk_size`, `load_in_4bit`, and `output`
    (BLIP-2: "qformer" or "patches") / `feature_layer` (CLIP) are optional; `tome_r` merges that many tokens in
    every layer of the tower with ToMe (`vtc.encoders.patch`).
    """
    options = dict(config)
    kind = options.pop("type", None)
    if kind not in ENCODERS:
        raise ValueError(
            f"encoder type must be one of {sorted(ENCODERS)}, got {kind!r} (a package registers its encoders when "
            "imported: `import vtc.world` registers the embedded benchmark's `scene` encoder)"
        )
    return ENCODERS[kind](**options)


__all__ = [
    "ENCODERS",
    "Blip2VisionEncoder",
    "CLIPVisionEncoder",
    "SiglipVisionEncoder",
    "TinyVisionEncoder",
    "VisionEncoder",
    "build_encoder",
    "register_encoder",
]
