"""The TypeScript client against raw undici on the agent's socket (issue 11 §3).

Both run in one Node process (clients/typescript/bench/compare.ts), interleaved, on one
keep-alive connection each, against the bench's `spine-agent run`; this module builds the
package, feeds it the bench's records and reads the JSON it prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .common import check_stop, loadavg
from .systems import Systems

PACKAGE = Path(__file__).resolve().parent.parent / "clients" / "typescript"
MAX_SECONDS = 1.0
MAX_OPS = 4000


def run_tsclient(systems: Systems, workdir: Path, repeats: int = 3) -> dict[str, Any]:
    check_stop()
    node = shutil.which("node")
    tsc = PACKAGE / "node_modules" / ".bin" / "tsc"
    if node is None or not tsc.exists():
        raise RuntimeError("node or clients/typescript/node_modules missing: run scripts/setup.sh")
    started = time.perf_counter()
    subprocess.run([str(tsc), "-p", "tsconfig.json"], cwd=PACKAGE, check=True, timeout=300)
    values = workdir / "ts-values.json"
    values.write_text(json.dumps([v.decode() for v in systems.values]))
    proc = subprocess.run(
        [
            node, "dist/bench/compare.js",
            "--socket", str(systems.daemon.socket),
            "--values", str(values),
            "--ops", str(MAX_OPS),
            "--seconds", str(MAX_SECONDS),
            "--repeats", str(2 * repeats),  # even: each order equally often
            "--keys", str(len(systems.keys)),
        ],
        cwd=PACKAGE, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"TypeScript client bench failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    for row in result["rows"]:
        for key in ("p50_us", "p99_us", "ops_s"):
            row[key] = round(row[key], 2)
    print(f"  TypeScript client: {len(result['rows'])} cases x {repeats} in "
          f"{time.perf_counter() - started:.1f}s, load {loadavg()}")
    return result
