"""Vision encoders: frozen Hugging Face towers (BLIP-2, CLIP, SigLIP) and a tiny trainable one."""

from __future__ import annotations

from typing import Any

from vtc.encoders.base import VisionEncoder
from vtc.encoders.hf import Blip2VisionEncoder, CLIPVisionEncoder, SiglipVisionEncoder
from vtc.encoders.scene import SceneEncoder
from vtc.encoders.tiny import TinyVisionEncoder

ENCODERS = {
    "blip2": Blip2VisionEncoder.from_pretrained,
    "clip": CLIPVisionEncoder,
    "siglip": SiglipVisionEncoder,
    "tiny": TinyVisionEncoder,
    "scene": SceneEncoder,
}


def build_encoder(config: dict[str, Any]) -> VisionEncoder:
    """Build an encoder from `{"type": "blip2" | "clip" | "siglip" | "tiny", **its arguments}`.

    The Hugging Face types need `path` (a local folder); `chunk_size`, `load_in_4bit`, and `output`
    (BLIP-2: "qformer" or "patches") / `feature_layer` (CLIP) are optional.
    """
    options = dict(config)
    kind = options.pop("type", None)
    if kind not in ENCODERS:
        raise ValueError(f"encoder type must be one of {sorted(ENCODERS)}, got {kind!r}")
    return ENCODERS[kind](**options)


__all__ = [
    "ENCODERS",
    "Blip2VisionEncoder",
    "CLIPVisionEncoder",
    "SiglipVisionEncoder",
    "TinyVisionEncoder",
    "VisionEncoder",
    "build_encoder",
]
