"""Sizes ("100MB") and durations ("5min") as people write them in config and the library API.

Only finite, non-negative numbers written in a few characters are accepted: a NaN or infinite
duration once made the idle agent spin and SIGTERM fail, and a 400-digit size overflowed. Upper
bounds that depend on the setting are the caller's (config.py names the key in its error).
"""

from __future__ import annotations

import math
import re

MAX_TEXT_CHARS = 32  # "1.5GiB", "250ms": nothing a person writes is longer
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
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
        raise ValueError("expected a size such as 100MB, not a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _match(text, "size")
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError("expected a size such as 100MB, 64MiB or 512KB")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str | int | float) -> float:
    """Seconds from "5min", "30s", "2h", "7d", "250ms" or a plain number of seconds."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 5min, not a boolean")
    if isinstance(text, int | float):
        seconds = float(text) if abs(text) < 1e300 else math.inf  # float(10**400) overflows
        if not math.isfinite(seconds):
            raise ValueError("a duration must be a finite number")
        if seconds < 0:
            raise ValueError("a duration cannot be negative")
        return seconds
    match = _match(text, "duration")
    unit = match.group(2).lower() if match else None
    if not match or (unit not in _DURATION_UNITS and unit != ""):
        raise ValueError("expected a duration such as 30s, 5min, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS.get(unit or "s", 1.0)


def _match(text: object, what: str) -> re.Match[str] | None:
    """The number and unit of a short text; a long one is refused before any parsing."""
    if not isinstance(text, str | float):
        return None
    written = str(text)
    if len(written) > MAX_TEXT_CHARS:
        raise ValueError(f"a {what} is at most {MAX_TEXT_CHARS} characters")
    return _NUMBER_UNIT.match(written)
