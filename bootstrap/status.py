"""The agent's status document (`GET /v1/status`): per-class counts, pending work per tier,
memory, the journal and each tier's own section. Apart from the storage facade because it
only reads: it walks the memory store once under its lock and asks each replica for its part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .records import PersistenceClass

if TYPE_CHECKING:
    from .storage import HybridStorage


def build_status(storage: HybridStorage) -> dict[str, Any]:
    """What `GET /v1/status` shows. No secrets: remote URLs and DSNs are redacted."""
    memory = storage.memory
    tiers = storage.routes.tiers
    with memory.lock:
        per_class = {c.value: {"records": 0, "in_memory": 0} for c in PersistenceClass}
        pending = [0] * len(tiers)
        for _, coll in memory.collections():
            for entry in coll.values():
                stats = per_class[entry.cls.value]
                stats["records"] += 1
                stats["in_memory"] += entry.value is not None
                bits = entry.pending
                index = 0
                while bits:
                    pending[index] += bits & 1
                    bits >>= 1
                    index += 1
        counts = memory.counts()
        memory_bytes = memory.used
    now = storage.clock()
    result: dict[str, Any] = {
        "host": storage.host,
        "storage_path": str(storage.root),
        "restored_from": storage.restored_from,
        "uptime_s": round(now - storage.started_at, 3),
        "records": sum(counts.values()),
        "collections": counts,
        "classes": per_class,
        "routes": {cls: list(route) for cls, route in storage.config.routes.items()},
        "journal": {"bytes": storage.journal.size_bytes()},
        "tiers": {
            "memory": {
                "bytes": memory_bytes,
                "limit": memory.limit,
                "records": sum(c["in_memory"] for c in per_class.values()),
                "over_limit": memory_bytes > memory.limit,
            },
        },
        "dirty": {
            **dict(zip(tiers, pending, strict=True)),
            "unevictable_over_limit": memory_bytes > memory.limit,
        },
    }
    for replica in storage.replicas:
        for section, body in replica.status().items():
            result.setdefault(section, {}).update(body)
    return result
