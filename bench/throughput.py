"""Throughput with 1 and 8 concurrent clients, for a fixed wall time per sample.

How: each client opens its own connection, does a few warm-up ops, waits on a barrier, then
loops for DURATION seconds timing every op. Throughput is all clients' ops divided by the span
from the first start to the last finish. Clients of a server (agent socket, Redis) are separate
processes (fork), so no client-side GIL caps the server; in-process libraries (the agent's
HybridStorage, SQLite) are driven by threads of this process, which is how they are used.
Concurrency is where group commit shows: concurrent durable writers can share one fsync.
"""

from __future__ import annotations

import array
import multiprocessing as mp
import signal
import statistics
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import psutil

from .common import check_stop, loadavg, pct
from .systems import Case, Systems

DURATION = 0.8
WARMUP_OPS = 30
CONCURRENCY = (1, 8)


def _client_loop(
    case: Case,
    keys: list[str],
    values: list[bytes],
    offset: int,
    wait: Any,
) -> tuple[int, int, int, bytes]:
    """Run one client; return (ops, start ns, end ns, latencies as array('q') bytes)."""
    client = case.factory()
    nkeys, nvals = len(keys), len(values)
    fn = client.get if case.op == "get" else client.put
    for i in range(WARMUP_OPS):
        key = keys[(offset + i) % nkeys]
        client.get(key) if case.op == "get" else client.put(key, values[i % nvals])
    wait()
    clock = time.perf_counter_ns
    lat = array.array("q")
    start = clock()
    end_at = start + int(DURATION * 1e9)
    n = 0
    t1 = start
    while t1 < end_at:
        key = keys[(offset + n) % nkeys]
        t0 = clock()
        if case.op == "get":
            fn(key)  # type: ignore[call-arg]
        else:
            fn(key, values[n % nvals])  # type: ignore[call-arg]
        t1 = clock()
        lat.append(t1 - t0)
        n += 1
    client.close()
    return n, start, t1, lat.tobytes()


def _proc_main(case: Case, keys: list[str], values: list[bytes], offset: int,
               barrier: Any, out: Connection) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        out.send(_client_loop(case, keys, values, offset, barrier.wait))
    except BaseException as exc:  # report, don't hang the parent
        out.send(exc)
    finally:
        out.close()


def sample(case: Case, keys: list[str], values: list[bytes], clients: int) -> dict[str, float]:
    """One timed sample of `clients` concurrent clients."""
    check_stop()
    offsets = [i * len(keys) // clients for i in range(clients)]
    results: list[Any] = []
    server = psutil.Process(case.server_pid) if case.server_pid else None
    cpu_before = sum(server.cpu_times()[:2]) if server else 0.0
    if case.worker == "thread":
        barrier = threading.Barrier(clients)
        lock = threading.Lock()

        def run(offset: int) -> None:
            res = _client_loop(case, keys, values, offset, barrier.wait)
            with lock:
                results.append(res)

        threads = [threading.Thread(target=run, args=(o,)) for o in offsets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        ctx = mp.get_context("fork")
        pbarrier = ctx.Barrier(clients)
        procs, pipes = [], []
        for offset in offsets:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_proc_main, args=(case, keys, values, offset, pbarrier, send)
            )
            proc.start()
            send.close()
            procs.append(proc)
            pipes.append(recv)
        try:
            for recv in pipes:
                results.append(recv.recv())
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
    cpu_s = sum(server.cpu_times()[:2]) - cpu_before if server else None
    for res in results:
        if isinstance(res, BaseException):
            raise RuntimeError(f"{case.system} {case.label} x{clients}: {res!r}") from res
    if len(results) != clients:
        raise RuntimeError(f"{case.system} {case.label}: {len(results)}/{clients} clients reported")
    ops = sum(r[0] for r in results)
    span = (max(r[2] for r in results) - min(r[1] for r in results)) / 1e9
    lat: list[int] = []
    for r in results:
        lat.extend(array.array("q", r[3]))
    lat.sort()
    out = {"ops_s": ops / span, "p50_us": pct(lat, 0.5), "p99_us": pct(lat, 0.99), "ops": ops}
    if cpu_s is not None:  # includes the clients' warm-up ops: a slight overestimate
        out["server_cpu_us_per_op"] = cpu_s * 1e6 / (ops + WARMUP_OPS * clients)
    return out


def run_throughput(systems: Systems, repeats: int = 3) -> list[dict[str, Any]]:
    """Put cases at 1 and 8 clients; get cases at 8 (1 client is the latency table)."""
    plan = []
    for case in systems.cases:
        if case.label == "get (hot, parsed)" or case.label == "put session" or case.batch > 1:
            continue  # bulk cases: their per-record latency is the figure (latency table)
        for clients in CONCURRENCY:
            if case.op == "get" and clients == 1:
                continue
            plan.append((case, clients))
    started = time.perf_counter()
    runs: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(plan))}
    for _ in range(repeats):
        for i, (case, clients) in enumerate(plan):
            runs[i].append(sample(case, systems.keys, systems.values, clients))
    out = []
    for i, (case, clients) in enumerate(plan):
        samples = runs[i]
        out.append(
            {
                "system": case.system,
                "op": case.op,
                "label": case.label,
                "durable": case.durable,
                "clients": clients,
                "worker": case.worker,
                "ops_s": round(statistics.median(s["ops_s"] for s in samples), 1),
                "p50_us": round(statistics.median(s["p50_us"] for s in samples), 2),
                "p99_us": round(statistics.median(s["p99_us"] for s in samples), 2),
                "server_cpu_us_per_op": (
                    round(statistics.median(s["server_cpu_us_per_op"] for s in samples), 1)
                    if case.server_pid else None
                ),
                "repeats": len(samples),
            }
        )
    print(f"  throughput: {len(plan)} samples x {repeats} in "
          f"{time.perf_counter() - started:.1f}s, load {loadavg()}")
    return out
