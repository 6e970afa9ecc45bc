"""Bulk reads, bulk writes, transactions and TTLs over the real agent's unix socket (issue 11 §1).

A bulk read lists missing records instead of failing; a bulk write decides each operation on
its own and is durable when it answers; a transaction writes all or nothing and its 412 names
the first failing record; a record with a TTL is gone from every read once it passes, also
across a restart and a crash. Every bad request is one 4xx line and writes nothing.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bootstrap.batch import Check, Delete, Put
from bootstrap.client import JSON_HEADERS, Reply

from .conftest import Agent, AgentFactory, Client


@pytest.fixture
def agent(agents: AgentFactory) -> Any:
    agent = agents.new("bulk", api={"max_batch_ops": 50, "max_batch_bytes": "64KB"}).start()
    yield agent
    if agent.running():
        assert agent.stop() == 0
    agent.assert_clean_logs()


@pytest.fixture
def client(agent: Agent) -> Any:
    with agent.client() as client:
        yield client


def post(client: Client, path: str, body: Any) -> Reply:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.request("POST", path, data, JSON_HEADERS)


def everything(client: Client) -> dict[str, dict[str, Any]]:
    """Every record of the collections the tests use, with its version: what "nothing
    changed" is checked against."""
    found: dict[str, dict[str, Any]] = {}
    for collection in ("agents", "tasks", "stats", "cache"):
        for key in client.records(collection):
            reply = client.get(collection, key)
            found[f"{collection}/{key}"] = {"value": reply.json(), "version": reply.version}
    return found


# -- bulk reads -----------------------------------------------------------------------------
def test_a_bulk_read_returns_records_of_several_collections_in_order_with_their_versions(
    client: Client,
) -> None:
    a1 = client.put("agents", "a1", {"name": "planner"})
    t1 = client.put("tasks", "t1", ["step", 1])
    reply = client.bulk_get([("tasks", "t1"), ("agents", "nope"), ("agents", "a1")])
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["missing"] == 1
    assert body["records"] == [
        {"collection": "tasks", "key": "t1", "found": True, "version": t1.version,
         "value": ["step", 1]},
        {"collection": "agents", "key": "nope", "found": False},
        {"collection": "agents", "key": "a1", "found": True, "version": a1.version,
         "value": {"name": "planner"}},
    ]  # fmt: skip


def test_a_bulk_read_of_only_missing_records_is_200(client: Client) -> None:
    reply = client.bulk_get([("agents", "x"), ("tasks", "y")])
    assert reply.status == 200
    assert reply.json()["missing"] == 2


def test_a_bulk_read_returns_values_exactly_as_a_get_does(client: Client) -> None:
    raw = b'{"big":18446744073709551615,"neg":-9223372036854775808,"f":1.5,"s":"\\u00e9"}'
    assert client.put_record("stats", "exact", raw).status == 200
    single = client.get("stats", "exact").body
    bulk = client.bulk_get([("stats", "exact")]).body
    assert single in bulk


def test_an_evicted_record_is_read_back_in_a_bulk_read(agents: AgentFactory) -> None:
    agent = agents.new("evict", memory_limit="1MB").start()
    with agent.client() as client:
        blob = "x" * 20_000
        for i in range(80):  # 1.6 MB of session records: the oldest leave memory once written
            assert client.put("stats", f"k{i}", blob).status == 200
        assert client.post("tier").status == 200
        names = [("stats", f"k{i}") for i in range(0, 80, 8)]
        body = client.bulk_get(names).json()
        assert body["missing"] == 0
        assert all(r["value"] == blob for r in body["records"])
    assert agent.stop() == 0


# -- bulk writes ----------------------------------------------------------------------------
def test_a_bulk_write_applies_puts_and_deletes_and_answers_each(client: Client) -> None:
    client.put("agents", "old", 1)
    reply = client.bulk_write(
        [
            Put("agents", "a1", {"n": 1}),
            Put("stats", "s1", [1, 2], cls="session"),
            Delete("agents", "old"),
            Delete("agents", "never"),
        ]
    )
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["ok"] is True and body["failed"] == 0
    statuses = [(r["op"], r["collection"], r["key"], r["status"]) for r in body["results"]]
    assert statuses == [
        ("put", "agents", "a1", 200),
        ("put", "stats", "s1", 200),
        ("delete", "agents", "old", 200),
        ("delete", "agents", "never", 404),
    ]
    a1 = client.get("agents", "a1")
    assert a1.json() == {"n": 1} and a1.version == body["results"][0]["version"]
    assert client.get("agents", "old").status == 404
    assert client.get("stats", "s1").json() == [1, 2]


def test_a_failed_condition_in_a_bulk_write_refuses_only_that_operation(client: Client) -> None:
    current = client.put("agents", "a", "one").version
    assert current is not None
    reply = client.bulk_write(
        [
            Put("agents", "a", "stale", if_match=current - 1),
            Put("agents", "b", "new"),
            Put("agents", "c", "first", if_absent=True),
        ]
    )
    body = reply.json()
    assert reply.status == 200 and body["ok"] is False and body["failed"] == 1
    assert body["results"][0] == {
        "op": "put", "collection": "agents", "key": "a", "status": 412, "version": None,
        "current_version": current,
    }  # fmt: skip
    assert client.get("agents", "a").json() == "one"
    assert client.get("agents", "b").json() == "new"
    assert client.get("agents", "c").json() == "first"


def test_a_bulk_write_of_critical_records_is_durable_when_it_answers(agent: Agent) -> None:
    with agent.client() as client:
        reply = client.bulk_write([Put("agents", f"k{i}", {"i": i}) for i in range(50)])
        assert reply.status == 200 and reply.json()["ok"]
        versions = {r["key"]: r["version"] for r in reply.json()["results"]}
    agent.kill9()
    agent.start()
    with agent.client() as client:
        body = client.bulk_get([("agents", f"k{i}") for i in range(50)]).json()
    assert body["missing"] == 0
    assert {r["key"]: r["version"] for r in body["records"]} == versions
    assert [r["value"] for r in body["records"]] == [{"i": i} for i in range(50)]


# -- transactions ---------------------------------------------------------------------------
def test_a_transaction_applies_all_its_operations(client: Client) -> None:
    task = client.put("tasks", "t1", {"state": "queued"}).version
    client.put("agents", "gone", 0)
    reply = client.transaction(
        [
            Put("tasks", "t1", {"state": "claimed", "by": "a1"}, if_match=task),
            Put("agents", "a1", {"task": "t1"}, if_absent=True),
            Delete("agents", "gone"),
            Check("agents", "a2", if_absent=True),
        ]
    )
    assert reply.status == 200, reply.body
    results = reply.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 200, 200]
    assert results[3]["version"] is None  # a check of an absent record
    assert client.get("tasks", "t1").json() == {"state": "claimed", "by": "a1"}
    assert client.get("tasks", "t1").version == results[0]["version"]
    assert client.get("agents", "a1").json() == {"task": "t1"}
    assert client.get("agents", "gone").status == 404


def test_a_failed_condition_refuses_the_whole_transaction_naming_the_first_failing_record(
    client: Client,
) -> None:
    v1 = client.put("tasks", "t1", "queued").version
    v2 = client.put("tasks", "t2", "queued").version
    client.put("agents", "keep", "me")
    assert v1 is not None and v2 is not None
    before = everything(client)
    reply = client.transaction(
        [
            Put("agents", "a1", "new"),
            Delete("agents", "keep"),
            Put("tasks", "t1", "claimed", if_match=v1),
            Check("tasks", "t2", if_match=v2 + 5),
            Put("tasks", "t3", "x", if_match=1),
        ]
    )
    assert reply.status == 412, reply.body
    body = reply.json()
    assert body["index"] == 3 and body["collection"] == "tasks" and body["key"] == "t2"
    assert body["current_version"] == v2
    assert "tasks/t2" in body["error"] and "\n" not in body["error"]
    assert everything(client) == before


def test_a_transactions_if_match_on_an_absent_record_is_412_with_a_null_version(
    client: Client,
) -> None:
    reply = client.transaction([Put("agents", "a", 1), Delete("agents", "ghost", if_match=7)])
    assert reply.status == 412
    assert reply.json()["current_version"] is None and reply.json()["index"] == 1
    assert client.get("agents", "a").status == 404


def test_one_winner_among_transactions_claiming_the_same_version(agent: Agent) -> None:
    """Eight clients claim one task with If-Match in a transaction: exactly one wins."""
    import threading

    with agent.client() as client:
        version = client.put("tasks", "job", {"owner": None}).version
    outcomes: list[int] = []

    def claim(n: int) -> None:
        with agent.client() as mine:
            reply = mine.transaction(
                [
                    Put("tasks", "job", {"owner": n}, if_match=version),
                    Put("agents", f"w{n}", {"job": "job"}),
                ]
            )
            outcomes.append(reply.status)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [200] + [412] * 7
    with agent.client() as client:
        owner = client.get("tasks", "job").json()["owner"]
        workers = client.records("agents")
    assert list(workers) == [f"w{owner}"]


# -- TTL ------------------------------------------------------------------------------------
def test_a_record_with_a_ttl_is_gone_from_every_read_once_it_passes(client: Client) -> None:
    assert client.put_record("stats", "short", b'"v"', ttl=1).status == 200
    assert client.put_record("cache", "short", b'"c"', ttl=1).status == 200
    assert client.put_record("stats", "long", b'"v"', ttl=600).status == 200
    assert client.get("stats", "short").json() == "v"
    time.sleep(1.2)
    assert client.get("stats", "short").status == 404
    assert client.get("cache", "short").status == 404
    assert client.bulk_get([("stats", "short"), ("stats", "long")]).json()["missing"] == 1
    assert client.records("stats") == {"long": "v"}
    assert client.delete("stats", "short").status == 404
    assert client.put_record("stats", "short", b'"again"', if_absent=True).status == 200


def test_a_ttl_survives_a_clean_restart_and_a_crash(agent: Agent) -> None:
    with agent.client() as client:
        assert client.put_record("stats", "warm", b"1", ttl=3).status == 200
        assert client.put_record("stats", "journal", b"2", ttl=3).status == 200
        assert client.put_record("stats", "keep", b"3", ttl=600).status == 200
        assert client.post("tier").status == 200  # the first two reach the warm files
    assert agent.stop() == 0
    agent.start()
    with agent.client() as client:
        assert client.put_record("stats", "journal", b"4", ttl=3).status == 200
        assert client.get("stats", "warm").json() == 1
    agent.kill9()
    agent.start()
    with agent.client() as client:
        assert client.get("stats", "journal").json() == 4
        time.sleep(3.2)
        assert client.get("stats", "warm").status == 404
        assert client.get("stats", "journal").status == 404
        assert client.get("stats", "keep").json() == 3


def test_an_expired_record_leaves_the_warm_files_at_the_next_pass(agent: Agent) -> None:
    with agent.client() as client:
        assert client.put_record("stats", "gone", b"1", ttl=1).status == 200
        assert client.put_record("stats", "stays", b"2").status == 200
        assert client.post("tier").status == 200
        assert b'"gone"' in (agent.storage / "stats.json").read_bytes()
        time.sleep(1.2)
        assert client.post("tier").status == 200
    text = (agent.storage / "stats.json").read_bytes()
    assert b'"gone"' not in text and b'"stays"' in text


def test_a_put_without_a_ttl_clears_the_old_ttl(client: Client) -> None:
    assert client.put_record("stats", "k", b"1", ttl=1).status == 200
    assert client.put_record("stats", "k", b"2").status == 200
    time.sleep(1.2)
    assert client.get("stats", "k").json() == 2


def test_a_ttl_in_a_bulk_write_and_a_transaction(client: Client) -> None:
    assert client.bulk_write([Put("stats", "b", 1, ttl=1)]).status == 200
    assert client.transaction([Put("cache", "t", 2, ttl=1)]).status == 200
    assert client.bulk_get([("stats", "b"), ("cache", "t")]).json()["missing"] == 0
    time.sleep(1.2)
    assert client.bulk_get([("stats", "b"), ("cache", "t")]).json()["missing"] == 2


# -- bad input: one clear 4xx line, nothing written -------------------------------------------
def refused(client: Client, reply: Reply, status: int, words: str) -> None:
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"error"} and words in body["error"] and "\n" not in body["error"]
    assert everything(client) == {}


def test_a_ttl_on_a_critical_record_is_refused(client: Client) -> None:
    reply = client.put_record("agents", "a", b"1", ttl=60)
    refused(client, reply, 400, "ttl")
    assert "critical" in reply.json()["error"]


def test_a_ttl_on_a_put_with_class_critical_is_refused(client: Client) -> None:
    refused(client, client.put_record("stats", "a", b"1", cls="critical", ttl=60), 400, "critical")


def test_a_ttl_on_a_critical_record_in_a_transaction_refuses_it_all(client: Client) -> None:
    reply = client.transaction([Put("stats", "a", 1), Put("agents", "b", 2, ttl=5)])
    refused(client, reply, 400, "operations[1]")


@pytest.mark.parametrize("ttl", ["0", "-1", "abc", "1.5", "31536001", ""])
def test_a_bad_ttl_query_is_refused(client: Client, ttl: str) -> None:
    reply = client.request("PUT", f"/v1/records/stats/a?ttl={ttl}", b"1", JSON_HEADERS)
    refused(client, reply, 400, "ttl")


def test_a_batch_over_max_batch_ops_is_413(client: Client) -> None:
    reply = client.bulk_write([Put("stats", f"k{i}", i) for i in range(51)])
    refused(client, reply, 413, "api.max_batch_ops (50)")


def test_a_bulk_read_over_max_batch_ops_is_413(client: Client) -> None:
    refused(client, client.bulk_get([("stats", f"k{i}") for i in range(51)]), 413, "50")


def test_a_body_over_max_batch_bytes_is_413(client: Client) -> None:
    ops = [Put("stats", f"k{i}", "x" * 2000) for i in range(40)]
    refused(client, client.bulk_write(ops), 413, "api.max_batch_bytes")


def test_duplicate_records_in_a_bulk_write_are_refused(client: Client) -> None:
    reply = client.bulk_write([Put("stats", "a", 1), Put("stats", "b", 1), Delete("stats", "a")])
    refused(client, reply, 400, "operations 0 and 2 both name stats/a")


def test_duplicate_records_in_a_transaction_are_refused(client: Client) -> None:
    reply = client.transaction([Put("stats", "a", 1), Check("stats", "a", if_absent=True)])
    refused(client, reply, 400, "both name stats/a")


def test_a_bad_condition_in_a_transaction_is_refused(client: Client) -> None:
    reply = post(client, "/v1/transaction", {"operations": [
        {"op": "put", "collection": "stats", "key": "a", "value": 1, "if_match": "W/\"3\""},
    ]})  # fmt: skip
    refused(client, reply, 400, "operations[0].if_match")


def test_a_bad_name_in_a_bulk_write_is_refused_naming_the_operation(client: Client) -> None:
    reply = client.bulk_write([Put("stats", "ok", 1), Put("bad/name", "k", 1)])
    refused(client, reply, 400, "operations[1].collection")


def test_a_value_over_max_value_size_in_a_batch_is_413(agents: AgentFactory) -> None:
    agent = agents.new("small", max_value_size="1KB").start()
    with agent.client() as client:
        reply = client.bulk_write([Put("stats", "a", 1), Put("stats", "b", "x" * 2000)])
        refused(client, reply, 413, "operations[1].value")
    assert agent.stop() == 0


def test_a_body_that_is_not_json_is_refused(client: Client) -> None:
    refused(client, post(client, "/v1/bulk/write", b"{nope"), 400, "not JSON")


def test_a_get_on_a_bulk_path_is_405_with_allow(client: Client) -> None:
    reply = client.request("GET", "/v1/transaction")
    assert reply.status == 405 and reply.headers["allow"] == "POST"


def test_a_check_in_a_bulk_write_is_refused(client: Client) -> None:
    reply = client.bulk_write([Check("stats", "a", if_absent=True)])
    refused(client, reply, 400, "must be put or delete")
