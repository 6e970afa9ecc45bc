"""Replicas: the storage's side of each configured tier.

A replica turns the memory store's pending bits into its backend's writes. The storage calls
every replica through the same verbs and never by name:

- `note_put`/`note_delete`/`note_bulk`: the memory store queued work for this tier;
- `writes_through(cls)` / `write_through(change)`: a tier the put path must reach before the
  ack (postgres in sync mode); its bit is never pending; it returns the version the tier
  settled on (the record's ETag), or None when the tier keeps no versions;
- `decides_conditions(cls)` / `write_conditional(change, if_match, if_absent)`: the tier that
  decides conditional writes of a class (postgres, whatever its mode), else the local store;
- `ship(report, compact)`: write what is pending (files: changed warm files; git: a commit),
  then `covered` names the last journal segment the backend holds;
- `publish(deadline)`: make it visible beyond this host (git: push) within a deadline;
- `due(now)` / `retry_in(now)`: whether a periodic pass should ship it, and when a failed
  publish is tried again; `every_pass` replicas ship on every pass, before memory is aged;
- `restore_all()` / `restore_newer(since, lost)` / `restore_mark()`: the restore's ways in
  (bootstrap.restore), and `ready(restored_from)` once every tier and the journal are in;
- `status()` (sections merged into GET /v1/status), `close()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..config import AgentConfig
from ..errors import PreconditionFailed
from ..journal import Journal
from ..memory import MemoryStore
from ..policy import Routes, class_override
from ..records import Change, Entry, Guarded, PersistenceClass

# (collection, key, class, mtime, value or None for a delete): a record another copy holds
Incoming = tuple[str, str, PersistenceClass, float, bytes | None]


@dataclass
class PassReport:
    """What a pass did (POST /v1/tier returns it)."""

    files_written: int = 0
    records_written: int = 0
    evicted: int = 0
    expired_cache: int = 0
    expired: int = 0  # records whose time to live had passed, deleted from every tier
    journal_segments_dropped: int = 0
    compacted: bool = False
    seconds: float = 0.0


@dataclass
class Context:
    """What a replica may use of the storage: no replica knows another."""

    config: AgentConfig
    clock: Callable[[], float]
    memory: MemoryStore
    journal: Journal
    routes: Routes
    host: str
    root: Path
    # drop the journal segments every replica holds; returns how many went
    checkpoint_journal: Callable[[], int]
    # take records from another copy where they are newer (journaled like puts); returns count
    adopt: Callable[[Iterable[Incoming]], int]
    # (collection, class, mask): records were restored owing work to the tiers in mask
    note_bulk: Callable[[str, PersistenceClass, int], None]
    # held by every pass that writes a tier (one at a time); never while publishing
    maintenance: threading.Lock

    def override(self, collection: str, cls: PersistenceClass) -> str | None:
        return class_override(cls, self.config.class_of(collection))


class Replica(Protocol):
    name: ClassVar[str]
    every_pass: ClassVar[bool]
    bit: int
    covered: int  # the last journal segment this tier holds
    commits: int  # units published so far (git commits), for the metrics

    def open(self) -> None: ...

    def note_put(self, collection: str, key: str, entry: Entry, now: float) -> None: ...

    def note_delete(
        self, collection: str, key: str, cls: PersistenceClass, when: float
    ) -> None: ...

    def note_bulk(self, collection: str, cls: PersistenceClass) -> None: ...

    def pending_work(self) -> bool: ...

    def writes_through(self, cls: PersistenceClass) -> bool: ...

    def write_through(self, change: Change) -> int | None: ...

    def decides_conditions(self, cls: PersistenceClass) -> bool: ...

    def write_conditional(
        self, change: Change, if_match: int | None, if_absent: bool
    ) -> int: ...

    def write_through_many(self, changes: Sequence[Change]) -> list[int] | None: ...

    def settle_backlog(self, names: Iterable[tuple[str, str]]) -> None: ...

    def decide_batch(
        self, ops: Sequence[Guarded], atomic: bool
    ) -> tuple[list[int | None], dict[int, PreconditionFailed]]: ...

    def ship(self, report: PassReport, compact: bool = True) -> dict[str, Any]: ...

    def publish(self, deadline: float) -> bool: ...

    def published(self) -> bool | None: ...

    def due(self, now: float) -> bool: ...

    def retry_in(self, now: float) -> float | None: ...

    def background(self) -> Callable[[], Any] | None: ...

    def restore_all(self) -> str | None: ...

    def restore_newer(self, since: float, lost: list[str]) -> None: ...

    def restore_mark(self) -> tuple[float | None, list[str]]: ...

    def ready(self, restored_from: str) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


__all__ = ["Context", "Incoming", "PassReport", "Replica"]


class WrittenByItsPass:
    """The put-path half of a Replica for a tier that only its pass writes (files, git): it
    never writes through, and the local store, not it, decides conditional writes."""

    def writes_through(self, cls: PersistenceClass) -> bool:
        return False

    def write_through(self, change: Change) -> int | None:
        raise NotImplementedError("this tier is written by its pass, never on the put path")

    def write_through_many(self, changes: Sequence[Change]) -> list[int] | None:
        raise NotImplementedError("this tier is written by its pass, never on the put path")

    def decides_conditions(self, cls: PersistenceClass) -> bool:
        return False

    def write_conditional(self, change: Change, if_match: int | None, if_absent: bool) -> int:
        raise NotImplementedError("the local store decides conditional writes, not this tier")

    def settle_backlog(self, names: Iterable[tuple[str, str]]) -> None:
        raise NotImplementedError("the local store decides conditional writes, not this tier")

    def decide_batch(
        self, ops: Sequence[Guarded], atomic: bool
    ) -> tuple[list[int | None], dict[int, PreconditionFailed]]:
        raise NotImplementedError("the local store decides conditional writes, not this tier")
