"""Bulk reads, bulk writes and transactions: every bad body is refused with one line naming the
operation and the field (bootstrap/batch.py, pure: nothing reaches the storage). Each case is
its own test; the storage-level behaviour is in test_batch_storage.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bootstrap.batch import (
    MAX_TTL,
    BatchError,
    BatchTooLarge,
    Check,
    Delete,
    Limits,
    Put,
    check_ttl,
    operations_body,
    parse_read,
    parse_ttl,
    parse_write,
    read_body,
    read_names,
    write_ops,
)

LIMITS = Limits(max_ops=10, max_value_size=1000)


def _write(operations: Any, transaction: bool = True, limits: Limits = LIMITS) -> Any:
    return parse_write(orjson.dumps({"operations": operations}), limits, transaction)


def _refused(operations: Any, match: str, transaction: bool = True) -> BatchError:
    with pytest.raises(BatchError, match=match) as caught:
        _write(operations, transaction)
    assert "\n" not in str(caught.value)
    return caught.value


def _put(key: str = "a", **extra: Any) -> dict[str, Any]:
    return {"op": "put", "collection": "stats", "key": key, "value": {"n": 1}, **extra}


# -- the good shapes ----------------------------------------------------------------------
def test_a_bulk_read_names_records_of_several_collections_in_order() -> None:
    body = read_body([("agents", "a1"), ("stats", "s 1"), ("agents", "a0")])
    assert parse_read(body, LIMITS) == [("agents", "a1"), ("stats", "s 1"), ("agents", "a0")]


def test_operations_come_back_validated_with_compact_values() -> None:
    ops = _write(
        [
            {"op": "put", "collection": "stats", "key": "a", "value": {"b": [1, 2.5]}, "ttl": 60},
            {"op": "delete", "collection": "agents", "key": "b", "if_match": 17},
            {"op": "check", "collection": "tasks", "key": "c", "if_absent": True},
        ]
    )
    assert [(o.op, o.collection, o.key) for o in ops] == [
        ("put", "stats", "a"),
        ("delete", "agents", "b"),
        ("check", "tasks", "c"),
    ]
    assert ops[0].raw == b'{"b":[1,2.5]}' and ops[0].ttl == 60
    assert ops[1].if_match == 17 and ops[2].if_absent


def test_the_library_forms_give_the_same_operations_as_the_wire_form() -> None:
    items = [
        Put("stats", "a", {"x": 1}, cls="cache", ttl=5, if_match=3),
        Delete("agents", "b"),
        Check("tasks", "c", if_absent=True),
    ]
    assert write_ops(items, LIMITS, True) == parse_write(operations_body(items), LIMITS, True)


def test_a_library_bulk_read_takes_pairs() -> None:
    assert read_names([("agents", "a")], LIMITS) == [("agents", "a")]


def test_a_ttl_is_whole_seconds_from_one_to_a_year() -> None:
    assert parse_ttl("1") == 1 and parse_ttl(str(MAX_TTL)) == MAX_TTL
    assert check_ttl(60) == 60


# -- the body -----------------------------------------------------------------------------
def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(BatchError, match="body is not JSON"):
        parse_write(b'{"operations": [', LIMITS, True)


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(BatchError, match="must be a JSON object"):
        parse_write(b"[]", LIMITS, True)


def test_a_body_without_its_list_is_refused() -> None:
    with pytest.raises(BatchError, match='must hold "operations"'):
        parse_write(b"{}", LIMITS, True)


def test_an_unknown_top_level_field_is_refused() -> None:
    with pytest.raises(BatchError, match="unknown field 'atomic'"):
        parse_write(b'{"operations": [], "atomic": true}', LIMITS, True)


def test_operations_that_are_not_a_list_are_refused() -> None:
    _refused({"op": "put"}, "operations must be a list")


def test_an_empty_batch_is_refused() -> None:
    _refused([], "operations must not be empty")


def test_a_batch_over_max_batch_ops_is_413() -> None:
    with pytest.raises(BatchTooLarge, match=r"11 items, over api.max_batch_ops \(10\)"):
        _write([_put(str(i)) for i in range(11)])
    assert BatchTooLarge.status == 413


def test_a_bulk_read_over_max_batch_ops_is_413() -> None:
    with pytest.raises(BatchTooLarge, match=r"api\.max_batch_ops"):
        parse_read(read_body([("stats", str(i)) for i in range(11)]), LIMITS)


def test_a_bulk_read_of_nothing_is_refused() -> None:
    with pytest.raises(BatchError, match="records must not be empty"):
        parse_read(b'{"records": []}', LIMITS)


def test_an_integer_beyond_64_bits_anywhere_in_the_body_is_refused_not_rounded() -> None:
    body = b'{"operations": [{"op": "put", "collection": "s", "key": "a", "value": 1%s}]}'
    with pytest.raises(BatchError, match=r"integer 1000.* is outside -2\*\*63..2\*\*64-1"):
        parse_write(body % (b"0" * 30), LIMITS, True)


# -- duplicates ---------------------------------------------------------------------------
def test_one_record_written_twice_in_a_batch_is_refused() -> None:
    error = _refused([_put("a"), _put("b"), _put("a")], "operations 0 and 2 both name stats/a")
    assert "one per record" in str(error)


def test_a_put_and_a_delete_of_one_record_in_a_batch_are_refused() -> None:
    _refused(
        [_put("a"), {"op": "delete", "collection": "stats", "key": "a"}],
        "operations 0 and 1 both name stats/a",
    )


def test_one_record_read_twice_in_a_bulk_read_is_refused() -> None:
    with pytest.raises(BatchError, match="records 0 and 1 both name agents/a"):
        parse_read(read_body([("agents", "a"), ("agents", "a")]), LIMITS)


def test_the_same_key_in_two_collections_is_two_records() -> None:
    body = read_body([("agents", "a"), ("tasks", "a")])
    assert len(parse_read(body, LIMITS)) == 2


# -- operations ---------------------------------------------------------------------------
def test_an_unknown_op_is_refused() -> None:
    _refused([{"op": "upsert", "collection": "s", "key": "a"}], r"operations\[0\].op 'upsert'")


def test_a_check_outside_a_transaction_is_refused() -> None:
    _refused(
        [{"op": "check", "collection": "s", "key": "a", "if_match": 1}],
        "must be put or delete",
        transaction=False,
    )


def test_an_unknown_field_on_an_operation_is_refused() -> None:
    _refused([_put(etag=5)], r"operations\[0\]: field 'etag' is not allowed on put")


def test_a_value_on_a_delete_is_refused() -> None:
    _refused(
        [{"op": "delete", "collection": "s", "key": "a", "value": 1}],
        "field 'value' is not allowed on delete",
    )


def test_a_ttl_on_a_delete_is_refused() -> None:
    _refused(
        [{"op": "delete", "collection": "s", "key": "a", "ttl": 5}],
        "field 'ttl' is not allowed on delete",
    )


def test_a_put_without_a_value_is_refused() -> None:
    _refused([{"op": "put", "collection": "s", "key": "a"}], "a put needs a value")


def test_a_null_value_is_a_value() -> None:
    assert _write([_put(value=None)])[0].raw == b"null"


def test_a_null_if_match_is_refused_not_taken_for_no_condition() -> None:
    # A client that sends null means something; the document says a version (schemathesis).
    _refused([_put(if_match=None)], r"operations\[0\]\.if_match must not be null")


def test_a_null_ttl_is_refused() -> None:
    _refused([_put(ttl=None)], r"operations\[0\]\.ttl must not be null")


def test_a_null_class_is_refused() -> None:
    _refused([_put(**{"class": None})], r"operations\[0\]\.class must not be null")


def test_a_null_condition_on_a_check_is_refused() -> None:
    check = {"op": "check", "collection": "s", "key": "a", "if_absent": True, "if_match": None}
    _refused([check], r"operations\[0\]\.if_match must not be null")


def test_the_library_none_means_not_given() -> None:
    (op,) = write_ops([Put("s", "a", 1, if_match=None, ttl=None)], LIMITS, transaction=True)
    assert op.if_match is None and op.ttl is None


def test_an_operation_that_is_not_an_object_is_refused() -> None:
    _refused(["put"], r"operations\[0\] must be an object")


def test_a_missing_key_is_refused() -> None:
    _refused([{"op": "put", "collection": "s", "value": 1}], "needs both collection and key")


def test_a_bad_collection_name_is_refused_naming_the_operation() -> None:
    _refused([_put(collection="../etc")], r"operations\[0\].collection: collection '../etc'")


def test_a_key_with_a_slash_is_refused() -> None:
    _refused([_put("a/b")], r"operations\[0\].key: key 'a/b' must not contain")


def test_a_key_that_is_not_a_string_is_refused() -> None:
    _refused([_put(7)], r"operations\[0\].key must be a string, not int")


def test_a_class_that_is_not_a_string_is_refused() -> None:
    _refused([_put(**{"class": 3})], r"operations\[0\].class must be a string")


def test_a_value_over_max_value_size_is_413() -> None:
    with pytest.raises(BatchTooLarge, match=r"operations\[1\].value is 1\d\d\d bytes"):
        _write([_put("a"), _put("b", value="x" * 1000)])


def test_a_value_nested_too_deep_is_refused() -> None:
    deep: Any = 0
    for _ in range(200):
        deep = [deep]
    _refused([_put(value=deep)], r"operations\[0\].value: value is nested deeper than 128")


# -- conditions ---------------------------------------------------------------------------
def test_if_match_that_is_not_an_integer_is_refused() -> None:
    _refused([_put(if_match='"17"')], r"operations\[0\].if_match '\"17\"' must be a version")


def test_a_negative_if_match_is_refused() -> None:
    _refused([_put(if_match=-1)], r"if_match -1 must be a version")


def test_if_match_over_the_largest_version_is_refused() -> None:
    _refused([_put(if_match=2**63)], "must be a version")


def test_if_match_true_is_refused() -> None:
    _refused([_put(if_match=True)], "if_match True must be a version")


def test_if_absent_that_is_not_a_boolean_is_refused() -> None:
    _refused([_put(if_absent="yes")], r"operations\[0\].if_absent must be true or false")


def test_if_match_with_if_absent_is_evaluated_like_on_a_single_put() -> None:
    op = _write([_put(if_match=3, if_absent=True)])[0]
    assert op.if_match == 3 and op.if_absent  # can never both hold: the storage answers 412


def test_a_check_without_a_condition_is_refused() -> None:
    _refused([{"op": "check", "collection": "s", "key": "a"}], "a check needs if_match or")


# -- TTLs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ttl", [0, -5])
def test_a_ttl_of_zero_or_less_is_refused(ttl: int) -> None:
    _refused([_put(ttl=ttl)], rf"operations\[0\].ttl {ttl} must be from 1 to {MAX_TTL}")


def test_a_ttl_over_a_year_is_refused() -> None:
    _refused([_put(ttl=MAX_TTL + 1)], f"ttl {MAX_TTL + 1} must be from 1 to {MAX_TTL}")


def test_a_fractional_ttl_is_refused() -> None:
    _refused([_put(ttl=1.5)], "ttl 1.5 must be a whole number of seconds")


def test_a_ttl_given_as_a_string_is_refused() -> None:
    _refused([_put(ttl="60")], "ttl '60' must be a whole number of seconds")


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.5", "1e3", "٣", "9" * 13])
def test_a_ttl_query_that_is_not_whole_seconds_is_refused(text: str) -> None:
    with pytest.raises(BatchError, match="must be a whole number of seconds"):
        parse_ttl(text)


def test_a_ttl_query_of_zero_is_refused() -> None:
    with pytest.raises(BatchError, match="ttl 0 must be from 1"):
        parse_ttl("0")


def test_a_ttl_query_over_a_year_is_refused() -> None:
    with pytest.raises(BatchError, match=f"must be from 1 to {MAX_TTL}"):
        parse_ttl(str(MAX_TTL + 1))


# -- the library's forms ------------------------------------------------------------------
def test_a_library_operation_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(BatchError, match=r"operations\[0\] must be a Put, Delete or Check"):
        write_ops([("put", "s", "a")], LIMITS, True)  # type: ignore[list-item]


def test_a_library_value_that_is_not_json_is_refused() -> None:
    with pytest.raises(BatchError, match="not JSON-serialisable"):
        write_ops([Put("s", "a", {1, 2})], LIMITS, False)


def test_a_library_bulk_read_of_a_non_pair_is_refused() -> None:
    with pytest.raises(BatchError, match="must be a \\(collection, key\\) pair"):
        read_names(["agents/a"], LIMITS)  # type: ignore[list-item]


# -- the short paths (plain bulk reads and puts) give the long paths' answers -------------------
def test_a_long_integer_in_a_key_string_is_also_checked_and_kept() -> None:
    # 19 digits trigger the integer scan; inside a string they are no integer, so nothing is lost
    body = read_body([("agents", "1" * 25), ("agents", "b")])
    assert parse_read(body, LIMITS) == [("agents", "1" * 25), ("agents", "b")]


def test_an_integer_of_exactly_19_digits_within_64_bits_is_kept() -> None:
    (op,) = _write([_put("a", value=1234567890123456789)])
    assert op.raw == b"1234567890123456789"


def test_a_bad_bulk_read_item_after_good_ones_is_named_by_its_index() -> None:
    body = b'{"records": [{"collection": "a", "key": "x"}, {"collection": "a", "key": "y/z"}]}'
    with pytest.raises(BatchError, match=r"records\[1\]\.key: key 'y/z' must not contain '/'"):
        parse_read(body, LIMITS)


def test_a_bulk_read_item_with_a_null_key_names_the_field() -> None:
    body = b'{"records": [{"collection": "a", "key": "x"}, {"collection": "a", "key": null}]}'
    with pytest.raises(BatchError, match=r"records\[1\]\.key must be a string, not NoneType"):
        parse_read(body, LIMITS)


def test_a_plain_put_with_a_null_key_is_refused_as_null() -> None:
    _refused([_put("a"), _put(None)], r"operations\[1\]\.key must not be null")  # type: ignore[arg-type]


def test_a_plain_put_and_one_with_options_give_the_same_operation() -> None:
    plain, full = _write([_put("a"), _put("b", **{"class": "session", "ttl": 5})])
    assert (plain.op, plain.raw, plain.cls, plain.ttl, plain.if_match, plain.if_absent) == (
        "put",
        b'{"n":1}',
        None,
        None,
        None,
        False,
    )
    assert (full.cls, full.ttl, full.raw) == ("session", 5, b'{"n":1}')


def test_a_bulk_read_reply_escapes_names_and_embeds_stored_bytes() -> None:
    from bootstrap.api_batch import bulk_get_body

    names = [("agents", 'q"uote\\é\n'), ("agents", "gone"), ("tasks", "t")]
    body = bulk_get_body(names, [(b'{"a":[1,2]}', 17), None, (b"null", 2**63 - 1)])
    assert orjson.loads(body) == {
        "records": [
            {
                "collection": "agents",
                "key": 'q"uote\\é\n',
                "found": True,
                "version": 17,
                "value": {"a": [1, 2]},
            },
            {"collection": "agents", "key": "gone", "found": False},
            {"collection": "tasks", "key": "t", "found": True, "version": 2**63 - 1, "value": None},
        ],
        "missing": 1,
    }
