"""What a write may require of the record it replaces: a version (If-Match), its absence
(If-None-Match: *), a time to live only where the class allows one, and what counts as absent
(an expired record). Pure functions: the single puts and the batches both apply them."""

from __future__ import annotations

from collections.abc import Callable

from .errors import BadRequest, PreconditionFailed
from .records import Entry, PersistenceClass


def live(entry: Entry | None, clock: Callable[[], float]) -> Entry | None:
    """The entry, or None once its time to live has passed (it counts as absent)."""
    if entry is None or entry.expires is None or entry.expires > clock():
        return entry
    return None


def check_precondition(
    collection: str,
    key: str,
    old: Entry | None,
    if_match: int | None,
    if_absent: bool,
) -> None:
    """Raise PreconditionFailed unless the stored record is as the writer expects."""
    current = None if old is None else old.version
    if if_absent and current is not None:
        raise PreconditionFailed(
            current, f"precondition failed: {collection}/{key} exists (version {current})"
        )
    if if_match is not None and current != if_match:
        shown = "is absent" if current is None else f"is at version {current}"
        raise PreconditionFailed(
            current,
            f"precondition failed: {collection}/{key} {shown}, not {if_match}",
        )


def check_ttl(collection: str, key: str, cls: PersistenceClass, ttl: int) -> None:
    """A time to live is refused on critical records (BadRequest naming the record)."""
    if cls is PersistenceClass.CRITICAL:
        raise BadRequest(
            f"ttl is refused on critical records ({collection}/{key} is critical: it is kept "
            "until deleted); give it class session or cache"
        )
