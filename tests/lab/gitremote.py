"""A git remote for the lab: a bare repository on the host, served by `git daemon`.

The VM reaches the host at 10.0.2.2 (QEMU user networking maps 10.0.2.2:PORT to the host's
127.0.0.1:PORT), so the agent's backup remote is git://10.0.2.2:PORT/backup.git.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType

from tests.lab.disks import check_port, free_port
from tests.lab.errors import LabError
from tests.lab.process import child_setup

GUEST_HOST_ADDRESS = "10.0.2.2"
_live: weakref.WeakSet[LabGitRemote] = weakref.WeakSet()




class LabGitRemote:
    """A bare repository `<base>/<name>` served read-write over git:// on 127.0.0.1:port.

    persist=True lets the daemon outlive this process (the CLI's `up`); stop it with stop() or
    by pid (state `pid`) from another process.
    """

    def __init__(self, base: Path, name: str = "backup.git", *, port: int | None = None,
                 persist: bool = False) -> None:
        self.base = Path(base).resolve()
        self.name = name
        self.requested_port = port
        self.port: int | None = None
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None
        if not self.base.parent.is_dir():
            raise LabError(f"git remote directory's parent does not exist: {self.base.parent}")
        _live.add(self)

    @property
    def path(self) -> Path:
        """The bare repository on the host (inspect it with `git --git-dir=...`)."""
        return self.base / self.name

    @property
    def url(self) -> str:
        """The URL the VM uses (spine_git_remote)."""
        return f"git://{GUEST_HOST_ADDRESS}:{self.port}/{self.name}"

    @property
    def host_url(self) -> str:
        """The same repository as seen from the host."""
        return f"git://127.0.0.1:{self.port}/{self.name}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> LabGitRemote:
        """Create the bare repository if needed and serve it; returns once it accepts."""
        check_port(self.requested_port, "git daemon")
        self.base.mkdir(exist_ok=True)
        if not (self.path / "HEAD").exists():
            subprocess.run(["git", "init", "-q", "--bare", str(self.path)], check=True,
                           capture_output=True)
        self.port = self.requested_port or free_port()
        log = (self.base / "git-daemon.log").open("wb")
        with log:
            self.proc = subprocess.Popen(
                ["git", "daemon", "--reuseaddr", "--enable=receive-pack", "--export-all",
                 "--informative-errors", f"--base-path={self.base}", "--listen=127.0.0.1",
                 f"--port={self.port}", str(self.base)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=child_setup(self.persist),
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.base / "git-daemon.log").read_text(errors="replace").strip()
                self.proc = None
                raise LabError(f"git daemon exited at start (port {self.port})", tail)
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.1)
        self.stop()
        raise LabError(f"git daemon did not listen on 127.0.0.1:{self.port} within 10s")

    def stop(self) -> None:
        """Stop the daemon and the children it forked for connections (its process group)."""
        if self.proc is None:
            return
        stop_pid(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> LabGitRemote:
        return self.start() if self.proc is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def stop_pid(pid: int) -> None:
    """SIGTERM a git daemon's process group (it was started as a session leader), then kill."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"daemon" not in cmdline:
        return  # the pid was reused by something that is not ours
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@atexit.register
def _stop_leftovers() -> None:
    for remote in list(_live):
        if not remote.persist:
            remote.stop()
