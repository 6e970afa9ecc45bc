"""The one gate for stored values and the strict decoding of names."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from bootstrap.records import (
    MAX_EXACT_INT,
    MAX_VALUE_DEPTH,
    MIN_EXACT_INT,
    InvalidName,
    InvalidValue,
    decode_name,
    validate_value,
)
from bootstrap.storage import BadRequest, HybridStorage


def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b' { "a" : [ 1 , 2.5 , "x" ] } ', b'{"a":[1,2.5,"x"]}'),
        (str(MAX_EXACT_INT).encode(), str(MAX_EXACT_INT).encode()),
        (str(MIN_EXACT_INT).encode(), str(MIN_EXACT_INT).encode()),
        (b'"12345678901234567890123"', b'"12345678901234567890123"'),
        (b"[1.5e300, -0.0, 1E2]", b"[1.5e+300,-0.0,100.0]"),
        (_nested(MAX_VALUE_DEPTH), _nested(MAX_VALUE_DEPTH)),
        (b'["' + b"{" * 500 + b'"]', b'["' + b"{" * 500 + b'"]'),
        (b'["\\"[[[[", 1]', b'["\\"[[[[",1]'),
    ],
)
def test_accepted_values_keep_their_meaning(raw: bytes, stored: bytes) -> None:
    assert validate_value(raw) == stored
    assert orjson.loads(validate_value(raw)) == orjson.loads(stored)


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        (str(MAX_EXACT_INT + 1).encode(), "integer"),
        (str(MIN_EXACT_INT - 1).encode(), "integer"),
        (b'{"n": 12345678901234567890123}', "integer"),
        (b"[" + b"9" * 5000 + b"]", "integer"),
        (_nested(MAX_VALUE_DEPTH + 1), "nested"),
        (_nested(MAX_VALUE_DEPTH + 1, b'{"a":', b"}").replace(b"{}", b"1"), "nested"),
        (_nested(2000), "nested"),
        (b"[" * 2000, "nested"),
        (b"{not json", "JSON"),
        (b"NaN", "JSON"),
        (b'"\\ud800"', "JSON"),
    ],
    ids=[
        "uint64+1",
        "int64-1",
        "nested-bigint",
        "5000-digits",
        "depth+1",
        "objects-depth+1",
        "depth-2000",
        "unclosed-2000",
        "not-json",
        "nan",
        "lone-surrogate",
    ],
)
def test_values_that_cannot_be_kept_exactly_are_refused(raw: bytes, word: str) -> None:
    with pytest.raises(InvalidValue) as info:
        validate_value(raw)
    assert word in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_bytes_orjson_wrote_are_only_checked_for_depth() -> None:
    canonical = orjson.dumps({"a": [1, 2]})
    assert validate_value(canonical, reencode=False) is canonical
    with pytest.raises(InvalidValue):
        validate_value(_nested(MAX_VALUE_DEPTH + 1), reencode=False)


def test_library_put_refuses_a_value_too_deep_to_list(
    make_storage: Callable[..., HybridStorage],
) -> None:
    storage = make_storage()
    deep: list[object] = []
    for _ in range(MAX_VALUE_DEPTH):
        deep = [deep]
    with pytest.raises(BadRequest, match="nested"):
        storage.put("tasks", "deep", deep)
    assert storage.list_records("tasks") == ({}, False)


@pytest.mark.parametrize(
    ("raw", "name"),
    [(b"abc", "abc"), (b"%C3%A9", "\u00e9"), (b"%EF%BF%BD", "\ufffd"), (b"a%20b", "a b")],
)
def test_names_decode_strictly(raw: bytes, name: str) -> None:
    assert decode_name("key", raw) == name


@pytest.mark.parametrize("raw", [b"%FF", b"%FE", b"a%C3", b"%ED%A0%80", b"\xff"])
def test_invalid_utf8_names_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidName, match=r"key .* is not valid UTF-8"):
        decode_name("key", raw)
