"""The If-Match pattern in the OpenAPI document accepts exactly what the agent's parser
accepts: a CI run's API fuzzer sent `If-Match: "9300043602620151636"`, valid by a looser
pattern, and the agent's 400 (over 2**63-1) counted as a schema-valid request refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap.etags import MAX_VERSION, BadConditionHeader, parse_if_match
from bootstrap.openapi import IF_MATCH, decimal_at_most


def parser_accepts(text: str) -> bool:
    try:
        parse_if_match(text.encode())
    except BadConditionHeader:
        return False
    return True


def schema_accepts(text: str) -> bool:
    return re.fullmatch(IF_MATCH["schema"]["pattern"], text) is not None  # type: ignore[index]


EDGES = [
    MAX_VERSION,
    MAX_VERSION + 1,
    MAX_VERSION - 1,
    10**18 - 1,
    10**18,
    10**19 - 1,
    9300043602620151636,  # the fuzzer's find
    0,
]


@pytest.mark.parametrize("number", EDGES)
@pytest.mark.parametrize("quoted", [False, True])
def test_pattern_and_parser_agree_at_the_edges(number: int, quoted: bool) -> None:
    text = f'"{number}"' if quoted else str(number)
    assert schema_accepts(text) == parser_accepts(text) == (number <= MAX_VERSION)


@given(st.integers(min_value=0, max_value=10**20), st.integers(0, 3), st.booleans())
def test_pattern_and_parser_agree_on_any_decimal(number: int, zeros: int, quoted: bool) -> None:
    digits = "0" * zeros + str(number)
    text = f'"{digits}"' if quoted else digits
    assert schema_accepts(text) == parser_accepts(text), text


@pytest.mark.parametrize("limit", [0, 7, 10, 99, 100, 305, 1000, 2**31 - 1])
def test_decimal_at_most_is_exactly_the_range(limit: int) -> None:
    pattern = re.compile(decimal_at_most(limit))
    for number in range(0, min(limit * 3 + 20, 5000)):
        assert (pattern.fullmatch(str(number)) is not None) == (number <= limit), number
    assert pattern.fullmatch(str(limit)) and not pattern.fullmatch(str(limit + 1))
