"""The connection limit is fitted to the open-file limit, in a child process (setrlimit is
process-wide and must not touch the test runner)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _fit(soft: int, hard: int, wanted: int) -> tuple[int, int, int]:
    code = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        "from bootstrap.http_limits import fit_connection_limit, RESERVED_FDS\n"
        f"served = fit_connection_limit({wanted})\n"
        "print(served, RESERVED_FDS, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    served, reserved, new_soft = map(int, out)
    return served, reserved, new_soft


def test_a_low_hard_limit_lowers_the_connections_served() -> None:
    served, reserved, soft = _fit(200, 256, 256)
    assert soft == 256  # the soft limit was raised as far as the hard one allows
    assert served == 256 - reserved


def test_the_soft_limit_is_raised_when_the_hard_one_allows() -> None:
    served, reserved, soft = _fit(100, 4096, 1000)
    assert served == 1000
    assert soft == 1000 + reserved


def test_enough_descriptors_change_nothing() -> None:
    served, _, soft = _fit(2048, 4096, 100)
    assert (served, soft) == (100, 2048)
