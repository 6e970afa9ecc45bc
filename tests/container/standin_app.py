"""A STAND-IN for the Super Spine app in the Cloud Run stand-in (test_cloudrun_standin.py).

Stdlib only: it runs with the Debian base's python3 in its own container of the pod. It does
what the real app does with its data: every request goes to the agent on the unix socket named
by SUPER_SPINE_SOCKET (the in-memory volume both containers mount). It listens on $PORT as
Cloud Run's ingress container does. `GET|PUT|DELETE /records/<collection>/<key>` maps to the
agent's `/v1/records/...`; the agent's status and body come back unchanged.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOCKET = os.environ["SUPER_SPINE_SOCKET"]
PORT = int(os.environ.get("PORT", "8080"))
MAX_BODY = 1 << 20


class AgentConnection(http.client.HTTPConnection):
    """HTTP over the agent's unix socket."""

    def __init__(self) -> None:
        super().__init__("agent", timeout=30)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(SOCKET)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _forward(self) -> None:
        if not self.path.startswith("/records/"):
            self._reply(404, b'{"error": "stand-in app: /records/<collection>/<key> only"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else None
        conn = AgentConnection()
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(self.command, "/v1" + self.path, body=body, headers=headers)
            answer = conn.getresponse()
            self._reply(answer.status, answer.read())
        except OSError as exc:
            self._reply(502, f'{{"error": "agent unreachable: {exc}"}}'.encode())
        finally:
            conn.close()

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = _forward


if __name__ == "__main__":
    # PID 1 ignores SIGTERM unless it says otherwise: stop at once, as an app should.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
