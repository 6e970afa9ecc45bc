"""Persistence classes, name rules and the in-memory entry that carries one record."""

from __future__ import annotations

import enum
import re

MAX_COLLECTION_LENGTH = 128
MAX_KEY_LENGTH = 512
_COLLECTION_CHARS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


class InvalidName(ValueError):
    """A collection or key that would be unsafe as a file name or ambiguous in a URL."""


class PersistenceClass(enum.Enum):
    """How far a record may travel.

    critical -> files + git + remote, session -> files, cache -> memory only.
    """

    CRITICAL = "critical"
    SESSION = "session"
    CACHE = "cache"

    @classmethod
    def parse(cls, text: str) -> PersistenceClass:
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown class {text!r} (allowed: {allowed})") from None

    @property
    def to_files(self) -> bool:
        return self is not PersistenceClass.CACHE

    @property
    def to_git(self) -> bool:
        return self is PersistenceClass.CRITICAL

    @property
    def eviction_rank(self) -> int:
        """Lower is evicted first: cache before session before critical."""
        return {"cache": 0, "session": 1, "critical": 2}[self.value]


def check_collection(name: str) -> str:
    """Collections become file names, so they are held to a strict alphabet."""
    _check_common("collection", name, MAX_COLLECTION_LENGTH)
    if not _COLLECTION_CHARS.match(name):
        raise InvalidName(
            f"collection {name!r} may hold only letters, digits, '_' and '-', "
            "and must not start with '-'"
        )
    return name


def check_key(key: str) -> str:
    """Keys live inside JSON files, so only path-like and control-like forms are refused."""
    _check_common("key", key, MAX_KEY_LENGTH)
    return key


def _check_common(what: str, name: str, limit: int) -> None:
    if not isinstance(name, str) or name == "":
        raise InvalidName(f"{what} must be a non-empty string")
    if len(name) > limit:
        raise InvalidName(f"{what} is {len(name)} characters long (at most {limit})")
    if "/" in name or "\x00" in name or ".." in name:
        raise InvalidName(f"{what} {name!r} must not contain '/', '..' or NUL")


class Entry:
    """One record in memory. The value is kept as compact JSON bytes: cheaper than a parsed object
    (RSS at 100k records) and served over the socket without re-encoding."""

    __slots__ = ("atime", "cls", "dirty_files", "dirty_git", "loc", "mtime", "value")

    def __init__(
        self,
        value: bytes,
        cls: PersistenceClass,
        mtime: float,
        dirty_files: bool,
        dirty_git: bool,
    ) -> None:
        self.value: bytes | None = value
        self.cls = cls
        self.mtime = mtime
        self.atime = mtime
        self.dirty_files = dirty_files
        self.dirty_git = dirty_git
        self.loc: tuple[str, int, int] | None = None  # warm file, offset, length

    @property
    def size(self) -> int:
        """Bytes charged against the memory limit: value plus a fixed per-record overhead."""
        return len(self.value or b"") + ENTRY_OVERHEAD


# Measured: a slotted Entry, its two floats, the dict slots and the key string cost ~250 B.
ENTRY_OVERHEAD = 250
