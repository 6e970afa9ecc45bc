"""The HTTP floor: a bare ASGI app on the agent's own server stack and socket setup, answering
every request with a fixed 200-byte JSON body. The agent's GET is measured against it, so what
the agent adds over HTTP itself is one ratio (issue 11 §3).

`python -m bench.bare_app --socket PATH`; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn
import uvloop
from starlette.types import Receive, Scope, Send

from bootstrap.config import ApiConfig
from bootstrap.daemon import bind_unix_socket, server_config

from .common import make_values

BODY = make_values()[0]  # one of the bench's 200-byte records
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer at once with the constant body (a PUT's body is read and dropped)."""
    if scope["type"] != "http":
        return
    more = scope["method"] in ("PUT", "POST")
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bare_app", description=__doc__)
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args(argv)
    api = ApiConfig(socket=args.socket)
    sock = bind_unix_socket(api.socket, api.socket_mode)
    server = uvicorn.Server(server_config(app, api))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve(sockets=[sock]))
    args.socket.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
