"""Which tiers a write must reach before its ack, and which tier decides its conditions. Apart
from the facade because single puts, deletes, batches and the API's choice of thread all ask
the same two questions of the routes and the replicas, by pending bit, never by tier name."""

from __future__ import annotations

from collections.abc import Sequence

from .policy import Routes
from .records import Change, PersistenceClass
from .replicas import Replica


class TierRouting:
    """The routes and the configured replicas, asked per persistence class."""

    def __init__(self, routes: Routes, replicas: Sequence[Replica]) -> None:
        self.routes = routes
        self.replicas = replicas

    def writes_through(self, cls: PersistenceClass) -> bool:
        """True when a write of this class must reach a tier before it is acknowledged."""
        mask = self.routes.mask(cls)
        return any(mask & r.bit and r.writes_through(cls) for r in self.replicas)

    def write_through(self, change: Change, cls: PersistenceClass) -> tuple[int, int | None]:
        """Reach the tiers that must hold a write before it is acknowledged (Unavailable:
        nothing written): the route's mask less those tiers, whose bits are never pending,
        and the version they settled on (None when none keeps versions)."""
        mask = self.routes.mask(cls)
        settled: int | None = None
        for replica in self.replicas:
            if mask & replica.bit and replica.writes_through(cls):
                version = replica.write_through(change)
                if version is not None:
                    settled = max(settled or 0, version)
                mask &= ~replica.bit
        return mask, settled

    def arbiter(self, cls: PersistenceClass) -> Replica | None:
        """The tier that decides conditional writes of this class (postgres when routed), or
        None: the local store decides, under its lock."""
        mask = self.routes.mask(cls)
        for replica in self.replicas:
            if mask & replica.bit and replica.decides_conditions(cls):
                return replica
        return None
