"""Errors the storage raises for the API, CLI and library to map to one clear line.

They live apart from storage so the local store, the PostgreSQL tier, the API, the CLI and the
library all raise and catch the same classes: a bad request (4xx), a full disk (507), a lost
precondition of a conditional write (HTTP 412, CLI exit 4) and a store that must decide a write
but cannot be reached now (HTTP 503).
"""

from __future__ import annotations


class StorageError(Exception):
    """Base for errors the API maps to a 4xx/5xx with one clear message."""

    status = 500


class BadRequest(StorageError):
    status = 400


class ValueTooLarge(StorageError):
    status = 413


class StorageFull(StorageError):
    """The disk refused the write; nothing was acknowledged, nothing changed."""

    status = 507


class Unavailable(StorageError):
    """The store that must decide a write (a sync tier, or PostgreSQL for a conditional write)
    cannot be reached now; nothing was written. The message is one line and holds no secret."""

    status = 503


class PreconditionFailed(Exception):
    """A conditional write lost: the stored version is not the one the writer expected.

    `current_version` is the version stored now, or None when the record is absent. Nothing
    was written. Not a StorageError: its answer carries the current version besides the line."""

    status = 412

    def __init__(self, current_version: int | None, message: str | None = None) -> None:
        shown = "absent" if current_version is None else f"at version {current_version}"
        super().__init__(message or f"precondition failed: the record is {shown}")
        self.current_version = current_version


__all__ = [
    "BadRequest",
    "PreconditionFailed",
    "StorageError",
    "StorageFull",
    "Unavailable",
    "ValueTooLarge",
]
