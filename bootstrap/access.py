"""Who may use the optional TCP API.

The unix socket is guarded by its file mode. Loopback TCP is reachable by every local process and
by any web page a local browser opens, through DNS rebinding (a name the attacker controls that
resolves to 127.0.0.1). So TCP requests must name a loopback host and carry the bearer token.
The optional health port (api.health_port) answers the health check alone, to anyone.
"""

from __future__ import annotations

import hmac

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1")
HEALTH_PATH = "/v1/health"
MAX_SHOWN = 80


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _shown(value: bytes) -> str:
    text = value.decode("latin-1")
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


class TcpGuard:
    """ASGI wrapper: unix-socket requests pass untouched; TCP ones need a loopback Host header
    (with our port, if one is given) and `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, port: int, token: bytes) -> None:
        self.app = app
        self.hosts = {n.encode() for n in LOOPBACK_NAMES}
        self.hosts |= {f"{n}:{port}".encode() for n in LOOPBACK_NAMES}
        self.expected = b"Bearer " + token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "http" or server is None or server[1] is None:
            await self.app(scope, receive, send)  # the unix socket
            return
        host = _header(scope, b"host")
        if host is None or host.lower() not in self.hosts:
            shown = "none" if host is None else repr(_shown(host))
            allowed = ", ".join(LOOPBACK_NAMES)
            await _refuse(send, 400, f"Host header {shown} is not a loopback name ({allowed})")
            return
        given = _header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, self.expected):
            await _refuse(send, 401, "Authorization: Bearer <api.token_file> is required on TCP")
            return
        await self.app(scope, receive, send)


class HealthPortGate:
    """ASGI wrapper: requests to the health port reach GET/HEAD /v1/health of the bare app (no
    token: it tells nothing but "serving"); anything else there is a 404. Requests on every
    other socket go to `app` (the unix socket, or the token-guarded TCP port)."""

    def __init__(self, app: ASGIApp, bare: ASGIApp, port: int) -> None:
        self.app = app
        self.bare = bare
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] != "http" or server is None or server[1] != self.port:
            await self.app(scope, receive, send)
            return
        if scope.get("path") != HEALTH_PATH or scope.get("method") not in ("GET", "HEAD"):
            await _refuse(send, 404, f"this port answers GET {HEALTH_PATH} only")
            return
        await self.bare(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
