"""Helpers for the end-to-end tests of the roles on the lab VM (tests/lab).

The tests boot their own VMs (the image is built once and cached), run ansible/site.yml against
them exactly as a user would, and read the results over ssh. Timings of every playbook run, boot
and testinfra run are printed at the end of the session and written to
<basetemp>/lab-timings.json, so CI logs carry the numbers the README quotes.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab import LabGitRemote, LabVM

REPO = Path(__file__).resolve().parents[2]
SITE = REPO / "ansible" / "site.yml"
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)

TIMINGS: list[tuple[str, float]] = []


def record_timing(name: str, seconds: float) -> None:
    """Keep a measured duration for the session summary."""
    TIMINGS.append((name, round(seconds, 1)))


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit code, output, and the PLAY RECAP counts of the lab host."""

    rc: int
    output: str
    seconds: float
    recap: dict[str, int] = field(default_factory=dict)
    log: Path | None = None

    @property
    def changed(self) -> int:
        return self.recap.get("changed", -1)

    def tail(self, lines: int = 60) -> str:
        """The end of the output, for assertion messages."""
        return "\n".join(self.output.splitlines()[-lines:])

    def task_changed(self, name_start: str) -> bool:
        """Whether a task whose name starts with name_start (role prefix aside) changed."""
        return any(task.split(" : ", 1)[-1].startswith(name_start) for task in self.changed_tasks())

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change (for a readable failure message)."""
        names, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed:"):
                names.append(current)
        return names


def run_playbook(vm: LabVM, name: str, *extra: str, log_dir: Path) -> PlaybookRun:
    """Run site.yml against the VM the way the docs tell users to, and keep its log."""
    cmd = ["ansible-playbook", "-i", str(vm.inventory), str(SITE), *extra]
    start = time.monotonic()
    proc = subprocess.run(
        cmd, env=vm.ansible_env(), cwd=REPO / "ansible", capture_output=True, text=True,
        timeout=3600, check=False,
    )
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    log = log_dir / f"playbook-{name}.log"
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    recap: dict[str, int] = {}
    for match in RECAP.finditer(proc.stdout):
        if match.group("host") != "localhost":
            recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group("counts"))}
    record_timing(f"playbook: {name}", seconds)
    return PlaybookRun(proc.returncode, output, seconds, recap, log)


def run_testinfra(
    vm: LabVM, name: str, *extra: str, log_dir: Path
) -> subprocess.CompletedProcess[str]:
    """Run the user-facing host checks (tests/hosts) against the VM in a separate pytest."""
    cmd = [
        sys.executable, "-m", "pytest", str(REPO / "tests" / "hosts"), "-p", "no:cacheprovider",
        "-q", *vm.testinfra_args(), *extra,
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=vm.ansible_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)
    record_timing(f"testinfra: {name}", time.monotonic() - start)
    (log_dir / f"testinfra-{name}.log").write_text(proc.stdout + proc.stderr)
    return proc


def boot(vm: LabVM, name: str, *, fresh: bool) -> LabVM:
    """Boot and record how long it took to reach ssh."""
    start = time.monotonic()
    vm.boot(fresh=fresh)
    record_timing(f"boot: {name}", time.monotonic() - start)
    return vm


@contextlib.contextmanager
def running_vm(workdir: Path, disk: Path, name: str, disk_size: str = "1G") -> Iterator[LabVM]:
    """A new lab VM with `disk` as its persistent disk, powered off (or killed) afterwards."""
    vm = LabVM(workdir, data_disk=disk, data_disk_size=disk_size)
    try:
        yield boot(vm, name, fresh=True)
    finally:
        vm.powerdown()


@pytest.fixture(scope="session")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for every VM, disk image and log of the session."""
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def git_remote(lab_dir: Path) -> Iterator[LabGitRemote]:
    """The lab's backup remote: a bare repository on the host, served by git daemon."""
    with LabGitRemote(lab_dir / "git") as remote:
        yield remote


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the measured lab timings (the README's numbers come from here)."""
    if not TIMINGS:
        return
    terminalreporter.section("lab timings (seconds)")
    for name, seconds in TIMINGS:
        terminalreporter.write_line(f"{seconds:8.1f}  {name}")
    base = terminalreporter.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    (Path(base) / "lab-timings.json").write_text(json.dumps(TIMINGS, indent=1))
