"""The video LLM: encoder -> compressor -> projector -> language model, and its answer formats.

`VideoLMM`, `build_model` and `load_config` (from `vtc.lmm.model`) are imported on first use, so that importing
`vtc.lmm.answers` does not load the model's dependencies.
"""

from typing import Any

__all__ = ["VideoLMM", "build_model", "load_config"]


def __getattr__(name: str) -> Any:
    """`vtc.lmm.VideoLMM`, `vtc.lmm.build_model` and `vtc.lmm.load_config`, imported from `vtc.lmm.model`."""
    if name in __all__:
        from vtc.lmm import model

        return getattr(model, name)
    raise AttributeError(f"module 'vtc.lmm' has no attribute {name!r}")
