"""uvicorn's httptools protocol with the limits it lacks, set from the api config section.

uvicorn with httptools bounds neither the request head (httptools buffers a header of any size,
concatenating it chunk by chunk) nor the time before a first request (its keep-alive timer starts
only after a response), and it accepts every connection. This subclass counts head bytes before
they pile up, times out silent and slow heads, and answers connections over the limit with a 503
at once, so file descriptors never run out. Everything else stays uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
import resource

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("spine.http")

# File descriptors kept for everything but served connections: files, journal, git, logs, and
# over-limit connections in their last moments.
RESERVED_FDS = 128
OVER_LIMIT_LINGER = 0.25  # seconds an over-limit connection may take to send its request


def _reply(status: str, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Set max_head_bytes and max_connections on a subclass (see bounded_protocol)."""

    max_head_bytes = 16 * 1024
    max_connections = 256

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._boundary_seen = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._over_limit = len(self.connections) > self.max_connections
        if self._over_limit:
            # Answer and half-close now; close once its request is read (closing with unread
            # data would reset the connection and lose the 503) or after a short linger.
            transport.write(
                _reply("503 Service Unavailable", "over api.max_connections; retry later")
            )
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(OVER_LIMIT_LINGER, transport.close)
            return
        # A connection that never sends a byte is idle too.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._over_limit:
            self.transport.close()
            return
        self._boundary_seen = False
        super().data_received(data)
        # Bytes are head bytes only if this whole chunk fell inside one head: a chunk that ended
        # a head or a message (its body's tail) is not counted.
        if not self._in_head or self._boundary_seen or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            message = f"request head is over {self.max_head_bytes} bytes (api.max_header_bytes)"
            self.transport.write(_reply("431 Request Header Fields Too Large", message))
            self.transport.close()
            return
        if self._head_timer is None:  # slow heads get the idle time, not one timer per byte
            self._head_timer = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._boundary_seen = True
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._boundary_seen = True

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def bounded_protocol(max_head_bytes: int, max_connections: int) -> type[BoundedHttpToolsProtocol]:
    """A protocol class with these limits, for uvicorn.Config(http=...)."""
    return type(
        "SpineHttpProtocol",
        (BoundedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "max_connections": max_connections},
    )


def fit_connection_limit(max_connections: int) -> int:
    """Raise the soft open-file limit as far as needed (and allowed); if the hard limit is lower,
    serve fewer connections rather than fail every client once descriptors run out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - RESERVED_FDS)
        log.warning(
            "api.max_connections lowered to fit the open-file limit",
            extra={"configured": max_connections, "serving": fitted, "nofile": soft},
        )
        return fitted
    return max_connections
