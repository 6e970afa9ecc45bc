"""Errors the storage raises for the API and CLI to map to one clear 4xx/5xx line."""

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
    """A tier the write must reach synchronously is unreachable: nothing was written."""

    status = 503


__all__ = ["BadRequest", "StorageError", "StorageFull", "Unavailable", "ValueTooLarge"]
