"""The servers the bench starts: `spine-agent run` and Debian's redis-server.

Each is a context manager that stops its process on exit, even when the bench fails; the
children also get PR_SET_PDEATHSIG so a killed bench does not leave them running.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import psutil
import redis

from bootstrap.client import is_serving

from .common import agent_config_yaml

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the bench process goes away."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def agent_binary() -> list[str]:
    """The venv's console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "spine-agent"
    if script.exists():
        return [str(script)]
    found = shutil.which("spine-agent")
    return [found] if found else [sys.executable, "-m", "bootstrap.cli"]


class ManagedServer:
    """A server process the bench starts and always stops (also on failure)."""

    proc: subprocess.Popen[bytes] | None = None
    stop_grace = 20.0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            _stop(self.proc, self.stop_grace)


class AgentDaemon(ManagedServer):
    """`spine-agent run` on a temp config; ready once GET /v1/health answers."""

    stop_grace = 60.0

    def __init__(self, root: Path, name: str = "agent") -> None:
        self.root = root
        self.socket = root / f"{name}.sock"
        self.config_file = root / f"{name}.yaml"
        self.log_file = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = 0.0

    def __enter__(self) -> AgentDaemon:
        self.config_file.write_text(agent_config_yaml(self.root, self.socket))
        log = open(self.log_file, "wb")  # the child keeps its own copy of the fd
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*agent_binary(), "run", "--config", str(self.config_file)],
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
        self.startup_s = time.perf_counter() - started
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"spine-agent exited with {self.proc.returncode}: {tail}")
            if is_serving(self.socket, timeout=2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"spine-agent not ready after {timeout}s")


class BareApp(ManagedServer):
    """bench/bare_app.py: the agent's server stack answering a constant 200-byte body."""

    def __init__(self, root: Path) -> None:
        self.socket = root / "bare.sock"
        self.log_file = root / "bare.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareApp:
        root = Path(__file__).resolve().parent.parent
        log = open(self.log_file, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_app", "--socket", str(self.socket)],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + 60
        while not is_serving(self.socket, timeout=2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _stop(self.proc, 5)
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bench.bare_app did not serve: {tail}")
            time.sleep(0.02)
        return self


class RedisServer(ManagedServer):
    """redis-server on a unix socket in a temp dir, AOF on with the given appendfsync."""

    def __init__(self, root: Path, appendfsync: str) -> None:
        self.dir = root / f"redis-{appendfsync}"
        self.socket = self.dir / "redis.sock"
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run `bash scripts/setup.sh`")
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client().ping():
                    return self
            except (redis.ConnectionError, FileNotFoundError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _stop(self.proc, 5)
                raise RuntimeError(f"redis-server ({self.appendfsync}) did not start")
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket))

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])
