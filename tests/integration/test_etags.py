"""ETags and conditional writes over the real agent's unix socket (issue 8, local semantics).

GET and PUT carry `ETag: "<version>"`; PUT/DELETE with `If-Match` write only at that version,
PUT with `If-None-Match: *` creates only; a lost condition is a 412 with the stored version in
the body and nothing written; a malformed condition header is a 400 naming the header. A
version is the same after a crash (journal), a clean restart (warm files) and a restore on a
new VM (git). Four real clients incrementing one counter with If-Match retry loops lose no
increment.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from bootstrap.client import Reply, UnixHTTPConnection

from .conftest import AgentFactory, BareRemote, Client

BRANCH = "backup/etag"


def put(client: Client, key: str, value: Any, **condition: Any) -> Reply:
    return client.put_record("agents", key, json.dumps(value).encode(), **condition)


def etag_of(reply: Reply) -> str:
    return reply.headers["etag"]


@pytest.fixture
def agent_client(agents: AgentFactory) -> Any:
    agent = agents.new("etag").start()
    with agent.client() as client:
        yield client
    agent.stop()
    agent.assert_clean_logs()


def test_get_and_put_carry_the_same_strong_etag(agent_client: Client) -> None:
    stored = put(agent_client, "a", {"n": 1})
    assert stored.status == 200
    tag = etag_of(stored)
    assert tag.startswith('"') and tag.endswith('"') and tag[1:-1].isdigit()
    assert stored.json()["version"] == stored.version == int(tag[1:-1])
    read = agent_client.get_record("agents", "a")
    assert read.status == 200 and etag_of(read) == tag
    again = put(agent_client, "a", {"n": 2})
    assert again.version is not None and stored.version is not None
    assert again.version > stored.version
    assert agent_client.get_record("agents", "missing").headers.get("etag") is None


def test_if_match_writes_only_at_the_current_version(agent_client: Client) -> None:
    v1 = put(agent_client, "a", "one").version
    v2_reply = put(agent_client, "a", "two", if_match=v1)
    assert v2_reply.status == 200, v2_reply.body
    stale = put(agent_client, "a", "stale", if_match=v1)
    assert stale.status == 412
    body = stale.json()
    assert set(body) == {"error", "current_version"}
    assert body["current_version"] == v2_reply.version == stale.version
    assert "agents/a" in body["error"] and "\n" not in body["error"]
    read = agent_client.get_record("agents", "a")
    assert read.json() == "two" and read.version == v2_reply.version


def test_if_match_without_quotes_is_read_as_the_version(agent_client: Client) -> None:
    """`If-Match: 17` can mean nothing but "17": accepted, and checked like the quoted form."""
    version = put(agent_client, "bare", 1).version
    conn = UnixHTTPConnection(agent_client.socket_path)  # type: ignore[arg-type]
    for tag, status in ((str((version or 0) - 1), 412), (str(version), 200)):
        conn.request("PUT", "/v1/records/agents/bare", b"2", {"If-Match": tag})
        response = conn.getresponse()
        response.read()
        assert response.status == status
    conn.close()
    assert agent_client.get_record("agents", "bare").json() == 2


def test_if_match_on_a_missing_record_is_412_with_a_null_version(agent_client: Client) -> None:
    reply = put(agent_client, "ghost", 1, if_match=17)
    assert reply.status == 412
    assert reply.json()["current_version"] is None
    assert "etag" not in reply.headers
    assert agent_client.get_record("agents", "ghost").status == 404
    deleted = agent_client.delete_record("agents", "ghost", if_match=17)
    assert deleted.status == 412 and deleted.json()["current_version"] is None


def test_if_none_match_star_creates_only(agent_client: Client) -> None:
    created = put(agent_client, "new", 1, if_absent=True)
    assert created.status == 200
    again = put(agent_client, "new", 2, if_absent=True)
    assert again.status == 412
    assert again.json()["current_version"] == created.version
    assert agent_client.get_record("agents", "new").json() == 1


def test_if_match_and_if_none_match_together_can_never_both_hold(agent_client: Client) -> None:
    """RFC 9110 evaluates both; a stored record fails If-None-Match, an absent one If-Match."""
    absent = put(agent_client, "both", 1, if_match=1, if_absent=True)
    assert absent.status == 412 and absent.json()["current_version"] is None
    version = put(agent_client, "both", 1).version
    present = put(agent_client, "both", 2, if_match=version, if_absent=True)
    assert present.status == 412 and present.json()["current_version"] == version
    assert agent_client.get_record("agents", "both").json() == 1


def test_a_conditional_delete_removes_only_the_expected_version(agent_client: Client) -> None:
    v1 = put(agent_client, "a", 1).version
    v2 = put(agent_client, "a", 2).version
    stale = agent_client.delete_record("agents", "a", if_match=v1)
    assert stale.status == 412 and stale.json()["current_version"] == v2
    assert agent_client.get_record("agents", "a").json() == 2
    assert agent_client.delete_record("agents", "a", if_match=v2).status == 200
    assert agent_client.get_record("agents", "a").status == 404


MALFORMED: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    # id: (method, headers, the header the 400 must name)
    "half-quoted": ("PUT", [("If-Match", '"17')], "If-Match"),
    "weak": ("PUT", [("If-Match", 'W/"17"')], "If-Match"),
    "star": ("PUT", [("If-Match", "*")], "If-Match"),
    "list": ("PUT", [("If-Match", '"1", "2"')], "If-Match"),
    "not-a-number": ("PUT", [("If-Match", '"abc"')], "If-Match"),
    "empty": ("PUT", [("If-Match", '""')], "If-Match"),
    "over-bigint": ("PUT", [("If-Match", '"9999999999999999999"')], "If-Match"),
    "too-long": ("PUT", [("If-Match", '"' + "1" * 80 + '"')], "If-Match"),
    "twice": ("PUT", [("If-Match", '"1"'), ("If-Match", '"2"')], "If-Match"),
    "none-match-tag": ("PUT", [("If-None-Match", '"17"')], "If-None-Match"),
    "none-match-on-delete": ("DELETE", [("If-None-Match", "*")], "If-None-Match"),
    "delete-weak": ("DELETE", [("If-Match", 'W/"17"')], "If-Match"),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_condition_header_is_a_400_naming_it(
    agent_client: Client, case: tuple[str, list[tuple[str, str]], str]
) -> None:
    method, headers, named = case
    assert put(agent_client, "a", "kept").status == 200
    conn_headers = {"Content-Type": "application/json"}
    body = b'"changed"' if method == "PUT" else None
    # A dict cannot repeat a header: build the request by hand on a connection of its own.
    assert agent_client.socket_path is not None
    conn = UnixHTTPConnection(agent_client.socket_path)
    conn.putrequest(method, "/v1/records/agents/a")
    for name, value in [*conn_headers.items(), *headers]:
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(len(body or b"")))
    conn.endheaders(body)
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    assert response.status == 400, data
    assert named in data["error"] and "\n" not in data["error"]
    assert agent_client.get_record("agents", "a").json() == "kept"


def test_1000_increments_from_4_clients_with_if_match_retries_end_at_1000(
    agent_client: Client, agents: AgentFactory
) -> None:
    """Four real HTTP clients, each on its own connection and thread, read-modify-write one
    counter; a 412 means another won, so read again. Not one increment is lost or doubled."""
    agent = agents.agents[0]
    assert put(agent_client, "counter", 0).status == 200
    per_client, writers = 250, 4
    written: list[tuple[int, int]] = []  # (value written, its version)
    conflicts = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def increment_loop() -> None:
        with agent.client() as client:
            done = 0
            while done < per_client:
                read = client.get_record("agents", "counter")
                if read.status != 200:
                    errors.append(f"GET {read.status}")
                    return
                value = read.json() + 1
                reply = put(client, "counter", value, if_match=read.version)
                if reply.status == 412:
                    with lock:
                        conflicts[0] += 1
                    continue
                if reply.status != 200:
                    errors.append(f"PUT {reply.status} {reply.body!r}")
                    return
                with lock:
                    written.append((value, reply.version or 0))
                done += 1

    threads = [threading.Thread(target=increment_loop) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    assert agent_client.get_record("agents", "counter").json() == per_client * writers
    values = sorted(written)
    assert [v for v, _ in values] == list(range(1, per_client * writers + 1))
    versions = [version for _, version in values]
    assert versions == sorted(set(versions))  # each increment a newer version than the last


def _versions(client: Client, keys: list[str]) -> dict[str, str]:
    return {key: etag_of(client.get_record("agents", key)) for key in keys}


def test_etags_survive_kill9_through_the_journal(agents: AgentFactory) -> None:
    agent = agents.new("crash").start()
    with agent.client() as client:
        for n in range(5):
            assert put(client, f"k{n}", n).status == 200
        assert put(client, "k0", "again").status == 200
        before = _versions(client, [f"k{n}" for n in range(5)])
    agent.kill9()
    agent.start()
    with agent.client() as client:
        assert _versions(client, list(before)) == before
        stale_ok = put(client, "k0", "after", if_match=int(before["k0"][1:-1]))
        assert stale_ok.status == 200
    agent.stop()


def test_etags_survive_a_clean_restart_through_the_warm_files(agents: AgentFactory) -> None:
    agent = agents.new("clean").start()
    with agent.client() as client:
        for n in range(5):
            assert put(client, f"k{n}", n).status == 200
            assert client.put_record("stats", f"k{n}", b"1").status == 200  # session
        before = _versions(client, [f"k{n}" for n in range(5)])
        session = etag_of(client.get_record("stats", "k3"))
    assert agent.stop() == 0
    agent.start()
    with agent.client() as client:
        assert client.status()["restored_from"] == "files"
        assert _versions(client, list(before)) == before
        assert etag_of(client.get_record("stats", "k3")) == session
    agent.stop()
    agent.assert_clean_logs()


def test_etags_survive_a_restore_on_a_new_vm_from_git(
    agents: AgentFactory, remote: BareRemote
) -> None:
    old = agents.new("old-vm", git={"remote": remote.url, "branch": BRANCH}).start()
    with old.client() as client:
        for n in range(5):
            assert put(client, f"k{n}", {"n": n}).status == 200
        before = _versions(client, [f"k{n}" for n in range(5)])
    assert old.stop() == 0  # the shutdown commits the changes and pushes them
    new = agents.new("new-vm", git={"remote": remote.url, "branch": BRANCH}).start()
    with new.client() as client:
        assert client.status()["restored_from"] == "git-remote"
        assert _versions(client, list(before)) == before
        reply = put(client, "k1", "next", if_match=int(before["k1"][1:-1]))
        assert reply.status == 200
    new.stop()
