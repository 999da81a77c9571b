"""JSON-lines reading and atomic writing, shared by the loaders and the evaluator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vtc.compressors.base import atomic_write_text


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
    text = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write_text(Path(path), text)
