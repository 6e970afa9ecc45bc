"""ETag headers of conditional requests (RFC 9110 §8.8.3, §13.1): parse and format.

A record's ETag is its version as a strong, quoted decimal: `"1732300000123456"`. The agent
accepts the forms its semantics need and refuses the rest with one line naming the header, so
a client never believes a condition was checked when it was not:
- `If-Match: "<version>"`: one strong tag (a weak `W/"..."`, a list, or `*` is refused); the
  quotes may be left out (`If-Match: 17`), which can mean nothing else;
- `If-None-Match: *`: on PUT only, create only.
"""

from __future__ import annotations

from dataclasses import dataclass

# The version is a bigint column in PostgreSQL: at most 19 digits, below 2**63.
MAX_VERSION = 2**63 - 1
MAX_HEADER_CHARS = 64  # a quoted 19-digit version with room for blanks; longer is malformed


class BadConditionHeader(ValueError):
    """A conditional header the agent cannot honour exactly; the message names it."""


@dataclass(frozen=True)
class Conditions:
    """What a request asked for: `if_match` a version, or `if_absent` (If-None-Match: *)."""

    if_match: int | None = None
    if_absent: bool = False

    @property
    def any(self) -> bool:
        return self.if_match is not None or self.if_absent


NONE = Conditions()


def format_etag(version: int) -> bytes:
    """The ETag header value for a version."""
    return b'"%d"' % version


def parse_version(text: str, what: str = "version") -> int:
    """A version given by hand (CLI `--if-match`): a decimal, quoted or not."""
    digits = text.strip()
    if len(digits) >= 2 and digits[0] == digits[-1] == '"':
        digits = digits[1:-1]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        raise BadConditionHeader(f"{what} {text[:40]!r} must be a decimal version, e.g. \"17\"")
    version = int(digits)
    if version > MAX_VERSION:
        raise BadConditionHeader(f"{what} {text[:40]!r} is over the largest version 2**63-1")
    return version


def parse_if_match(raw: bytes) -> int:
    """The version of `If-Match: "<version>"`."""
    text = _text("If-Match", raw)
    if text == "*":
        raise BadConditionHeader(
            'If-Match: * is not supported; send the record\'s ETag, e.g. If-Match: "17"'
        )
    if text.startswith("W/"):
        raise BadConditionHeader("If-Match: a weak ETag never matches; send the strong ETag")
    quoted = len(text) >= 3 and text[0] == text[-1] == '"'
    if not quoted and not text.isdigit():
        raise BadConditionHeader(f'If-Match {text[:40]!r} must be one quoted ETag, e.g. "17"')
    return parse_version(text, "If-Match")


def parse_if_none_match(raw: bytes) -> None:
    """`If-None-Match: *` is the only form a write accepts."""
    text = _text("If-None-Match", raw)
    if text != "*":
        raise BadConditionHeader(
            f"If-None-Match {text[:40]!r}: only * (create only) is supported on writes"
        )


def _text(name: str, raw: bytes) -> str:
    if len(raw) > MAX_HEADER_CHARS:
        raise BadConditionHeader(f"{name} is {len(raw)} bytes long (at most {MAX_HEADER_CHARS})")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise BadConditionHeader(f"{name} must be ASCII") from None
    if not text:
        raise BadConditionHeader(f"{name} is empty")
    if "," in text:
        raise BadConditionHeader(f"{name} must hold one ETag, not a list")
    return text


def conditions_from_headers(headers: list[tuple[bytes, bytes]], method: str) -> Conditions:
    """The conditions of a PUT or DELETE from its raw ASGI headers (lower-case names)."""
    if_match: bytes | None = None
    if_none_match: bytes | None = None
    for name, value in headers:
        if name == b"if-match":
            if if_match is not None:
                raise BadConditionHeader("If-Match is given twice; send it once")
            if_match = value
        elif name == b"if-none-match":
            if if_none_match is not None:
                raise BadConditionHeader("If-None-Match is given twice; send it once")
            if_none_match = value
    if if_match is None and if_none_match is None:
        return NONE
    if_absent = False
    if if_none_match is not None:
        if method != "PUT":
            raise BadConditionHeader(f"If-None-Match is not supported on {method}")
        parse_if_none_match(if_none_match)
        if_absent = True
    # Both together are evaluated as RFC 9110 §13.2.2 orders them, and can never both hold:
    # the write is refused with 412 whatever is stored.
    version = None if if_match is None else parse_if_match(if_match)
    return Conditions(if_match=version, if_absent=if_absent)
