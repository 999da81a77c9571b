"""vtc: video token compression for video LLMs."""

from vtc.compressors import CompressedTokens, Compressor, create_compressor, list_compressors

__version__ = "0.1.0"

__all__ = ["CompressedTokens", "Compressor", "__version__", "create_compressor", "list_compressors"]
