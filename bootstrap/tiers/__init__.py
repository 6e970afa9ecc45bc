"""The tier contract, and the table name -> implementation.

Two sides of one tier (litestream keeps the same split between a replica and its client):

- the backend (`Tier`): a store that knows only itself. `open()` reports the newest change it
  holds, `read(since)` yields changes from that point (every record with `since=None`),
  `write(changes)` takes a batch (idempotent, newest mtime wins, `value=None` deletes),
  `publish(deadline)` commits, pushes or flushes, `status()` and `close()`. The contract tests
  (tests/unit/test_tier_contract.py) hold every backend to it.
- the replica (`bootstrap.replicas.Replica`): the storage's policy for that backend, fed by
  the memory store's per-entry pending bits; the storage calls it without knowing its name.

Adding a tier is one module that provides a replica (plus its backend) and one line in TIERS.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol

from ..errors import Unavailable
from ..records import Change

# name -> "module:Replica factory". The order is the bit order when routes list several.
TIERS: dict[str, str] = {
    "files": "bootstrap.replicas.files:FilesReplica",
    "git": "bootstrap.replicas.git:GitReplica",
    "postgres": "bootstrap.replicas.postgres:PostgresReplica",
}
# Tiers that only copy another one and must follow it in a route: name -> the tier it copies.
FOLLOWS: dict[str, str] = {"git": "files"}
# Tiers a memory-only class (cache) may never be routed to: every tier today is durable.
MEMORY_ONLY_CLASSES = ("cache",)


class TierUnavailable(Unavailable):
    """The backend cannot be reached now; the caller keeps the work pending and retries. The
    storage's Unavailable: one that reaches the API is a 503 with its one line."""


Mark = int | float


class Tier(Protocol):
    """What every backend offers (see the module docstring)."""

    name: ClassVar[str]

    def open(self) -> Mark | None: ...

    def read(self, since: Mark | None) -> Iterable[Change]: ...

    def write(self, changes: Sequence[Change]) -> Any: ...

    def publish(self, deadline: float) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def replica_factory(name: str) -> Any:
    """The replica class registered for a tier name (imported on first use)."""
    module_name, _, attribute = TIERS[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


__all__ = ["FOLLOWS", "TIERS", "Change", "Mark", "Tier", "TierUnavailable", "replica_factory"]
