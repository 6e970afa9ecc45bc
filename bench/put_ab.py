"""Critical PUT over the socket, A/B between agent source trees, against Redis `always`.

`python -m bench.put_ab --tree main=/work/main --tree wip=.` starts one `spine-agent run` per
source tree (same interpreter and libraries, only `bootstrap/` differs) and one Redis with
`appendfsync always`, then interleaves short samples of every system at 1 and 8 clients for
several rounds, so machine load drifts over all of them alike. It prints medians (ops/s, p50,
server CPU per op, fdatasync calls per op when strace-free counting is available) and writes
JSON to bench/results/put-ab-<stamp>.json. A tuning tool: `make bench` stays the full table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from . import throughput
from .common import agent_config_yaml, loadavg, make_keys, make_values, request_stop, shuffled
from .peers import RedisPeer, SocketAgent
from .servers import AgentDaemon, RedisServer, _die_with_parent, _stop
from .systems import CRITICAL, Case

RESULTS = Path(__file__).resolve().parent / "results"


class TreeDaemon(AgentDaemon):
    """`python -m bootstrap.cli run` with `bootstrap` imported from another source tree."""

    def __init__(self, root: Path, name: str, tree: Path) -> None:
        super().__init__(root, name)
        self.tree = tree

    def __enter__(self) -> TreeDaemon:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(agent_config_yaml(self.root, self.socket))
        env = dict(os.environ, PYTHONPATH=str(self.tree))
        log = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bootstrap.cli", "run", "--config", str(self.config_file)],
            cwd=self.tree,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        try:
            self._wait_ready(timeout=120)
        except BaseException:
            _stop(self.proc, 30)
            raise
        return self


def _syscalls(pid: int) -> int:
    """Context switches of the server (voluntary): a proxy for loop wake-ups per op."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                total += int(line.split()[1])
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.put_ab", description=__doc__)
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--clients", default="1,8")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    throughput.DURATION = args.duration
    clients = [int(c) for c in args.clients.split(",")]
    trees = [(n, Path(p).resolve()) for n, p in (t.split("=", 1) for t in args.tree)]
    keys = shuffled(make_keys(2000))
    values = make_values()
    tmp = Path(tempfile.mkdtemp(prefix="ssk-putab-"))
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    load_start = loadavg()
    with contextlib.ExitStack() as stack:
        cases: list[Case] = []
        for name, tree in trees:
            daemon = stack.enter_context(TreeDaemon(tmp / name, name, tree))
            sock, pid = daemon.socket, daemon.pid
            cases.append(Case(f"agent {name}", "put", "PUT critical",
                              lambda s=sock: SocketAgent(s, CRITICAL),  # type: ignore[misc]
                              "process", 0, True, pid))  # fmt: skip
        redis_al = stack.enter_context(RedisServer(tmp, "always"))
        cases.append(Case("redis always", "put", "SET (fsync)",
                          lambda: RedisPeer(redis_al.socket, CRITICAL), "process", 0, True,
                          redis_al.pid))  # fmt: skip
        for r in range(args.rounds):
            for n in clients:
                order = cases if r % 2 == 0 else list(reversed(cases))
                for case in order:
                    assert case.server_pid is not None
                    before = _syscalls(case.server_pid)
                    out = throughput.sample(case, keys, values, n)
                    out["vcsw_per_op"] = (_syscalls(case.server_pid) - before) / (
                        out["ops"] + throughput.WARMUP_OPS * n
                    )
                    rows.setdefault((case.system, n), []).append(out)
            print(f"round {r + 1}/{args.rounds} done, load {loadavg()}", flush=True)
    table = []
    for (system, n), samples in rows.items():
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        table.append({"system": system, "clients": n, **{k: round(v, 1) for k, v in med.items()},
                      "ops_s_all": [round(s["ops_s"]) for s in samples]})
    for t in table:  # paired: each round's agent sample over the Redis sample next to it
        peer = rows[("redis always", t["clients"])]
        mine = rows[(t["system"], t["clients"])]
        t["x_redis"] = round(statistics.median(
            a["ops_s"] / b["ops_s"] for a, b in zip(mine, peer, strict=True)), 2)
    table.sort(key=lambda t: (t["clients"], t["system"]))
    print(f"\nload {load_start} -> {loadavg()}, {args.rounds} rounds x {args.duration}s")
    print("| system | clients | ops/s | x Redis (paired) | p50 us | server CPU us/op | vcsw/op |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in table:
        print(f"| {t['system']} | {t['clients']} | {t['ops_s']:.0f} | {t['x_redis']:.2f} | "
              f"{t['p50_us']:.0f} | {t['server_cpu_us_per_op']:.0f} | {t['vcsw_per_op']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    doc = {"trees": {n: str(p) for n, p in trees}, "rounds": args.rounds,
           "duration_s": args.duration, "load_start": load_start, "load_end": loadavg(),
           "rows": table, "finished_utc": stamp, "started": time.time()}
    (RESULTS / f"put-ab-{stamp}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
