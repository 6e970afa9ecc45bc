"""A stand-in for what a GCE VM reads over HTTP: the metadata server, GCS and Secret Manager.

The lab VM reaches it at http://10.0.2.2:PORT (QEMU's user network maps that to the host's
127.0.0.1:PORT). It answers only the calls the startup script makes, with GCE's rules where
they matter: the metadata server wants `Metadata-Flavor: Google`, and the bucket and the
secrets want the token the metadata server handed out. stdlib's ThreadingHTTPServer serves.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from tests.lab.gitremote import GUEST_HOST_ADDRESS

METADATA_PREFIX = "/computeMetadata/v1"
TOKEN_PATH = f"{METADATA_PREFIX}/instance/service-accounts/default/token"
ATTRIBUTES_PREFIX = f"{METADATA_PREFIX}/instance/attributes/"


class LabMetadata:
    """Serve `attributes`, one GCS object (`objects`: name -> file) and `secret_values`."""

    def __init__(self, attributes: Mapping[str, str] | None = None,
                 objects: Mapping[str, Path] | None = None,
                 secret_values: Mapping[str, str] | None = None,
                 address: str = GUEST_HOST_ADDRESS) -> None:
        self.address = address  # how clients reach it: the guest's 10.0.2.2, or 127.0.0.1
        self.attributes = dict(attributes or {})
        self.objects = dict(objects or {})
        self.secret_values = dict(secret_values or {})
        self.token = secrets.token_urlsafe(24)
        # What the token endpoint says of the token's life, and how many token requests to
        # answer 503 first (a metadata server that is away for a moment).
        self.token_lifetime = 3599
        self.fail_token_requests = 0
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What clients use: http://10.0.2.2:PORT from the guest."""
        return f"http://{self.address}:{self.port}"

    @property
    def metadata_url(self) -> str:
        return self.base_url + METADATA_PREFIX

    def object_url(self, bucket: str, name: str) -> str:
        """The JSON API download URL, as the Pulumi program writes it for storage.googleapis.com."""
        return f"{self.base_url}/storage/v1/b/{bucket}/o/{name}?alt=media"

    def secret_url(self, secret: str) -> str:
        return f"{self.base_url}/v1/projects/lab/secrets/{secret}/versions/latest:access"

    def rotate_token(self) -> str:
        """A new token, as when the old one nears expiry (the old one is refused from now on)."""
        self.token = secrets.token_urlsafe(24)
        return self.token

    def start(self) -> LabMetadata:
        lab = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                lab.requests.append(self.path)

            def do_GET(self) -> None:
                status, body = lab.answer(self.path, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LabMetadata:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def answer(self, raw_path: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(status, body) for one GET; separate from the socket so it reads as a table."""
        path = urlsplit(raw_path).path
        lowered = {k.lower(): v for k, v in headers.items()}
        if path.startswith(METADATA_PREFIX):
            if lowered.get("metadata-flavor") != "Google":
                return 403, b"Missing Metadata-Flavor:Google header.\n"
            if path == TOKEN_PATH:
                if self.fail_token_requests > 0:
                    self.fail_token_requests -= 1
                    return 503, b"metadata server unavailable\n"
                token = {
                    "access_token": self.token,
                    "expires_in": self.token_lifetime,
                    "token_type": "Bearer",
                }
                return 200, json.dumps(token).encode()
            key = path.removeprefix(ATTRIBUTES_PREFIX)
            if path.startswith(ATTRIBUTES_PREFIX) and key in self.attributes:
                return 200, self.attributes[key].encode()
            return 404, b"not found\n"
        if lowered.get("authorization") != f"Bearer {self.token}":
            return 401, b"no or wrong bearer token\n"
        parts = path.split("/")
        if path.startswith("/storage/v1/b/") and len(parts) == 7 and parts[5] == "o":
            source = self.objects.get(parts[6])
            return (200, source.read_bytes()) if source else (404, b"no such object\n")
        if path.startswith("/v1/projects/") and path.endswith("/versions/latest:access"):
            value = self.secret_values.get(parts[5])
            if value is None:
                return 404, b"no such secret\n"
            data = base64.b64encode(value.encode()).decode()
            return 200, json.dumps({"payload": {"data": data}}).encode()
        return 404, b"not found\n"
