"""Errors of conditional writes (issue 8), shared by every layer that can raise them.

They live apart from storage so the local store, the PostgreSQL tier, the API, the CLI and the
library all raise and catch the same two classes: a lost precondition (HTTP 412, CLI exit 4)
and a store that cannot decide one now (HTTP 503).
"""

from __future__ import annotations


class PreconditionFailed(Exception):
    """A conditional write lost: the stored version is not the one the writer expected.

    `current_version` is the version stored now, or None when the record is absent. Nothing
    was written."""

    status = 412

    def __init__(self, current_version: int | None, message: str | None = None) -> None:
        shown = "absent" if current_version is None else f"at version {current_version}"
        super().__init__(message or f"precondition failed: the record is {shown}")
        self.current_version = current_version


class Unavailable(Exception):
    """The store that must decide a conditional write cannot be reached now; nothing was
    written. The message is one line and holds no secret."""

    status = 503


class TransactionFailed(PreconditionFailed):
    """A transaction's condition failed: nothing of the transaction was written. It names the
    first failing operation (its index in the request) and record."""

    def __init__(
        self, index: int, collection: str, key: str, current_version: int | None, message: str
    ) -> None:
        super().__init__(current_version, message)
        self.index = index
        self.collection = collection
        self.key = key
