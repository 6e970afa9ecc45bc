"""`python -m bootstrap.openapi` prints the document the agent serves: the TypeScript client's
types are generated from this output, so it must be the same document, as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bootstrap.openapi import openapi_document

REPO = Path(__file__).resolve().parents[2]


def test_module_prints_the_served_document() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bootstrap.openapi"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert json.loads(proc.stdout) == json.loads(json.dumps(openapi_document()))
    assert proc.stderr == b""
