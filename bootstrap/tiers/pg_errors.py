"""What can go wrong talking to PostgreSQL, as the agent's own exceptions, each one line.

Connection failures come from libpq as text with no SQLSTATE, so they are sorted by what the
server said: a FATAL refusal (wrong password, missing database, pg_hba) or a TLS failure will
not heal by retrying and is a configuration error (exit 2 at start); anything else (refused,
timed out, shutting down, restarting) is the server being away, and the tier retries.
"""

from __future__ import annotations

import re

import psycopg

from .. import errors
from ..config import ConfigError
from ..records import Change
from . import TierUnavailable
from .pg_config import redact_dsn

# FATALs that mean "come back later", not "you are not welcome".
_TRANSIENT_FATALS = (
    "starting up",
    "shutting down",
    "in recovery",
    "not yet accepting connections",
    "too many clients",
    "remaining connection slots",
    "terminating connection",
)
_TLS_MARKERS = ("SSL", "certificate")
_PREAMBLE = re.compile(
    r'(connection failed: )?connection to server (at|on) "[^"]*"(, port \d+)? failed: '
)


class ServerRefused(ConfigError):
    """The server answered and said no: fix the configuration, retrying will not help."""


class PreconditionFailed(errors.PreconditionFailed):
    """A conditional write lost in PostgreSQL: `current_version` is the stored version (None:
    absent or a tombstone), `current` the stored row when there is one, so the agent can take
    it and serve the next read fresh. The storage's own class: the API answers 412 for both."""

    def __init__(
        self,
        collection: str,
        key: str,
        current_version: int | None,
        current: Change | None = None,
    ) -> None:
        shown = "absent" if current_version is None else f"at version {current_version}"
        super().__init__(current_version, f"precondition failed: {collection}/{key} is {shown}")
        self.current = current


class ValueTooLarge(ValueError):
    """A value over the tier's size limit; nothing of its batch was written."""


def one_line(exc: BaseException) -> str:
    """libpq messages span lines ("...\\n\\tIs the server running...?"): fold them, and drop
    the preamble naming host and port (the DSN beside it says that), so the server's own words
    fit in one short error line."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    text = _PREAMBLE.sub("", text).replace("FATAL: ", "")
    return redact_dsn(text) or type(exc).__name__


def is_refusal(exc: BaseException) -> bool:
    text = str(exc)
    if any(marker in text for marker in _TLS_MARKERS):
        return True
    return "FATAL:" in text and not any(word in text for word in _TRANSIENT_FATALS)


def connect_error(exc: psycopg.Error, dsn_shown: str, password_file: str | None) -> Exception:
    """The exception to raise for a failed connect: ServerRefused or TierUnavailable."""
    text = one_line(exc)
    if not is_refusal(exc):
        return TierUnavailable(f"postgres unavailable: {text}")
    if "password authentication failed" in text and password_file:
        return ServerRefused("postgres.password_file", password_file, text)
    return ServerRefused("postgres.dsn", dsn_shown, text)


def unavailable(exc: BaseException) -> TierUnavailable:
    return TierUnavailable(f"postgres unavailable: {one_line(exc)}")
