"""Helpers for the optional loopback TCP API: a free port, a token file and one raw request."""

from __future__ import annotations

import http.client
import os
import secrets
import socket
from pathlib import Path

from .conftest import REQUEST_TIMEOUT, Reply


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
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        skip_host = any(k.lower() == "host" for k in headers)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, data, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()
