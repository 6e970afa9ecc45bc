"""The machine's OAuth token from the GCE / Cloud Run metadata server: the password of Cloud
SQL IAM database authentication (`postgres.auth: iam`).

There is then no database password anywhere: not on the VM's disk, not in the inventory, not
in the container's environment. The server checks the token only when a connection logs in,
so a token is fetched for each new connection and cached until REFRESH_MARGIN before it
expires (the metadata server's tokens live about an hour). A metadata server that does not
answer within the connect timeout is the database being away (TokenUnavailable is a
psycopg.OperationalError): the tier retries as for any lost connection.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson
import psycopg

from ..config import ConfigError

TOKEN_PATH = "/instance/service-accounts/default/token"
# Fetch a new token when the cached one has less than this left: a connection may take a
# few seconds to log in, and clocks drift.
REFRESH_MARGIN = 300.0
ATTEMPTS = 4
FIRST_BACKOFF = 0.2
REQUEST_TIMEOUT = 2.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TOKEN_CHARS = 4096
MAX_URL_CHARS = 2048


class TokenUnavailable(psycopg.OperationalError):
    """No token now (metadata server away or answering nonsense); one line, no secret."""


def check_metadata_url(key: str, url: str) -> None:
    """An http:// URL with a host: the metadata server is plain HTTP on a link-local address."""
    if len(url) > MAX_URL_CHARS:
        raise ConfigError(key, url[:80] + "...", f"longer than {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(key, url, "expected an http:// URL such as the default metadata server")


class MetadataToken:
    """A cached access token, refreshed before it expires; safe to share between threads."""

    def __init__(
        self,
        metadata_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = metadata_url.rstrip("/") + TOKEN_PATH
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.fetches = 0  # how many tokens were fetched (status and tests)
        # The metadata server is reached directly, never through an http_proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def token(self) -> str:
        """A token with at least REFRESH_MARGIN seconds left when the server says so."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN:
                self._token, lifetime = self._fetch()
                self._expires_at = self._clock() + lifetime
            return self._token

    def _fetch(self) -> tuple[str, float]:
        backoff = FIRST_BACKOFF
        reason = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                token, lifetime = self._request()
            except TokenUnavailable as exc:
                reason = str(exc)
            else:
                self.fetches += 1
                return token, lifetime
            if attempt < ATTEMPTS:
                self._sleep(backoff)
                backoff *= 2
        raise TokenUnavailable(
            f"no token from the metadata server after {ATTEMPTS} tries: {reason}"
        )

    def _request(self) -> tuple[str, float]:
        request = urllib.request.Request(self.url, headers={"Metadata-Flavor": "Google"})
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise TokenUnavailable(f"{self.url} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise TokenUnavailable(f"{self.url}: {exc}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise TokenUnavailable(f"{self.url} answered more than {MAX_RESPONSE_BYTES} bytes")
        try:
            data = orjson.loads(body)
            token = data["access_token"]
            lifetime = float(data["expires_in"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise TokenUnavailable(f"{self.url} answered no access_token/expires_in") from None
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
            raise TokenUnavailable(f"{self.url} answered a malformed access_token")
        if not token.isprintable() or " " in token:
            raise TokenUnavailable(f"{self.url} answered a malformed access_token")
        return token, max(0.0, lifetime)
