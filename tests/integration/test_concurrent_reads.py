"""Reads of evicted records from several threads while passes rewrite their files, for real
seconds (issue 7, items 1 and 9).

Writers update records with values of changing length (so every rewrite moves the lines);
a tiering thread runs passes back to back with a 50 ms hot age, so nearly every read is a pread
of an evicted record; a backup thread commits to git. Readers check that every value names its
own key and that no key's version ever goes backwards. One wrong value or one error fails it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import orjson
import pytest

from bootstrap.config import config_from_mapping
from bootstrap.storage import HybridStorage

SECONDS = float(os.environ.get("SPINE_CONCURRENCY_SECONDS", "30"))
KEYS = [f"rec-{i:04d}" for i in range(400)]
COLLECTIONS = ("agents", "stats")  # critical (files + git) and session (files only)


@pytest.mark.slow
def test_evicted_reads_stay_right_while_passes_rewrite_files(tmp_path: Path) -> None:
    storage = HybridStorage(
        config_from_mapping(
            {
                "storage_path": str(tmp_path / "storage"),
                "memory_limit": "1MB",
                "tiering": {"enabled": False, "hot_age": "50ms", "warm_age": "1s"},
            }
        )
    )
    storage.initialize()
    versions: dict[tuple[str, str], int] = {}
    for collection in COLLECTIONS:
        for key in KEYS:
            storage.put(collection, key, {"key": key, "v": 0, "pad": ""})
            versions[(collection, key)] = 0
    stop = threading.Event()
    problems: list[str] = []
    counts = {"reads": 0, "writes": 0, "passes": 0, "backups": 0, "evicted": 0}
    lock = threading.Lock()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            collection, key = rng.choice(COLLECTIONS), rng.choice(KEYS)
            with lock:
                version = versions[(collection, key)] + 1
                value = {"key": key, "v": version, "pad": "x" * rng.randrange(0, 300)}
                storage.put(collection, key, value)
                versions[(collection, key)] = version
                counts["writes"] += 1
            time.sleep(0.001)

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        seen: dict[tuple[str, str], int] = {}
        while not stop.is_set():
            collection, key = rng.choice(COLLECTIONS), rng.choice(KEYS)
            try:
                raw = storage.get_json(collection, key)
            except Exception as exc:
                problems.append(f"{collection}/{key}: {exc!r}")
                continue
            counts["reads"] += 1
            if raw is None:
                problems.append(f"{collection}/{key}: missing")
                continue
            value = orjson.loads(raw)
            if value.get("key") != key:
                problems.append(f"{collection}/{key}: read another record's value {value!r}")
            elif value["v"] < seen.get((collection, key), -1):
                problems.append(f"{collection}/{key}: version went back to {value['v']}")
            else:
                seen[(collection, key)] = value["v"]
            time.sleep(0.0002)  # leave records idle long enough to be evicted between reads

    def tierer() -> None:
        while not stop.is_set():
            report = storage.tier()
            counts["passes"] += 1
            counts["evicted"] += report.evicted

    def backer() -> None:
        while not stop.is_set():
            storage.backup_git(push=False)
            counts["backups"] += 1
            time.sleep(0.5)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=(100 + i,)) for i in range(4)]
    threads += [threading.Thread(target=tierer), threading.Thread(target=backer)]
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in threads:
        thread.join(60)
    print(f"{SECONDS:.0f}s: {counts}")
    assert problems[:5] == [] and len(problems) == 0
    assert counts["evicted"] > 1000 and counts["passes"] > 20, counts
    storage.close(backup=False)
    again = HybridStorage(storage.config)
    again.initialize()
    for (collection, key), version in versions.items():
        assert orjson.loads(again.get_json(collection, key) or b"null")["v"] == version
    again.close(backup=False)
