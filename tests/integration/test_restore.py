"""Restore paths of the real agent: a new VM from the bare remote, corrupt warm files moved to
quarantine, and a remote that goes away and comes back."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import AgentFactory, BareRemote, wait_for

BRANCH = "backup/vm-a"


def _put_all(agent_client: Any, collection: str, records: dict[str, Any]) -> None:
    for key, value in records.items():
        reply = agent_client.put(collection, key, value)
        assert reply.status == 200, reply.body


def test_new_vm_restores_from_remote_after_clean_stop(
    agents: AgentFactory, remote: BareRemote
) -> None:
    old = agents.new("old-vm", git={"remote": remote.url, "branch": BRANCH}).start()
    client = old.client()
    before_backup = {f"a{i}": {"i": i, "name": f"agent-{i}"} for i in range(30)}
    _put_all(client, "agents", before_backup)
    _put_all(client, "subscriptions", {"s1": {"topic": "t"}})
    assert client.post("backup").json()["pushed"] is True
    after_backup = {f"t{i}": [i, "task"] for i in range(10)}
    _put_all(client, "tasks", after_backup)
    assert client.delete("agents", "a0").status == 200
    _put_all(client, "stats", {"st": {"n": 1}})  # session: never leaves the VM
    client.close()
    assert old.stop() == 0

    new = agents.new("new-vm", git={"remote": remote.url, "branch": BRANCH}).start()
    assert not any(new.storage.glob("*.json.*")), "a new VM starts from an empty storage path"
    client = new.client()
    status = client.status()
    assert status["restored_from"] == "git-remote"
    assert status["tiers"]["git"]["branch"] == BRANCH
    assert client.records("agents") == {k: v for k, v in before_backup.items() if k != "a0"}
    assert client.records("tasks") == after_backup
    assert client.records("subscriptions") == {"s1": {"topic": "t"}}
    assert client.get("stats", "st").status == 404
    new.assert_clean_logs()

    # The restored VM keeps backing up onto the same branch, on top of what it restored.
    _put_all(client, "agents", {"new": {"from": "new-vm"}})
    assert client.post("backup").json()["pushed"] is True
    client.close()
    on_remote = remote.records(BRANCH)
    assert on_remote["agents"]["new"] == {"from": "new-vm"}
    assert on_remote["agents"]["a1"] == before_backup["a1"]
    assert on_remote["tasks"] == after_backup
    assert new.stop() == 0


def test_new_vm_restores_what_was_pushed_before_a_crash(
    agents: AgentFactory, remote: BareRemote
) -> None:
    old = agents.new("old-vm", git={"remote": remote.url, "branch": BRANCH}).start()
    client = old.client()
    pushed = {f"p{i}": {"i": i} for i in range(20)}
    _put_all(client, "agents", pushed)
    assert client.post("backup").json()["pushed"] is True
    _put_all(client, "agents", {"unpushed": {"late": True}})
    client.close()
    old.kill9()  # the VM is lost: nothing after the last push can reach the remote

    new = agents.new("new-vm", git={"remote": remote.url, "branch": BRANCH}).start()
    client = new.client()
    assert client.status()["restored_from"] == "git-remote"
    restored = client.records("agents")
    assert {k: restored.get(k) for k in pushed} == pushed
    assert new.stop() == 0


def test_other_branch_on_the_same_remote_is_not_restored(
    agents: AgentFactory, remote: BareRemote
) -> None:
    first = agents.new("vm-1", git={"remote": remote.url, "branch": "backup/vm-1"}).start()
    _put_all(first.client(), "agents", {"x": 1})
    assert first.stop() == 0
    assert remote.branch_sha("backup/vm-1") is not None

    second = agents.new("vm-2", git={"remote": remote.url, "branch": "backup/vm-2"}).start()
    client = second.client()
    assert client.status()["restored_from"] == "empty"
    assert client.get("agents", "x").status == 404
    assert second.stop() == 0
    assert remote.records("backup/vm-1") == {"agents": {"x": 1}}


def _corrupt(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        assert len(data) > 10
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x00\x01garbage{{{ not json")


@pytest.mark.parametrize(
    ("victim", "how"),
    [
        ("agents.json", "truncated"),
        ("agents.json", "garbage"),
        ("stats.json", "garbage"),
        (".warm-manifest.json", "garbage"),
    ],
)
def test_corrupt_warm_file_is_quarantined_and_agent_serves(
    agents: AgentFactory, victim: str, how: str
) -> None:
    agent = agents.new().start()
    client = agent.client()
    critical = {f"a{i}": {"i": i} for i in range(10)}
    session = {f"s{i}": {"n": i} for i in range(10)}
    _put_all(client, "agents", {k: v for k, v in critical.items() if k < "a5"})
    assert client.post("backup").json()["commit"]  # the local backup's first snapshot
    _put_all(client, "agents", {k: v for k, v in critical.items() if k >= "a5"})
    _put_all(client, "stats", session)
    client.close()
    assert agent.stop() == 0  # the final backup adds a change segment on top
    assert not (agent.storage / "journal").exists() or all(
        p.stat().st_size == 0 for p in (agent.storage / "journal").iterdir()
    ), "a clean stop leaves the data in the warm files, not only in the journal"

    _corrupt(agent.storage / victim, how)
    agent.start()
    quarantine = agent.storage / "quarantine"
    moved = sorted(p.name for p in quarantine.iterdir())
    assert len(moved) == 1 and moved[0].startswith(victim + "."), moved
    lines = [e for e in agent.logs() if "quarantin" in e["msg"]]
    assert len(lines) == 1, lines
    assert lines[0]["level"] == "error"
    assert lines[0]["file"] == victim

    client = agent.client()
    assert client.request("GET", "/v1/health").status == 200
    assert client.status()["tiers"]["files"]["quarantined"] == moved
    # Whatever was not in the corrupt file is served as before; critical records of a
    # corrupt file come back from the local git backup (snapshot + change segment).
    if victim != "stats.json":
        assert client.records("stats") == session
    assert client.records("agents") == critical
    # And it takes writes again, which survive a restart.
    _put_all(client, "agents", {"after": {"ok": True}})
    _put_all(client, "stats", {"after": {"ok": True}})
    client.close()
    assert agent.stop() == 0
    agent.start()
    client = agent.client()
    assert client.get("agents", "after").json() == {"ok": True}
    assert client.get("stats", "after").json() == {"ok": True}
    agent.assert_clean_logs()  # the rewritten file is sound: nothing quarantined this time
    assert agent.stop() == 0


def _wait_status(client: Any, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = client.status()
        return status if predicate(status) else None

    result: dict[str, Any] = wait_for(check, timeout, interval=0.2, what=what)
    return result


@pytest.mark.parametrize("catch_up", ["post-backup", "automatic-retry"])
def test_remote_down_keeps_serving_and_catches_up(
    agents: AgentFactory, remote: BareRemote, workdir: Path, catch_up: str
) -> None:
    tiering = {"file_backup_interval": "200ms"} if catch_up == "automatic-retry" else {}
    agent = agents.new(git={"remote": remote.url, "branch": BRANCH}, tiering=tiering).start()
    client = agent.client()
    _put_all(client, "agents", {"before": {"n": 0}})
    assert client.post("backup").json()["pushed"] is True
    pushed_before = remote.branch_sha(BRANCH)

    away = workdir / "remote-away.git"
    os.rename(remote.path, away)  # the remote stops existing
    try:
        _put_all(client, "agents", {f"down-{i}": {"n": i} for i in range(5)})
        result = client.post("backup")
        assert result.status == 200
        body = result.json()
        assert body["commit"] is not None and body["pushed"] is False
        status = client.status()
        backup = status["backup"]
        assert backup["last_push_error"], backup
        assert backup["push_failures"] >= 1
        assert backup["remote_lag_commits"] == 1
        assert backup["remote_lag_s"] is not None and backup["remote_lag_s"] >= 0
        # Still serving reads and writes.
        assert client.request("GET", "/v1/health").status == 200
        _put_all(client, "agents", {"while-down": {"n": 99}})
        assert client.get("agents", "down-3").json() == {"n": 3}
        metrics = client.request("GET", "/metrics").body.decode()
        assert "spine_push_failures 0.0" not in metrics
    finally:
        os.rename(away, remote.path)
    assert remote.branch_sha(BRANCH) == pushed_before

    if catch_up == "post-backup":
        body = client.post("backup").json()
        assert body["pushed"] is True
    else:
        # The tiering pass retries the push after its backoff (5 s after one failure).
        _wait_status(
            client,
            lambda s: s["backup"]["remote_lag_commits"] == 0,
            timeout=90,
            what="the automatic push retry",
        )
        client.post("backup")  # commit "while-down" too (it came after the failed backup)
    status = client.status()
    assert status["backup"]["last_push_error"] is None
    assert status["backup"]["push_failures"] == 0
    assert status["backup"]["remote_lag_commits"] == 0
    assert remote.branch_sha(BRANCH) == status["tiers"]["git"]["head"]
    on_remote = remote.records(BRANCH)["agents"]
    assert on_remote["while-down"] == {"n": 99}
    assert all(on_remote[f"down-{i}"] == {"n": i} for i in range(5))
    assert agent.stop() == 0


def test_agent_starts_and_serves_when_remote_is_unreachable_at_start(
    agents: AgentFactory, workdir: Path
) -> None:
    missing = f"file://{workdir}/no-such-remote.git"
    agent = agents.new(git={"remote": missing, "branch": BRANCH}).start()
    client = agent.client()
    status = client.status()
    assert status["restored_from"] == "empty"
    assert status["backup"]["last_push_error"]
    _put_all(client, "agents", {"k": {"v": 1}})
    assert client.get("agents", "k").json() == {"v": 1}
    assert agent.stop() == 0
