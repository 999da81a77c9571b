"""Compressors: one interface (`Compressor`), one registry (`create_compressor`, `list_compressors`).

Importing this package imports every module in it, which registers every built-in method: a method is one module
whose class declares its `MethodCard` and is decorated with `@register_compressor(name)`.
"""

import importlib
import pkgutil

from vtc.compressors.base import (
    CompressedTokens,
    Compressor,
    compressor_class,
    create_compressor,
    list_compressors,
    register_compressor,
    takes_argument,
)
from vtc.compressors.card import Family, Knob, MethodCard


def _import_every_module() -> None:
    """Import each module of this package, which registers the methods it defines."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_import_every_module()

__all__ = [
    "CompressedTokens",
    "Compressor",
    "Family",
    "Knob",
    "MethodCard",
    "compressor_class",
    "create_compressor",
    "list_compressors",
    "register_compressor",
    "takes_argument",
]
