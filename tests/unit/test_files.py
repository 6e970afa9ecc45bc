from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from bootstrap.tiers.files import FilesTier, parse, render

AWKWARD_KEYS = [
    "plain",
    'with "quotes"',
    "back\\slash",
    'colon": inside',
    "tab\there",
    "new\nline",
    "ünïcödé",
    "😀",
    "comma,",
    '{"json":1}',
]


def test_render_is_valid_json_and_parse_round_trips() -> None:
    items = [(k, orjson.dumps({"k": k, "n": i})) for i, k in enumerate(AWKWARD_KEYS)]
    data = render(items)
    assert orjson.loads(data) == {k: {"k": k, "n": i} for i, k in enumerate(AWKWARD_KEYS)}
    parsed = parse(data)
    assert parsed is not None
    assert {key: value for key, value, _ in parsed} == dict(items)


def test_empty_file_is_an_empty_object() -> None:
    assert orjson.loads(render([])) == {}
    assert parse(render([])) == []


def test_written_file_locations_serve_single_reads(tmp_path: Path) -> None:
    tier = FilesTier(tmp_path)
    items = sorted((k, orjson.dumps([k])) for k in AWKWARD_KEYS)
    locations = tier.write_file("agents.json", items)
    for (_key, value), location in zip(items, locations, strict=True):
        assert tier.read_range("agents.json", location) == value


def test_load_uses_the_manifest_and_reports_files(tmp_path: Path) -> None:
    tier = FilesTier(tmp_path)
    tier.write_file("agents.json", [("a", b"1")])
    tier.write_file("stats.session.json", [("s", b"2")])
    tier.commit_manifest()
    loaded = {(c, o): [(k, v) for k, v, _ in recs] for c, o, recs in FilesTier(tmp_path).load()}
    assert loaded == {("agents", None): [("a", b"1")], ("stats", "session"): [("s", b"2")]}


@pytest.mark.parametrize(
    "garbage",
    [b'{\n"a": 1,\n"b": 2', b"\x00\x01garbage", b"[1, 2, 3]\n", b""],
    ids=["truncated", "binary", "not-an-object", "empty"],
)
def test_corrupt_file_is_quarantined_with_one_log_line(tmp_path, caplog, garbage) -> None:
    tier = FilesTier(tmp_path)
    tier.write_file("agents.json", [("a", b"1"), ("b", b"2")])
    tier.write_file("tasks.json", [("t", b"3")])
    tier.commit_manifest()
    (tmp_path / "agents.json").write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="spine.files"):
        loaded = {c: recs for c, _, recs in FilesTier(tmp_path).load()}
    assert "agents" not in loaded and "tasks" in loaded
    assert len([r for r in caplog.records if "quarantined" in r.getMessage()]) == 1
    moved = list((tmp_path / "quarantine").iterdir())
    assert len(moved) == 1 and moved[0].read_bytes() == garbage


def test_hand_edited_valid_json_is_accepted(tmp_path: Path) -> None:
    tier = FilesTier(tmp_path)
    tier.write_file("agents.json", [("a", b"1")])
    tier.commit_manifest()
    (tmp_path / "agents.json").write_text('{"a": 1, "b": {"edited": true}}')
    loaded = {c: {k: orjson.loads(v) for k, v, _ in recs} for c, _, recs in tier.load()}
    assert loaded["agents"] == {"a": 1, "b": {"edited": True}}
