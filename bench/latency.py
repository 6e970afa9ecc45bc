"""Single-client latency (p50, p99) and throughput of every case, repeats interleaved.

Repeats run round-robin over the cases (case A, B, C, then A, B, C again) rather than three in a
row, so a burst of load from the machine's other tenants spreads over all systems instead of
penalising one. The client runs in this process; for servers that is what a local caller pays.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from .common import loadavg, median_of, time_ops
from .systems import Systems

MAX_SECONDS = 1.0


def run_latency(systems: Systems, repeats: int = 3) -> list[dict[str, Any]]:
    values = systems.values
    runs: dict[int, list[dict[str, float]]] = {id(case): [] for case in systems.cases}
    started = time.perf_counter()
    for _ in range(repeats):
        for case in systems.cases:
            # A fresh client per sample: the agent's server (uvicorn) drops keep-alive
            # connections idle for 5 s, and the other cases take longer than that.
            client = case.factory()
            if case.op == "get":
                op = client.get
            else:
                cycle = itertools.cycle(values)

                def op(key: str, client: Any = client, cycle: Any = cycle) -> object:
                    return client.put(key, next(cycle))

            try:
                runs[id(case)].append(time_ops(op, systems.keys, case.max_ops, MAX_SECONDS))
            finally:
                client.close()
    results = []
    for case in systems.cases:
        med = median_of(runs[id(case)])
        results.append(
            {
                "system": case.system,
                "op": case.op,
                "label": case.label,
                "durable": case.durable,
                "batch": case.batch,
                **{k: round(v, 2) for k, v in med.items()},
                "p50_us_per_record": round(med["p50_us"] / case.batch, 2),
            }
        )
    print(f"  latency: {len(systems.cases)} cases x {repeats} in "
          f"{time.perf_counter() - started:.1f}s, load {loadavg()}")
    return results
