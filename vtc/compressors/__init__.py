"""Compressors: one interface (`Compressor`), one registry (`create_compressor`, `list_compressors`).

Importing this package registers every built-in method; each lives in its own module.
"""

from vtc.compressors import cabstractor, none, pooling, resampler, stac, storm, taa, tokenlearner, tome, tstar  # noqa: F401
from vtc.compressors.base import (
    CompressedTokens,
    Compressor,
    compressor_class,
    create_compressor,
    list_compressors,
    register_compressor,
)

__all__ = [
    "CompressedTokens",
    "Compressor",
    "cabstractor",
    "compressor_class",
    "create_compressor",
    "list_compressors",
    "none",
    "pooling",
    "register_compressor",
    "resampler",
    "tokenlearner",
    "tome",
]
