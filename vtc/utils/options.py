"""Command-line `KEY=VALUE` options."""

from __future__ import annotations

import json
from typing import Any


def parse_key_values(pairs: list[str], flag: str = "--set") -> dict[str, Any]:
    """`["chunk_size=8", "output=patches"]` -> `{"chunk_size": 8, "output": "patches"}` (values parsed as JSON when
    they are JSON, else kept as strings); `ValueError` naming `flag` for a malformed pair."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"{flag} must be KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
