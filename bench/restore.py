"""Restore time: the whole HybridStorage.initialize(), for 10k and 100k critical records.

Three sources, as the agent chooses them at start:
- warm files: the storage path the backup section left as a SIGTERM shutdown does (files,
  manifest, then a final commit, so the local git tip is newer than the files);
- git-local: an empty storage path whose local backup repository survived (a copy);
- git clone: an empty storage path and no repository, the same remote and branch (a new VM).
The page cache is warm for every source (dropping it would disturb the machine's other users).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import bootstrap.restore as restoring
from bootstrap.storage import HybridStorage

from .common import PhaseTimer, agent_config, check_stop, loadavg, seconds_median

REPEATS = 3


def _close_quietly(storage: HybridStorage) -> None:
    """Release files without the shutdown flush: restore cost only, nothing written after.
    The storage-path lock (one agent per path) is dropped too, for the next sample."""
    storage.abandon()


# Steps of initialize() timed apart (private names of the agent: skipped if they change).
# (tier, replica method): the restore's steps, timed apart.
REPLICA_STEPS = (("files", "restore_all"), ("files", "ensure_views"), ("git", "restore_all"),
                 ("git", "restore_newer"), ("git", "_apply"))
GIT_STEPS = ("open", "fetch", "read_tip", "read_all", "_read_blobs")


def timed_initialize(
    root: Path, remote: str | None, expect: int, source: str, phases: list[dict[str, float]]
) -> float:
    check_stop()
    storage = HybridStorage(agent_config(root, remote=remote))
    timer = PhaseTimer()
    for tier, step in REPLICA_STEPS:
        timer.wrap(storage.replica(tier), step, f"{tier}.{step}")
    timer.wrap(restoring, "replay_journal")
    for step in GIT_STEPS:
        timer.wrap(storage.tier_backend("git"), step, f"git.{step}")
    started = time.perf_counter()
    got = storage.initialize()
    seconds = time.perf_counter() - started
    try:
        if got != source or storage.record_count() < expect:
            raise RuntimeError(
                f"restore from {source} gave {got} with {storage.record_count()} records"
            )
    finally:
        _close_quietly(storage)
    phases.append(timer.rounded())
    return seconds


def restore_size(base: Path, scratch: Path, expect: int) -> dict[str, Any]:
    remote = (base / "remote.git").as_uri()
    warm, local, clone = [], [], []
    steps: dict[str, list[dict[str, float]]] = {"warm_files": [], "git_local": [], "git_clone": []}
    for i in range(REPEATS):
        warm.append(timed_initialize(base, remote, expect, "files", steps["warm_files"]))
        local_root = scratch / f"local-{i}"
        local_root.mkdir(parents=True)
        shutil.copytree(base / "backup.git", local_root / "backup.git", symlinks=True)
        local.append(
            timed_initialize(local_root, remote, expect, "git-local", steps["git_local"])
        )
        shutil.rmtree(local_root)
        clone_root = scratch / f"clone-{i}"
        clone_root.mkdir(parents=True)
        clone.append(
            timed_initialize(clone_root, remote, expect, "git-remote", steps["git_clone"])
        )
        shutil.rmtree(clone_root)
    return {
        "records": expect,
        "warm_files": seconds_median(warm),
        "git_local": seconds_median(local),
        "git_clone": seconds_median(clone),
        # per step, the sample whose total was the median (steps nest: _load_git holds fetch)
        "steps_s": {
            name: runs[sorted(range(len(runs)), key=lambda j: times[j])[len(runs) // 2]]
            for (name, runs), times in zip(steps.items(), (warm, local, clone), strict=True)
        },
    }


def run_restore(backup_root: Path, scratch: Path) -> dict[str, Any]:
    started = time.perf_counter()
    out = {
        "10k": restore_size(backup_root / "10k", scratch / "10k", 10_000),
        "100k": restore_size(backup_root / "100k", scratch / "100k", 100_000),
        "load": loadavg(),
    }
    print(f"  restore: done in {time.perf_counter() - started:.1f}s, load {loadavg()}")
    return out
