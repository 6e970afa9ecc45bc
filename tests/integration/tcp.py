"""Helpers for the optional loopback TCP API: a free port, a token file and one raw request."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from bootstrap.client import ApiClient, Reply

from .conftest import REQUEST_TIMEOUT


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_token(path: Path, mode: int = 0o600) -> str:
    """A fresh bearer token in a file of the given mode (created with it: never briefly open)."""
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, mode)
    return token


def tcp_config(workdir: Path) -> tuple[dict[str, object], int, str]:
    """An api section with a TCP port and its token file; returns (api, port, token)."""
    port = free_port()
    token_path = workdir / f"token-{port}"
    token = write_token(token_path)
    return {"tcp_port": port, "token_file": str(token_path)}, port, token


def tcp_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> Reply:
    """One request on a fresh connection; `headers` may set Host itself."""
    with ApiClient(port=port, timeout=REQUEST_TIMEOUT) as client:
        length = {"Content-Length": str(len(body or b""))}
        return client.request(method, path, body, {**length, **headers})
