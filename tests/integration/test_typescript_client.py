"""The TypeScript client's own tests (clients/typescript, Node's test runner) as part of the
suite: they start real agents from this venv and fail when the generated types are stale."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import SPINE_AGENT, clean_env

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def test_typescript_client_suite() -> None:
    npm = shutil.which("npm")
    assert npm is not None, "npm not found: run `bash scripts/setup.sh`"
    assert (PACKAGE / "node_modules" / "undici").is_dir(), (
        "clients/typescript/node_modules is missing: run `bash scripts/setup.sh` (npm ci)"
    )
    proc = subprocess.run(
        [npm, "test"],
        cwd=PACKAGE,
        env=clean_env(SPINE_AGENT=SPINE_AGENT, SPINE_PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    tail = (proc.stdout[-6000:] + "\n--- stderr ---\n" + proc.stderr[-3000:]).strip()
    assert proc.returncode == 0, tail
    assert "# fail 0" in proc.stdout, tail
