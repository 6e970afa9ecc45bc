import pytest

from bootstrap.units import parse_duration, parse_size


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
