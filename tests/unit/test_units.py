import math
from collections.abc import Callable

import pytest

from bootstrap.units import MAX_TEXT_CHARS, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100MB", 100_000_000),
        ("64MiB", 64 * 1024**2),
        ("512k", 512 * 1024),
        (4096, 4096),
        ("1 GiB", 1024**3),
        ("10b", 10),
    ],
)
def test_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5min", 300.0), ("30s", 30.0), ("2h", 7200.0), ("7d", 604800.0), ("250ms", 0.25), (8, 8.0)],
)
def test_durations(text: str | int, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["100XB", "", "MB", "-5MB", "5.5.5MB", True])
def test_bad_sizes_say_what_is_allowed(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["5 fortnights", "", "min", "-1s", False])
def test_bad_durations_say_what_is_allowed(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, 10**400, -(10**400)],
    ids=["nan", "inf", "-inf", "big", "-big"],
)
def test_a_duration_must_be_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(bad)


@pytest.mark.parametrize("parse", [parse_size, parse_duration])
def test_long_texts_are_refused_before_parsing(parse: Callable[[str], float]) -> None:
    assert parse("9" * MAX_TEXT_CHARS) > 0
    with pytest.raises(ValueError, match=f"at most {MAX_TEXT_CHARS} characters"):
        parse("9" * 400)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "nan", "inf", [1], None])
def test_sizes_refuse_what_is_not_a_number(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)  # type: ignore[arg-type]


def test_terabytes() -> None:
    assert parse_size("1TB") == 10**12 and parse_size("2TiB") == 2 * 1024**4
