"""Sizes ("100MB") and durations ("5min") as people write them in config and the library API."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from "100MB", "64MiB", "512k" or a plain integer; ValueError says what is allowed."""
    if isinstance(text, bool):
        raise ValueError("expected a size such as 100MB")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _NUMBER_UNIT.match(str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError("expected a size such as 100MB, 64MiB or 512KB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str | int | float) -> float:
    """Seconds from "5min", "30s", "2h", "7d", "250ms" or a plain number of seconds."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 5min")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    match = _NUMBER_UNIT.match(str(text))
    unit = match.group(2).lower() if match else None
    if not match or (unit not in _DURATION_UNITS and unit != ""):
        raise ValueError("expected a duration such as 30s, 5min, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS.get(unit or "s", 1.0)
