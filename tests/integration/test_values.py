"""What the agent acknowledges, it gives back exactly: numbers at the edges of what it keeps,
the deepest value it accepts (also through listing and a restart), and keys that differ only in
how their bytes are encoded."""

from __future__ import annotations

import json

import pytest

from bootstrap.records import MAX_EXACT_INT, MAX_VALUE_DEPTH, MIN_EXACT_INT

from .conftest import AgentFactory

JSON_HEADERS = {"Content-Type": "application/json"}


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


EXACT_VALUES = {
    "uint64-max": str(MAX_EXACT_INT).encode(),
    "int64-min": str(MIN_EXACT_INT).encode(),
    "beyond-2**53": b"9007199254740993",
    "max-depth-arrays": _nested(MAX_VALUE_DEPTH),
    "max-depth-objects": b'{"a":' * (MAX_VALUE_DEPTH - 1) + b"[1]" + b"}" * (MAX_VALUE_DEPTH - 1),
    "digits-in-strings": b'{"s": "12345678901234567890123", "n": [1, 2]}',
    "brackets-in-strings": b'["' + b"[" * 300 + b'"]',
}


def test_accepted_values_read_back_exactly_in_get_list_and_after_restart(
    agents: AgentFactory,
) -> None:
    agent = agents.new().start()
    client = agent.client()
    for name, body in EXACT_VALUES.items():
        assert client.request("PUT", f"/v1/records/tasks/{name}", body, JSON_HEADERS).status == 200
    expected = {name: json.loads(body) for name, body in EXACT_VALUES.items()}

    def check() -> None:
        for name, body in EXACT_VALUES.items():
            reply = client.get("tasks", name)
            assert reply.status == 200, reply.body
            assert reply.body == json.dumps(json.loads(body), separators=(",", ":")).encode()
        assert client.records("tasks") == expected  # a deep record must not break listing

    check()
    assert client.post("tier").status == 200  # through the warm files
    check()
    client.close()
    agent.kill9()  # through the journal
    agent.start()
    client = agent.client()
    check()
    assert agent.stop() == 0
    agent.start()  # through the warm files and the checkpointed journal
    client = agent.client()
    check()
    assert agent.stop() == 0


@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 253, 255, 1024, 1025, 100_000])
def test_deep_values_get_400_not_500(agents: AgentFactory, depth: int) -> None:
    agent = agents.new(max_value_size="1MB").start()
    client = agent.client()
    reply = client.request("PUT", "/v1/records/tasks/deep", _nested(depth), JSON_HEADERS)
    assert reply.status == 400, reply.body
    assert f"deeper than {MAX_VALUE_DEPTH}" in reply.json()["error"]
    assert client.get("tasks", "deep").status == 404
    assert client.records("tasks") == {}
    assert agent.stop() == 0


def test_keys_that_differ_only_in_encoding_stay_apart(agents: AgentFactory) -> None:
    """%EF%BF%BD is U+FFFD itself (valid); %FF is invalid and refused, not turned into U+FFFD."""
    agent = agents.new().start()
    client = agent.client()
    assert client.request("PUT", "/v1/records/tasks/%EF%BF%BD", b'"fffd"').status == 200
    for raw in ("%FF", "%FE", "%C3"):
        reply = client.request("PUT", f"/v1/records/tasks/{raw}", b'"other"')
        assert reply.status == 400, reply.body
        assert "UTF-8" in reply.json()["error"]
        assert client.request("GET", f"/v1/records/tasks/{raw}").status == 400
        assert client.request("DELETE", f"/v1/records/tasks/{raw}").status == 400
    assert client.request("PUT", "/v1/records/tasks/%C3%A9", b'"e-acute"').status == 200
    assert client.records("tasks") == {"\ufffd": "fffd", "\u00e9": "e-acute"}
    assert agent.stop() == 0
