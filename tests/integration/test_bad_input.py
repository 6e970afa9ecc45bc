"""Every bad input over the real agent's API: a 4xx with a JSON {"error": ...} body, and nothing
written (the old value stays, no record or journal byte is added)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrap.client import UnixHTTPConnection

from .conftest import REQUEST_TIMEOUT, Agent, AgentFactory, Client

MAX_VALUE = 1000  # max_value_size: 1KB
JSON = "application/json"
OLD = {"v": "old"}


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    """One agent for the module: each case checks that it changed nothing, so they can share."""
    workdir = Path(tempfile.mkdtemp(prefix="ssk-it-", dir="/tmp"))
    factory = AgentFactory(workdir)
    try:
        running = factory.new(max_value_size="1KB").start()
        client = running.client()
        assert client.put("agents", "existing", OLD).status == 200
        assert client.put("stats", "existing", OLD).status == 200
        client.close()
        yield running
        assert running.stop() == 0
    finally:
        factory.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class State:
    records: int
    collections: dict[str, int]
    journal_bytes: int
    puts: int


def _state(client: Client) -> State:
    status = client.status()
    metrics = client.request("GET", "/metrics").body.decode()
    puts = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("spine_puts_total")
    )
    return State(
        status["records"],
        status["collections"],
        status["tiers"]["files"]["journal_bytes"],
        int(puts),
    )


def _assert_rejected(reply: Any, statuses: tuple[int, ...]) -> str:
    assert reply.status in statuses, (reply.status, reply.body)
    assert 400 <= reply.status < 500
    assert reply.headers.get("content-type") == "application/json", reply.headers
    body = reply.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    error: str = body["error"]
    return error


def _assert_unchanged(client: Client, before: State) -> None:
    assert _state(client) == before
    assert client.get("agents", "existing").json() == OLD
    assert client.get("stats", "existing").json() == OLD


BAD_NAMES = {
    # id: (raw request path, accepted statuses)
    "collection-empty": ("/v1/records//k", (400, 404)),
    "key-empty": ("/v1/records/agents/", (400,)),
    "collection-too-long": ("/v1/records/" + "c" * 129 + "/k", (400,)),
    "key-too-long": ("/v1/records/agents/" + "k" * 513, (400,)),
    "collection-slash": ("/v1/records/age%2Fnts/k", (400,)),
    "key-slash": ("/v1/records/agents/a%2Fb", (400,)),
    "key-raw-slash": ("/v1/records/agents/a/b", (400,)),
    "collection-dotdot": ("/v1/records/../k", (400,)),
    "collection-dotdot-encoded": ("/v1/records/%2E%2E/k", (400,)),
    "key-dotdot": ("/v1/records/agents/..", (400,)),
    "key-dotdot-inside": ("/v1/records/agents/a..b", (400,)),
    "key-dotdot-traversal": ("/v1/records/agents/..%2F..%2Fetc%2Fpasswd", (400,)),
    "collection-nul": ("/v1/records/age%00nts/k", (400,)),
    "key-nul": ("/v1/records/agents/k%00", (400,)),
    "collection-bad-char": ("/v1/records/agents.json/k", (400,)),
    "collection-leading-dash": ("/v1/records/-agents/k", (400,)),
    # Invalid UTF-8 must not decode to U+FFFD and land on another key's record.
    "key-invalid-utf8-ff": ("/v1/records/agents/%FF", (400,)),
    "key-invalid-utf8-fe": ("/v1/records/agents/a%FEb", (400,)),
    "key-invalid-utf8-truncated": ("/v1/records/agents/%E2%82", (400,)),
    "collection-invalid-utf8": ("/v1/records/ag%FFents/k", (400,)),
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_bad_name_is_rejected(agent: Agent, case: str, method: str) -> None:
    path, statuses = BAD_NAMES[case]
    client = agent.client()
    before = _state(client)
    body = b'{"v": "new"}' if method == "PUT" else None
    reply = client.request(method, path, body, {"Content-Type": "application/json"})
    error = _assert_rejected(reply, statuses)
    if reply.status == 400:
        assert "collection" in error or "key" in error, error
    _assert_unchanged(client, before)
    # The collection, had anything been stored under its sanitized name, is still empty.
    assert set(before.collections) == set(_state(client).collections)
    client.close()


@pytest.mark.parametrize(
    "path",
    ["/v1/records/%2E%2E", "/v1/records/age%00nts", "/v1/records/" + "c" * 129],
    ids=["dotdot", "nul", "too-long"],
)
def test_bad_collection_on_list_is_rejected(agent: Agent, path: str) -> None:
    client = agent.client()
    before = _state(client)
    _assert_rejected(client.request("GET", path), (400,))
    _assert_unchanged(client, before)
    client.close()


BAD_BODIES = {
    "not-json": b"{not json",
    "empty-body": b"",
    "nan": b"NaN",
    "trailing-garbage": b'{"v": 1} x',
    "invalid-utf8": b'"\xff\xfe"',
    "bare-word": b"hello",
}


@pytest.mark.parametrize("collection", ["agents", "stats"])
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_body_that_is_not_json_is_rejected(agent: Agent, case: str, collection: str) -> None:
    client = agent.client()
    before = _state(client)
    reply = client.request(
        "PUT",
        f"/v1/records/{collection}/existing",
        BAD_BODIES[case],
        {"Content-Type": "application/json"},
    )
    error = _assert_rejected(reply, (400,))
    assert "json" in error.lower(), error
    _assert_unchanged(client, before)
    client.close()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# JSON the agent could not give back exactly, or could not list or restore: refused with 400.
UNKEEPABLE_VALUES = {
    "integer-over-uint64": b"18446744073709551616",
    "integer-under-int64": b"-9223372036854775809",
    "big-integer-nested": b'{"a": [1, 12345678901234567890123]}',
    "depth-129": _nested(129),
    "depth-255": _nested(255),
    "depth-499": _nested(499),  # deeper ones are over 1KB here: see test_values.py
}


@pytest.mark.parametrize("case", sorted(UNKEEPABLE_VALUES))
def test_value_that_cannot_be_kept_exactly_is_rejected(agent: Agent, case: str) -> None:
    client = agent.client()
    before = _state(client)
    reply = client.request(
        "PUT", "/v1/records/agents/existing", UNKEEPABLE_VALUES[case], {"Content-Type": JSON}
    )
    error = _assert_rejected(reply, (400,))
    assert ("integer" in error) if case.startswith(("integer", "big")) else ("nested" in error)
    _assert_unchanged(client, before)
    client.close()


def _oversized(margin: int) -> bytes:
    return b'"' + b"x" * (MAX_VALUE + margin) + b'"'


@pytest.mark.parametrize("margin", [1, 10_000, 3_000_000], ids=["just-over", "10KB", "3MB"])
def test_value_over_max_value_size_is_rejected(agent: Agent, margin: int) -> None:
    client = agent.client()
    before = _state(client)
    reply = client.request(
        "PUT",
        "/v1/records/agents/existing",
        _oversized(margin),
        {"Content-Type": "application/json"},
    )
    error = _assert_rejected(reply, (413,))
    assert "max_value_size" in error, error
    client.close()
    client = agent.client()
    _assert_unchanged(client, before)
    client.close()


def test_value_at_max_value_size_is_accepted(agent: Agent) -> None:
    client = agent.client()
    body = b'"' + b"x" * (MAX_VALUE - 2) + b'"'
    assert len(body) == MAX_VALUE
    reply = client.request("PUT", "/v1/records/cache/at-limit", body)
    assert reply.status == 200, reply.body
    assert client.delete("cache", "at-limit").status == 200
    client.close()


def test_chunked_value_over_max_value_size_is_rejected(agent: Agent) -> None:
    """No Content-Length to check up front: the limit must hold on the body itself."""
    client = agent.client()
    before = _state(client)
    conn = UnixHTTPConnection(agent.socket_path, timeout=REQUEST_TIMEOUT)
    try:
        data = _oversized(500)
        chunks = iter([data[:700], data[700:]])
        conn.request(
            "PUT",
            "/v1/records/agents/existing",
            body=chunks,
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        assert response.status == 413
        assert "max_value_size" in response.read().decode()
    finally:
        conn.close()
    _assert_unchanged(client, before)
    client.close()


@pytest.mark.parametrize("cls", ["bogus", "", "CRITICAL", "memory"])
def test_unknown_class_is_rejected(agent: Agent, cls: str) -> None:
    client = agent.client()
    before = _state(client)
    reply = client.request("PUT", f"/v1/records/agents/existing?class={cls}", b'{"v": "new"}', {})
    error = _assert_rejected(reply, (400,))
    assert "class" in error, error
    _assert_unchanged(client, before)
    client.close()


def test_bad_inputs_leave_nothing_after_restart(agents: AgentFactory) -> None:
    """The strongest form of 'nothing written': a restart replays no trace of a refused put."""
    running = agents.new(max_value_size="1KB").start()
    client = running.client()
    assert client.put("agents", "existing", OLD).status == 200
    for path, _ in BAD_NAMES.values():
        client.request("PUT", path, b'{"v": "new"}', {})
    for body in BAD_BODIES.values():
        client.request("PUT", "/v1/records/agents/existing", body, {})
    client.request("PUT", "/v1/records/agents/existing", _oversized(1), {})
    client.request("PUT", "/v1/records/agents/existing?class=bogus", b'{"v": "new"}', {})
    client.close()
    running.kill9()
    running.start()
    client = running.client()
    status = client.status()
    assert status["records"] == 1, status["collections"]
    assert client.records("agents") == {"existing": OLD}
    assert running.stop() == 0
