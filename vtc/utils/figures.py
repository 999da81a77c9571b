"""Figures written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vtc.utils.io import atomic_path


def save_figure(figure: Any, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure as PNG through a temporary file and an atomic rename; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png.tmp") as temporary:
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight")
    return path
