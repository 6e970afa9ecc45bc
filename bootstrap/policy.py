"""Where each persistence class goes, and when its tiers are due: pure, clock-injected.

`Routes` turns the config's `routes:` section (class -> ordered tier names) into one bit per
configured tier, so an entry's pending work is one int (bootstrap.records.Entry.pending). The
order of a route matters: a tier backs up the ones before it (git snapshots the warm files), so
a record restored from a tier is still owed to the tiers listed before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .records import Entry, PersistenceClass


@dataclass(frozen=True)
class Routes:
    """Ordered tier names per class; bit i of a pending mask is `tiers[i]`."""

    by_class: Mapping[PersistenceClass, tuple[str, ...]]
    tiers: tuple[str, ...] = field(init=False)
    _masks: dict[PersistenceClass, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered: list[str] = []
        for cls in PersistenceClass:
            for name in self.by_class.get(cls, ()):
                if name not in ordered:
                    ordered.append(name)
        object.__setattr__(self, "tiers", tuple(ordered))
        masks = {cls: self.mask_of(self.by_class.get(cls, ())) for cls in PersistenceClass}
        object.__setattr__(self, "_masks", masks)

    def bit(self, tier: str) -> int:
        """The tier's bit (0 when it is not configured: nothing is ever pending for it)."""
        return 1 << self.tiers.index(tier) if tier in self.tiers else 0

    def mask_of(self, names: tuple[str, ...] | list[str]) -> int:
        mask = 0
        for name in names:
            mask |= 1 << self.tiers.index(name)
        return mask

    def mask(self, cls: PersistenceClass) -> int:
        """Every tier the class is routed to: a fresh write is pending in all of them."""
        return self._masks[cls]

    def journaled(self, cls: PersistenceClass) -> bool:
        """A class that travels anywhere is written ahead to the journal first."""
        return self._masks[cls] != 0

    def routed(self, cls: PersistenceClass, tier: str) -> bool:
        return bool(self._masks[cls] & self.bit(tier))

    def owed_after_restore(self, cls: PersistenceClass, source: str) -> int:
        """Pending work of a record restored from `source`: the tiers before it in the class's
        route (they back up nothing newer than `source` holds; those after it already hold it)."""
        route = self.by_class.get(cls, ())
        if source not in route:
            return self._masks[cls]
        return self.mask_of(route[: route.index(source)])


def evictable(entry: Entry) -> bool:
    """Only a value no tier still waits for, with a copy to read it back from, may leave."""
    return entry.value is not None and entry.pending == 0 and entry.loc is not None


def class_override(cls: PersistenceClass, mapped: PersistenceClass) -> str | None:
    """None when a record has its collection's mapped class, else the class name (the warm
    file `name.<class>.json` holds such records)."""
    return None if cls is mapped else cls.value


def backup_due(
    now: float,
    last_backup: float,
    oldest_change: float | None,
    interval: float,
    max_age: float,
) -> bool:
    """The interval has passed, or a change has waited longer than `max_age`."""
    aged = oldest_change is not None and now - oldest_change >= max_age
    return now - last_backup >= interval or aged


def retry_delay(failures: int, cap: float, first: float = 5.0) -> float:
    """Seconds before the next attempt after `failures` in a row: doubling, capped."""
    return min(cap, first * 2 ** (failures - 1))
