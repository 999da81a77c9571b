"""vtc: video token compression for video LLMs."""

from typing import Any

from vtc.compressors import CompressedTokens, Compressor, create_compressor, list_compressors

__version__ = "0.1.0"

__all__ = [
    "CompressedTokens",
    "Compressor",
    "__version__",
    "build_model",
    "create_compressor",
    "list_compressors",
]


def __getattr__(name: str) -> Any:
    """`vtc.build_model` is imported on first use, so `import vtc` does not load transformers."""
    if name == "build_model":
        from vtc.lmm.model import build_model

        return build_model
    raise AttributeError(f"module 'vtc' has no attribute {name!r}")
