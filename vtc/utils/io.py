"""Files that are never half-written: atomic text, safetensors and JSON-lines writes, and JSON-lines reading."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside `path` to write; on success it is synced and renamed over `path`, else removed."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, suffix=suffix)
    os.close(handle)
    try:
        yield Path(name)
        with open(name, "rb") as written:
            os.fsync(written.fileno())
        os.replace(name, path)
    finally:
        if os.path.exists(name):
            os.unlink(name)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a synced temporary file and an atomic rename."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def atomic_save_safetensors(
    tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """`safetensors.torch.save_file` through a synced temporary file and an atomic rename."""
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every non-blank line of `path` as a dict; `ValueError` naming the file and line for a corrupt line."""
    path = Path(path)
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Write `records` one JSON object a line, atomically."""
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))
