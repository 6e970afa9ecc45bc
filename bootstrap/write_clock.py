"""The agent's write clock: the version (µs) every write takes. Apart from the facade because
the single puts, the batches and the TTL pass all tick it, and each must see the same rule:
strictly increasing, past every version loaded or settled on by a tier."""

from __future__ import annotations

from collections.abc import Callable

from .records import Entry, version_of


class WriteClock:
    """Hands out versions; callers hold the memory store's lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.last = 0  # every write takes a larger value

    def next(self, old: Entry | None) -> int:
        """Tick the write clock (caller holds the lock): max(now µs, last + 1, the record's own
        version + 1). Strictly increasing, so a version is never handed out twice, even when
        the system clock steps back or a merged backup carries a time from the future."""
        version = max(version_of(self.clock()), self.last + 1)
        if old is not None and old.version >= version:
            version = old.version + 1
        self.last = version
        return version

    def observe(self, version: int) -> None:
        """A tier settled on `version` (caller holds the lock): the write clock moves past it,
        so this agent's next write is newer."""
        if version > self.last:
            self.last = version
