"""`spine-agent run`: restore, serve the API on a unix socket, tier on a timer, and on SIGTERM
flush, commit and push within the stop budget. Speaks sd_notify READY/STOPPING."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from .access import HealthPortGate, TcpGuard
from .api import build_app
from .config import AgentConfig, ApiConfig, read_token_file
from .http_limits import bounded_protocol, fit_connection_limit
from .lifecycle import HybridVMStorage
from .notify import sd_notify

log = logging.getLogger("spine.daemon")


class AgentServer(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT only stop serving: the agent's shutdown backup runs after,
    instead of uvicorn re-raising the signal and killing the process before it."""

    stop_requested_at: float | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def handler(signum: int, frame: object) -> None:
            if self.stop_requested_at is None:
                self.stop_requested_at = time.monotonic()
                sd_notify("STOPPING=1")
                log.info("stop signal received", extra={"signal": signal.Signals(signum).name})
            self.should_exit = True

        originals = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, original in originals.items():
                signal.signal(sig, original)


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """Bind with a tight umask so the socket is never briefly world-accessible."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise RuntimeError(
                f"api.socket {path} exists and is not a socket; refusing to remove it"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale socket from a crashed run
        else:
            probe.close()
            raise RuntimeError(f"api.socket {path} is in use by another running agent")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def bind_tcp(port: int, address: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a Linux dependency
        return None
    return uvloop.new_event_loop


def restore_with_stop_signals(agent: HybridVMStorage) -> list[float]:
    """Restore with SIGTERM/SIGINT noted, not fatal: as a container's PID 1 the default action
    is ignored, so a stop during a long restore would wait for SIGKILL. Returns a list that
    holds the moment a stop arrived, now or before the server takes the signals over."""
    stop_at: list[float] = []

    def note(signum: int, frame: object) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
            sd_notify("STOPPING=1")
            log.info("stop signal during start-up", extra={"signal": signal.Signals(signum).name})

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note)  # uvicorn's own handlers replace it once it serves
    agent.hooks.on_start()
    return stop_at


def server_config(app: ASGIApp, limits: ApiConfig) -> uvicorn.Config:
    """The agent's HTTP stack: uvicorn on uvloop with the bounded httptools protocol. One
    place, so the bench's bare app (bench/bare_app.py) measures exactly this stack."""
    connections = fit_connection_limit(limits.max_connections)
    protocol = bounded_protocol(limits.max_header_bytes, connections)
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol,
        timeout_keep_alive=limits.idle_timeout,
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=2,
        server_header=False,
        date_header=False,
        proxy_headers=False,
    )


def run_daemon(config: AgentConfig) -> int:
    os.umask(0o027)  # data, journal and backup files: owner and group only
    started = time.monotonic()
    agent = HybridVMStorage(config=config)
    stopped_during_start = restore_with_stop_signals(agent)
    if stopped_during_start:
        agent.hooks.on_shutdown(started=stopped_during_start[0])
        return 0
    sockets = [bind_unix_socket(config.api.socket, config.api.socket_mode)]
    if config.api.tcp_port:
        sockets.append(bind_tcp(config.api.tcp_port))
    if config.api.health_port:
        sockets.append(bind_tcp(config.api.health_port, config.api.health_address))
    app = build_app(agent.storage, on_tier=agent.hooks.on_tiering_pass)
    served = app
    if config.api.tcp_port and config.api.token_file:
        served = TcpGuard(app, config.api.tcp_port, read_token_file(config.api.token_file))
    if config.api.health_port:
        served = HealthPortGate(served, app, config.api.health_port)
    server = AgentServer(server_config(served, config.api))

    async def main() -> None:
        serve = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started and not serve.done():
            await asyncio.sleep(0.01)
        if server.started and stopped_during_start:  # between restore and serving
            server.stop_requested_at = stopped_during_start[0]
            server.should_exit = True
        elif server.started:
            agent.start_background()
            sd_notify("READY=1")
            log.info(
                "serving",
                extra={
                    "socket": str(config.api.socket),
                    "tcp_port": config.api.tcp_port,
                    "startup_s": round(time.monotonic() - started, 3),
                },
            )
        await serve

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    finally:
        agent.shutdown(started=server.stop_requested_at)
        with contextlib.suppress(OSError):
            config.api.socket.unlink()
    return 0
