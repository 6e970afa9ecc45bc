"""The agent's HTTP API from Python: one keep-alive connection over its unix socket or its
loopback TCP port. The CLI, the integration tests and the bench share it, so all three speak to
the agent the same way (http.client: the cheapest client, see PERF-FACTS, and no extra deps)."""

from __future__ import annotations

import http.client
import json
import select
import socket
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

JSON_HEADERS = {"Content-Type": "application/json"}
DEFAULT_TIMEOUT = 60.0
LOOPBACK = "127.0.0.1"


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def condition_headers(if_match: int | None = None, if_absent: bool = False) -> dict[str, str]:
    """The headers of a conditional write: If-Match "<version>" or If-None-Match: *."""
    headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
    if if_absent:
        headers["If-None-Match"] = "*"
    return headers


def record_path(collection: str, key: str | None = None) -> str:
    """The API path of a collection or a record, each name quoted whole (a `/` in a key stays
    part of the key)."""
    path = f"/v1/records/{quote(collection, safe='')}"
    return path if key is None else f"{path}/{quote(key, safe='')}"


class Reply:
    """One response: status, body bytes, and headers (lower-case names) built only if asked."""

    __slots__ = ("_message", "body", "status")

    def __init__(self, status: int, body: bytes, message: http.client.HTTPMessage) -> None:
        self.status = status
        self.body = body
        self._message = message

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self._message.items()}

    @property
    def version(self) -> int | None:
        """The record's version from the ETag header (GET, PUT, 412), or None without one."""
        etag = self._message.get("etag")
        if etag is None or len(etag) < 3 or not etag.startswith('"') or not etag.endswith('"'):
            return None
        digits = etag[1:-1]
        return int(digits) if digits.isascii() and digits.isdigit() else None

    def json(self) -> Any:
        """The body as JSON (the standard library's parser: integers of any size)."""
        return json.loads(self.body)


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """A kept-alive connection the agent has closed shows as readable with nothing to read (an
    idle connection has no response pending, so any readable byte also means it is unusable)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class ApiClient:
    """One keep-alive connection to the agent, opened on first use and again after the agent
    closed it. Not thread-safe: one per thread. Errors (OSError, http.client.HTTPException)
    are raised as they come; the connection is dropped with them."""

    def __init__(
        self,
        socket_path: Path | None = None,
        *,
        port: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if (socket_path is None) == (port is None):
            raise ValueError("give the agent's socket path or its TCP port, not both")
        self.socket_path = socket_path
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    @property
    def address(self) -> str:
        return str(self.socket_path) if self.socket_path is not None else f"{LOOPBACK}:{self.port}"

    def _connect(self) -> http.client.HTTPConnection:
        if self.socket_path is not None:
            return UnixHTTPConnection(self.socket_path, self.timeout)
        return http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        reused = self.conn is not None
        if self.conn is not None and _closed_by_peer(self.conn):
            self.close()  # the agent's idle timeout ended it: reconnect rather than fail
            reused = False
        if self.conn is None:
            self.conn = self._connect()
        try:
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
            except (BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                # The agent closed an idle keep-alive connection (its idle timeout) before
                # this request reached it: nothing was processed, so any method may go again,
                # once, on a fresh connection.
                self.close()
                self.conn = self._connect()
                self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close or response.status >= 500:
            # uvicorn drops the connection after an unhandled error; start afresh next time.
            self.close()
        return Reply(response.status, data, response.msg)

    def put_record(
        self,
        collection: str,
        key: str,
        body: bytes,
        cls: str | None = None,
        *,
        if_match: int | None = None,
        if_absent: bool = False,
    ) -> Reply:
        """PUT a record's JSON bytes, optionally conditional; the reply's `version` is the new
        version (200) or the stored one (412)."""
        query = f"?class={quote(cls, safe='')}" if cls else ""
        headers = {**JSON_HEADERS, **condition_headers(if_match, if_absent)}
        return self.request("PUT", record_path(collection, key) + query, body, headers)

    def get_record(self, collection: str, key: str) -> Reply:
        """GET a record; the reply's `version` is its ETag."""
        return self.request("GET", record_path(collection, key))

    def delete_record(self, collection: str, key: str, *, if_match: int | None = None) -> Reply:
        """DELETE a record, with `if_match` only if it is still at that version."""
        path = record_path(collection, key)
        return self.request("DELETE", path, None, condition_headers(if_match))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def is_serving(socket_path: Path, timeout: float = 5.0) -> bool:
    """True when the agent on this socket answers GET /v1/health with 200."""
    if not socket_path.exists():
        return False
    with ApiClient(socket_path, timeout=timeout) as client:
        try:
            return client.request("GET", "/v1/health").status == 200
        except (OSError, http.client.HTTPException):
            return False
