"""The one exception the lab raises: its message is a single line a human can act on."""

from __future__ import annotations


class LabError(RuntimeError):
    """A lab failure with a one-line message (details, like a serial log tail, go after it)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message if not details else f"{message}\n{details}")
        self.message = message
        self.details = details
