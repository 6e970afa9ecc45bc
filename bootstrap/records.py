"""Persistence classes, name rules and the in-memory entry that carries one record."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import orjson

MAX_COLLECTION_LENGTH = 128
MAX_KEY_LENGTH = 512
_COLLECTION_CHARS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


# Values nest at most this deep. orjson encodes at most 254 levels, and a value travels inside
# envelopes (the list response, journal and git lines), so half of that leaves ample room.
MAX_VALUE_DEPTH = 128
# orjson keeps integers exactly only in this range; outside it they silently become doubles.
MIN_EXACT_INT = -(2**63)
MAX_EXACT_INT = 2**64 - 1


class InvalidName(ValueError):
    """A collection or key that would be unsafe as a file name or ambiguous in a URL."""


class InvalidValue(ValueError):
    """A body that is not JSON, or JSON the agent could not return exactly as acknowledged."""


class PersistenceClass(enum.Enum):
    """How far a record may travel, and how its put is acknowledged. Which tiers a class is
    routed to is configuration (`routes`, see bootstrap.policy), not part of the class:
    by default critical -> files + git, session -> files, cache -> memory only. A critical put
    returns once it is durable; the others once they are in memory and the journal."""

    CRITICAL = "critical"
    SESSION = "session"
    CACHE = "cache"

    def __init__(self, value: str) -> None:
        # Plain attributes, not properties: they are read on every put (hot path).
        self.waits_for_sync = value == "critical"
        self.eviction_rank = {"cache": 0, "session": 1, "critical": 2}[value]

    @classmethod
    def parse(cls, text: str) -> PersistenceClass:
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown class {text!r} (allowed: {allowed})") from None


_VALID_COLLECTIONS: set[str] = set()


def check_collection(name: str) -> str:
    """Collections become file names, so they are held to a strict alphabet."""
    if name in _VALID_COLLECTIONS:
        return name
    _check_common("collection", name, MAX_COLLECTION_LENGTH)
    if not _COLLECTION_CHARS.match(name):
        raise InvalidName(
            f"collection {name!r} may hold only letters, digits, '_' and '-', "
            "and must not start with '-'"
        )
    if len(_VALID_COLLECTIONS) < 10_000:
        _VALID_COLLECTIONS.add(name)
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


def decode_name(what: str, raw: bytes) -> str:
    """Percent-decode one path segment strictly: %FF and %FE must not both become U+FFFD and
    overwrite each other's record."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidName(f"{what} {raw.decode('ascii', 'replace')!r} is not valid UTF-8") from None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_LONG_DIGITS = re.compile(rb"\d{19}")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def validate_value(raw: bytes, reencode: bool = True) -> bytes:
    """The one gate for stored values: refuse what could not be read back exactly (too deep,
    integers beyond 64 bits), and return the compact encoding (reencode=False: bytes that orjson
    wrote itself are only checked for depth)."""
    if _nested_deeper_than(raw, MAX_VALUE_DEPTH):
        raise InvalidValue(f"value is nested deeper than {MAX_VALUE_DEPTH} levels (the maximum)")
    if not reencode:
        return raw
    if _LONG_DIGITS.search(raw):  # before orjson, which reads 10**400 as "infinity"
        _check_integers(raw)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"body is not JSON: {exc}") from None
    return orjson.dumps(parsed)


def _nested_deeper_than(raw: bytes, limit: int) -> bool:
    """Depth from the bytes alone; the cheap count settles nearly every value."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    for _ in range(limit):  # each pass peels one level off every innermost container
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
        if not brackets:
            return False
    return bool(brackets)


def _check_integers(raw: bytes) -> None:
    for match in _NUMBER.finditer(_STRING.sub(b'""', raw)):
        token = match.group()
        if b"." in token or b"e" in token or b"E" in token:
            continue
        # More than 20 digits is out of range anyway (and int() refuses over 4,300).
        if len(token.lstrip(b"-")) > 20 or not MIN_EXACT_INT <= int(token) <= MAX_EXACT_INT:
            shown = token.decode() if len(token) <= 40 else f"{token[:40].decode()}..."
            raise InvalidValue(
                f"integer {shown} is outside -2**63..2**64-1 and would not read back exactly; "
                "store it as a string"
            )


def exact_bytes(data: bytes) -> bytes:
    """An exact-size copy of bytes made by orjson, for anything kept in memory: orjson's output
    keeps ~4 KiB of heap per object (measured: 412 MB for 100k 200-byte values)."""
    return memoryview(data).tobytes()


def version_of(mtime: float) -> int:
    """A record's version from its mtime (float seconds): exact for the write clock's values,
    whose mtime is `version / 1e6`."""
    return round(mtime * 1_000_000)


class Entry:
    """One record in memory. The value is kept as compact JSON bytes: cheaper than a parsed object
    (RSS at 100k records) and served over the socket without re-encoding. `pending` holds one
    bit per configured tier (bootstrap.policy.Routes) the record still has to reach: one int
    slot, whatever the number of tiers."""

    __slots__ = ("atime", "cls", "loc", "mtime", "pending", "value")

    def __init__(self, value: bytes, cls: PersistenceClass, mtime: float, pending: int) -> None:
        self.value: bytes | None = value
        self.cls = cls
        self.mtime = mtime
        self.atime = mtime
        self.pending = pending
        self.loc: int | None = None  # where the evictable copy lives (a warm file's line)

    @property
    def version(self) -> int:
        """The record's version (its ETag): the write clock's microseconds, kept as the mtime
        that every tier already persists, so it needs no field of its own."""
        return version_of(self.mtime)

    @property
    def size(self) -> int:
        """Bytes charged against the memory limit: value plus a fixed per-record overhead."""
        return len(self.value or b"") + ENTRY_OVERHEAD


# Measured: a slotted Entry, its two floats, the dict slots and the key string cost ~250 B.
ENTRY_OVERHEAD = 250


@dataclass(frozen=True)
class Change:
    """One record's new state, as the storage hands it to a tier and a tier reads it back
    (value None: a delete). `version` is the tier's own when it keeps one (0 otherwise)."""

    collection: str
    key: str
    value: bytes | None
    cls: str
    mtime: float
    version: int = 0
    host: str = ""
