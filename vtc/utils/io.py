"""Files that are never half-written: atomic text, safetensors and JSON-lines writes; and line and JSON-lines
reading that names the file and line of every bad line."""

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


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | ValueError]]:
    """Every non-blank line of `path` as `(line number, text)`; a line that is not UTF-8 comes as
    `(line number, ValueError naming the file, line and byte)`, so readers can skip it and go on."""
    path = Path(path)
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield line_number, _decode(raw, f"{path}:{line_number}")


def _decode(raw: bytes, where: str) -> str | ValueError:
    """`raw` decoded as UTF-8, or a `ValueError` starting with `where` naming the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return ValueError(f"{where}: not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | ValueError]]:
    """Every non-blank line of `path` as `(line number, record)`; a line that is not UTF-8, not valid JSON or
    not a JSON object comes as `(line number, ValueError naming the file and line)`, so readers can skip it."""
    for line_number, line in iter_lines(path):
        yield line_number, line if isinstance(line, ValueError) else _parse_json(line, f"{path}:{line_number}")


def _parse_json(line: str, where: str) -> dict[str, Any] | ValueError:
    """One JSON-lines line as a dict, or a `ValueError` starting with `where` saying why it is not one."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        return ValueError(f"{where}: not valid JSON ({reason})")
    if not isinstance(record, dict):
        return ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every non-blank line of `path` as a dict; `ValueError` naming the file and line for a line that is not
    UTF-8, not valid JSON or not a JSON object."""
    records = []
    for _, record in iter_jsonl(path):
        if isinstance(record, ValueError):
            raise record
        records.append(record)
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Write `records` one JSON object a line, atomically."""
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))
