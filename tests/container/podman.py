"""Run podman the way this machine needs it: runc, the cgroupfs manager, no default ulimits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "container" / "containers.conf"
PODMAN_TIMEOUT = 600.0  # generous: the machine is shared with VMs and other test runs


def podman_env() -> dict[str, str]:
    return dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))


def podman(
    *args: str,
    check: bool = True,
    stdin: IO[Any] | int | None = None,
    timeout: float = PODMAN_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """One podman command; a failure raises with podman's own last lines."""
    proc = subprocess.run(
        ["podman", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"podman {args[0]} exited {proc.returncode}: {tail}")
    return proc
