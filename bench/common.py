"""What every section shares: the records, the agent config, timing and statistics.

One module so that the agent and its peers are fed byte-identical records and are timed by the
same loop; a side-by-side comparison is only fair if nothing else differs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bootstrap.config import AgentConfig, config_from_mapping

VALUE_BYTES = 200
VALUE_VARIANTS = 64
CRITICAL_COLLECTIONS = ("agents", "subscriptions", "tasks", "access")
BRANCH = "backup/bench"


WORDS = (
    "gpu", "tts", "asr", "llm", "vision", "batch", "spot", "preemptible", "europe", "west1",
    "zone-b", "pool-a", "pool-b", "canary", "stable", "beta", "ready", "warm", "cold", "drain",
    "queue", "shard", "replica", "primary", "edge", "core", "ingest", "export", "audit", "ops",
    "blue", "green",
)


@functools.cache
def make_values(count: int = VALUE_VARIANTS, seed: int = 7) -> list[bytes]:
    """Distinct compact JSON documents of exactly VALUE_BYTES bytes, shaped like a Super Spine
    agent record: unique ids, random hosts and numbers, tags from a small vocabulary. Not a
    handful of repeated values: that would flatter zlib and distort git's delta search."""
    rng = random.Random(seed)
    statuses = ("active", "idle", "draining")
    values = []
    for i in range(count):
        head = (
            f'{{"id":"agent-{seed}-{i:07d}","host":"vm-{rng.getrandbits(32):08x}.europe-west1-b",'
            f'"status":"{rng.choice(statuses)}","load":{round(rng.random(), 3)!r},'
            f'"seen":{round(1763790000 + rng.random() * 86400, 3)!r},"tags":['
        )
        tags: list[str] = []
        size = len(head) + 1  # + "]"
        while True:
            word = rng.choice(WORDS)
            extra = len(word) + 2 + (1 if tags else 0)
            if size + extra > VALUE_BYTES - 10:  # room for ,"p":"x"}
                break
            tags.append(f'"{word}"')
            size += extra
        pad = VALUE_BYTES - size - 8  # ,"p":"" and }
        text = head + ",".join(tags) + f'],"p":"{rng.getrandbits(4 * pad):0{pad}x}"}}'
        values.append(text.encode())
    return values


def make_keys(count: int, prefix: str = "k") -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(count)]


def shuffled(items: Sequence[str], seed: int = 11) -> list[str]:
    out = list(items)
    random.Random(seed).shuffle(out)
    return out


def agent_config(root: Path, remote: str | None = None, socket: Path | None = None) -> AgentConfig:
    """An agent config confined to `root`; tiering off so no background pass runs mid-sample."""
    raw: dict[str, Any] = {
        "storage_path": str(root / "data"),
        "git": {"path": str(root / "backup.git"), "branch": BRANCH},
        "tiering": {"enabled": False},
        "log_level": "warning",
    }
    if remote:
        raw["git"]["remote"] = remote
    if socket:
        raw["api"] = {"socket": str(socket)}
    return config_from_mapping(raw)


def agent_config_yaml(root: Path, socket: Path) -> str:
    """The same settings as agent_config, as the YAML file `spine-agent run` reads."""
    return (
        f"storage_path: {root / 'data'}\n"
        f"git:\n  path: {root / 'backup.git'}\n  branch: {BRANCH}\n"
        f"api:\n  socket: {socket}\n"
        "tiering:\n  enabled: false\n"
        "log_level: warning\n"
    )


_stop_signal: list[int] = []


def request_stop(signum: int, frame: object = None) -> None:
    """SIGTERM/SIGINT handler: remember, then raise. An exception raised while the process
    forks can be swallowed by the interpreter, so loops also call check_stop()."""
    _stop_signal.append(signum)
    raise SystemExit(128 + signum)


def check_stop() -> None:
    if _stop_signal:
        raise SystemExit(128 + _stop_signal[0])


def pct(sorted_ns: Sequence[int], q: float) -> float:
    """Percentile (nearest rank) of sorted nanoseconds, in microseconds."""
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000.0


def time_ops(
    op: Callable[[str], object],
    keys: Sequence[str],
    max_ops: int,
    max_seconds: float,
    warmup: int = 200,
) -> dict[str, float]:
    """Time each call of op(key); stop at max_ops or max_seconds. Returns p50/p99/ops_s/n."""
    check_stop()
    nkeys = len(keys)
    for i in range(min(warmup, max_ops)):
        op(keys[i % nkeys])
    clock = time.perf_counter_ns
    lat = [0] * max_ops
    start = clock()
    deadline = start + int(max_seconds * 1e9)
    n = 0
    while n < max_ops:
        t0 = clock()
        op(keys[n % nkeys])
        t1 = clock()
        lat[n] = t1 - t0
        n += 1
        if t1 > deadline:
            break
    elapsed = clock() - start
    done = sorted(lat[:n])
    return {
        "p50_us": pct(done, 0.50),
        "p99_us": pct(done, 0.99),
        "ops_s": n / (elapsed / 1e9),
        "n": n,
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of each figure over the repeats (p50, p99, ops/s are taken independently)."""
    keys = runs[0].keys()
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["repeats"] = len(runs)
    return out


def seconds_median(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "repeats": len(samples),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def dir_bytes(path: Path) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed under us
                total += os.lstat(os.path.join(base, name)).st_size
    return total


class PhaseTimer:
    """Wall time spent inside chosen methods of one object, by wrapping them on the instance.

    Bench-side only (the agent is not edited): it breaks a restore or a backup down into its
    steps. A method the agent no longer has is skipped, so a refactor does not break the bench.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, obj: object, method: str, label: str | None = None) -> None:
        inner = getattr(obj, method, None)
        if inner is None or not callable(inner):
            return
        name = label or method
        self.seconds.setdefault(name, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        setattr(obj, method, timed)

    def rounded(self, digits: int = 4) -> dict[str, float]:
        return {k: round(v, digits) for k, v in self.seconds.items()}
