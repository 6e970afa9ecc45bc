"""Git backup time against the number of changed records, at 10k and 100k critical records.

The store holds N_TOTAL critical records over the four critical collections. The first backup
writes the snapshot; then, for each change count, that many random records get a new value and
`backup_git(push=False)` is timed (the commit only), then `push()` to a file:// bare remote is
timed separately. Running the same change counts at two totals shows whether the cost follows
the changes or the total. Finally, 100-change backups are repeated until GitTier.needs_snapshot()
says the segments are due for compaction, and that backup (a fresh snapshot) is timed too.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bootstrap.records import PersistenceClass
from bootstrap.storage import HybridStorage

from .common import (
    CRITICAL_COLLECTIONS,
    PhaseTimer,
    agent_config,
    check_stop,
    dir_bytes,
    loadavg,
    make_values,
)

CHANGES = (10, 100, 1_000, 10_000)
REPEATS = 3
# Steps of backup_git() timed apart (private names of the agent: skipped if they change).
# (tier, replica method): the backup's steps, timed apart.
REPLICA_STEPS = (("git", "_collect"), ("git", "_snapshot_files"), ("files", "ship"))
GIT_STEPS = ("commit_changes", "commit_snapshot", "squash_history", "_write_commit")


def install_timer(storage: HybridStorage) -> PhaseTimer:
    timer = PhaseTimer()
    for tier, step in REPLICA_STEPS:
        timer.wrap(storage.replica(tier), step, f"{tier}.{step}")
    for step in GIT_STEPS:
        timer.wrap(storage.tier_backend("git"), step, f"git.{step}")
    return timer


def median_steps(runs: list[dict[str, float]]) -> dict[str, float]:
    """Milliseconds per step, median over the runs."""
    if not runs:
        return {}
    return {k: round(statistics.median(r[k] for r in runs) * 1000, 1) for k in runs[0]}


def make_remote(path: Path) -> str:
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    return f"file://{path}"


def record_ids(total: int) -> list[tuple[str, str]]:
    """(collection, key) pairs spread evenly over the critical collections."""
    n = len(CRITICAL_COLLECTIONS)
    return [(CRITICAL_COLLECTIONS[i % n], f"r{i:07d}") for i in range(total)]


def fill(storage: HybridStorage, ids: list[tuple[str, str]], values: list[bytes]) -> float:
    """Load records without a per-put fdatasync, then one sync. Returns seconds."""
    started = time.perf_counter()
    for i, (collection, key) in enumerate(ids):
        storage.put_json(
            collection, key, values[i % len(values)], PersistenceClass.CRITICAL,
            wait=False, canonical=True,
        )
    storage.sync()
    return time.perf_counter() - started


def change(storage: HybridStorage, ids: list[tuple[str, str]], count: int,
           values: list[bytes], rng: random.Random) -> None:
    check_stop()
    for collection, key in rng.sample(ids, count):
        storage.put_json(
            collection, key, values[rng.randrange(len(values))], PersistenceClass.CRITICAL,
            wait=False, canonical=True,
        )
    storage.sync()


def timed_backup(
    storage: HybridStorage, timer: PhaseTimer | None = None
) -> tuple[float, bool, dict[str, float]]:
    """Seconds for backup_git(push=False), whether it wrote a fresh snapshot, and its steps."""
    snapshot_due = storage.tier_backend("git").needs_snapshot()
    if timer is not None:
        timer.seconds = dict.fromkeys(timer.seconds, 0.0)
    started = time.perf_counter()
    storage.backup_git(push=False)
    seconds = time.perf_counter() - started
    return seconds, snapshot_due, dict(timer.seconds) if timer is not None else {}


def timed_push(storage: HybridStorage) -> float:
    started = time.perf_counter()
    if not storage.push():
        error = storage.status()["backup"]["last_push_error"]
        raise RuntimeError(f"push failed: {error}")
    return time.perf_counter() - started


def backup_series(root: Path, total: int, changes: tuple[int, ...],
                  compaction: bool) -> tuple[dict[str, Any], HybridStorage]:
    """Run the series at one total; return the results and the (open) storage."""
    values = make_values(total, seed=1)  # one distinct value per record
    other = make_values(total, seed=2)  # the new values changed records get
    rng = random.Random(total)
    remote = make_remote(root / "remote.git")
    storage = HybridStorage(agent_config(root, remote=remote))
    storage.initialize()
    timer = install_timer(storage)
    ids = record_ids(total)
    out: dict[str, Any] = {"records": total, "fill_s": round(fill(storage, ids, values), 3)}
    seconds, _, steps = timed_backup(storage, timer)
    out["initial_snapshot_s"] = round(seconds, 3)
    out["initial_snapshot_steps_ms"] = median_steps([steps])
    out["initial_push_s"] = round(timed_push(storage), 3)
    rows = []
    for count in changes:
        commits, pushes, snapshots, step_runs = [], [], 0, []
        for _ in range(REPEATS):
            change(storage, ids, count, other, rng)
            seconds, snap, steps = timed_backup(storage, timer)
            if snap:
                snapshots += 1  # a compaction, not a segment: reported apart
            else:
                commits.append(seconds)
                step_runs.append(steps)
            pushes.append(timed_push(storage))
        rows.append(
            {
                "changed": count,
                "commit_ms": round(statistics.median(commits) * 1000, 1) if commits else None,
                "commit_ms_all": [round(s * 1000, 1) for s in commits],
                "push_ms": round(statistics.median(pushes) * 1000, 1),
                "snapshots_taken": snapshots,
                "steps_ms": median_steps(step_runs),
            }
        )
    out["series"] = rows
    if compaction:
        segments_needed = 0
        while not storage.tier_backend("git").needs_snapshot():
            change(storage, ids, 100, other, rng)
            storage.backup_git(push=False)
            segments_needed += 1
        segments = len(storage.tier_backend("git").state.segments)
        change(storage, ids, 100, other, rng)
        seconds, snap, steps = timed_backup(storage, timer)
        assert snap, "needs_snapshot() said a snapshot was due"
        out["compaction"] = {
            "segments_before": segments,
            "backups_to_reach_it": segments_needed,
            "snapshot_backup_ms": round(seconds * 1000, 1),
            "steps_ms": median_steps([steps]),
            "push_after_ms": round(timed_push(storage) * 1000, 1),
        }
    # Leave changes for the caller's close(backup=True), as a SIGTERM after some writes does:
    # the shutdown writes the warm files and then commits, so git ends up newer than them,
    # which is the usual state a restart finds (restore.py measures it).
    change(storage, ids, 100, other, rng)
    out["repo_bytes"] = dir_bytes(root / "backup.git")
    out["remote"] = remote
    out["load"] = loadavg()
    return out, storage


def run_backup(root: Path) -> dict[str, Any]:
    """Both series. Leaves root/10k and root/100k shut down as SIGTERM does (warm files, then
    a final commit, pushed), which restore.py and rss.py reuse as their sources."""
    started = time.perf_counter()
    small, storage = backup_series(root / "10k", 10_000, CHANGES[:3], compaction=False)
    storage.close(backup=True)  # warm files + a final commit, pushed: the restore sources
    big, storage = backup_series(root / "100k", 100_000, CHANGES, compaction=True)
    storage.close(backup=True)
    print(f"  backup: done in {time.perf_counter() - started:.1f}s, load {loadavg()}")
    return {"10k": small, "100k": big}
