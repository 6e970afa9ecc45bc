"""Lifecycle hooks (on_start, on_shutdown, on_tiering_pass) and the library's front door.

on_start restores (warm files + journal, else the git backup), on_tiering_pass tiers (every
tiering.file_backup_interval, on memory pressure and on POST /v1/tier), on_shutdown
flushes, commits and pushes within the stop budget: 25 s by default to fit GCE's 30 s
preemption notice, 8 s for Cloud Run's 10 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .config import DEFAULTS, AgentConfig, config_from_mapping
from .preemption import PreemptionWatcher, running_on_gce
from .scheduler import TieringScheduler
from .storage import HybridStorage, TierReport

log = logging.getLogger("spine.lifecycle")

# Seconds kept back from the budget for what follows the push: closing files and the socket,
# joining threads, interpreter exit. With 1 s, a hanging push let the process exit 7.4 s into an
# 8 s budget on a loaded 2-core machine: too close to systemd's SIGKILL.
SHUTDOWN_MARGIN = 2.0


class Lifecycle:
    """The three hooks, with the stop budget enforced on shutdown."""

    def __init__(self, storage: HybridStorage) -> None:
        self.storage = storage
        self.stop_budget = storage.config.stop_budget

    def on_start(self) -> str:
        return self.storage.initialize()

    def on_tiering_pass(self) -> TierReport:
        report = self.storage.tier()
        log.info(
            "tiering pass",
            extra={
                "files_written": report.files_written,
                "records_written": report.records_written,
                "evicted": report.evicted,
                "expired_cache": report.expired_cache,
                "seconds": round(report.seconds, 4),
            },
        )
        return report

    def on_shutdown(self, started: float | None = None) -> dict[str, Any]:
        """Flush, commit and push; the push gets whatever is left of the budget."""
        started = time.monotonic() if started is None else started
        remaining = self.stop_budget - (time.monotonic() - started) - SHUTDOWN_MARGIN
        result: dict[str, Any] = {}
        try:
            result = self.storage.flush(backup=True, push_timeout=max(1.0, remaining))
        finally:
            self.storage.close(backup=False)
        result["seconds"] = round(time.monotonic() - started, 3)
        log.info("shutdown backup done", extra=result)
        return result


class HybridVMStorage:
    """The library API of the design notes:

    storage = HybridVMStorage(memory_limit="100MB", file_backup_interval="5min",
                              git_backup_interval="30min", tiering_enabled=True)
    storage.initialize()
    storage.put("agents", "a1", {...}); storage.get("agents", "a1")
    storage.shutdown()
    """

    def __init__(
        self,
        memory_limit: str = DEFAULTS["memory_limit"],
        file_backup_interval: str = DEFAULTS["tiering.file_backup_interval"],
        git_backup_interval: str = DEFAULTS["tiering.git_backup_interval"],
        tiering_enabled: bool = DEFAULTS["tiering.enabled"],
        storage_path: str | None = None,
        config: AgentConfig | None = None,
        clock: Callable[[], float] = time.time,
        **overrides: Any,
    ) -> None:
        if config is None:
            raw: dict[str, Any] = {"memory_limit": memory_limit, **overrides}
            raw.setdefault("tiering", {})
            raw["tiering"] = {
                **raw["tiering"],
                "enabled": tiering_enabled,
                "file_backup_interval": file_backup_interval,
                "git_backup_interval": git_backup_interval,
            }
            if storage_path is not None:
                raw["storage_path"] = storage_path
            # config_from_mapping validates: a bad string fails here, naming its key.
            config = config_from_mapping(raw)
        self.config = config
        self.storage = HybridStorage(config, clock=clock)
        self.hooks = Lifecycle(self.storage)
        self.scheduler = TieringScheduler(
            self.hooks.on_tiering_pass,
            config.tiering.file_backup_interval,
            retry=self.storage.push,
            retry_in=self.storage.seconds_until_push_retry,
        )
        self.storage.on_pressure = self.scheduler.trigger
        self.watcher: PreemptionWatcher | None = None
        watch = config.preemption.watch
        if watch == "on" or (watch == "auto" and running_on_gce()):
            self.watcher = PreemptionWatcher(self.on_preempted, config.preemption.metadata_url)

    def initialize(self) -> str:
        source = self.hooks.on_start()
        self.start_background()
        return source

    def start_background(self) -> None:
        """Run the tiers' start-up checks (git: merge a newer backup from the remote), and
        start the tiering-pass hook (and push retries) unless tiering is disabled."""
        for task in self.storage.background_tasks():
            threading.Thread(target=task, name="spine-remote-check", daemon=True).start()
        if self.config.tiering.enabled:
            self.scheduler.start()
        if self.watcher is not None:
            self.watcher.start()

    def on_preempted(self) -> dict[str, Any]:
        """Spot preemption announced: flush, commit and push now, inside the stop budget."""
        return self.storage.flush(backup=True, push_timeout=self.config.stop_budget)

    def shutdown(self, started: float | None = None) -> dict[str, Any]:
        """Stop the scheduler, then flush, commit and push within the stop budget counted
        from `started` (the moment the stop signal arrived)."""
        started = time.monotonic() if started is None else started
        if self.watcher is not None:
            self.watcher.stop()
        self.scheduler.stop(timeout=max(1.0, self.config.stop_budget / 2))
        return self.hooks.on_shutdown(started=started)

    def put(
        self,
        collection: str,
        key: str,
        value: Any,
        cls: str | None = None,
        *,
        if_match: int | None = None,
        if_absent: bool = False,
    ) -> int:
        """Store a value; the record's new version. With `if_match` only if the record is
        still at that version, with `if_absent` only if there is none: else
        bootstrap.errors.PreconditionFailed, and nothing is written."""
        return self.storage.put_versioned(
            collection, key, value, cls, if_match=if_match, if_absent=if_absent
        )[1]

    def get(self, collection: str, key: str, default: Any = None) -> Any:
        return self.storage.get(collection, key, default)

    def get_versioned(self, collection: str, key: str) -> tuple[Any, int] | None:
        """(value, version) read together, or None: the start of a read-modify-write."""
        return self.storage.get_versioned(collection, key)

    def delete(self, collection: str, key: str, *, if_match: int | None = None) -> bool:
        """Delete a record; False when absent. With `if_match` only at that version (else
        PreconditionFailed, also when absent)."""
        return self.storage.delete(collection, key, if_match=if_match)

    def status(self) -> dict[str, Any]:
        return self.storage.status()


__all__ = ["HybridVMStorage", "Lifecycle"]
