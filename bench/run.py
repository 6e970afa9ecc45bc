"""`make bench`: every section in one run, results to bench/results/ and a Markdown table.

Everything the bench writes lives in one temp dir (removed at the end) and bench/results/.
Servers are stopped on the way out, also on failure, SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from . import backup, latency, restore, rss, throughput, tsclient
from .common import loadavg, request_stop
from .report import evaluate, markdown
from .systems import start_systems

RESULTS = Path(__file__).resolve().parent / "results"


def _git_version() -> str:
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _agent_commit() -> dict[str, Any]:
    """Which agent was measured: HEAD, plus any uncommitted change under bootstrap/."""
    repo = str(RESULTS.parent.parent)
    head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "bootstrap"],
                           capture_output=True, text=True, check=False).stdout.split("\n")
    return {"head": head or None, "uncommitted": [d[3:] for d in dirty if d.strip()]}


def run(quick: bool, keep: bool) -> dict[str, Any]:
    repeats = 1 if quick else 3
    if quick:
        latency.MAX_SECONDS = 0.3
        tsclient.MAX_SECONDS = 0.3
        throughput.DURATION = 0.3
        backup.REPEATS = restore.REPEATS = 1
    started = time.perf_counter()
    load_start = loadavg()
    agent = _agent_commit()  # before the run: the lead may edit bootstrap/ meanwhile
    results: dict[str, Any] = {"repeats": repeats, "throughput_duration_s": throughput.DURATION}
    tmp = Path(tempfile.mkdtemp(prefix="ssk-bench-"))
    try:
        print(f"bench: temp dir {tmp}, load {load_start}")
        with start_systems(tmp / "ops") as systems:
            results["redis_version"] = systems.redis_version
            results["daemon_startup_s"] = round(systems.daemon.startup_s, 3)
            results["latency"] = latency.run_latency(systems, repeats)
            results["throughput"] = throughput.run_throughput(systems, repeats)
            results["typescript"] = tsclient.run_tsclient(systems, tmp, repeats)
        shutil.rmtree(tmp / "ops", ignore_errors=True)
        results["backup"] = backup.run_backup(tmp / "backup")
        results["restore"] = restore.run_restore(tmp / "backup", tmp / "restore")
        results["rss"] = rss.run_rss(tmp / "backup", tmp / "rss")
    finally:
        if keep:
            print(f"bench: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["environment"] = {
        "finished_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "load_start": load_start,
        "load_end": loadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "redis": results.pop("redis_version"),
        "sqlite": sqlite3.sqlite_version,
        "git": _git_version(),
        "agent": agent,
        "quick": quick,
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    results["targets"] = evaluate(results)
    return results


def save(results: dict[str, Any]) -> str:
    RESULTS.mkdir(exist_ok=True)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = "quick" if results["environment"]["quick"] else "latest"
    (RESULTS / f"{name}.json").write_bytes(data)
    if not results["environment"]["quick"]:
        (RESULTS / f"bench-{stamp}.json").write_bytes(data)
    table = markdown(results)
    (RESULTS / f"{name}.md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="short samples, one repeat: a smoke test (writes quick.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir for inspection")
    args = parser.parse_args(argv)
    # Servers are stopped by the with-blocks on the way out; SIGINT too, even when a
    # non-interactive shell started the bench in the background with SIGINT ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    results = run(args.quick, args.keep)
    print()
    print(save(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
