"""Durability of the real agent: kill -9 at random instants, clean restarts, and the SIGTERM
backup within the stop budget."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import AgentFactory, BareRemote, Client

KILL_ROUNDS = 50
WRITERS = 3


@dataclass
class WriterLog:
    """What one writer thread sent and what the agent acknowledged (200) before the kill."""

    writer: int
    acked: dict[tuple[str, str], Any] = field(default_factory=dict)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    # A delete cut short by the kill may or may not have happened: value or absent, both fine.
    maybe_deleted: dict[tuple[str, str], Any] = field(default_factory=dict)
    counter_acked: int = -1
    counter_sent: int = -1
    errors: list[str] = field(default_factory=list)


def _writer(
    client: Client, log: WriterLog, round_no: int, stop: threading.Event, seed: int
) -> None:
    """Put as fast as possible until the agent dies: unique keys, one overwritten counter,
    a critical record in a session-mapped collection (class override), and some deletes."""
    rng = random.Random(seed)
    counter_key = f"counter-{log.writer}"
    i = 0
    try:
        while not stop.is_set():
            i += 1
            choice = i % 4
            if choice == 0 and log.acked:
                target = rng.choice(sorted(log.acked))
                log.maybe_deleted[target] = log.acked.pop(target)
                reply = client.delete(*target)
                log.maybe_deleted.pop(target)
                if reply.status == 200:
                    log.deleted.add(target)
                else:
                    log.errors.append(f"DELETE {target}: {reply.status} {reply.body!r}")
                continue
            if choice == 1:
                log.counter_sent += 1
                n = log.counter_sent
                reply = client.put("agents", counter_key, {"n": n})
                if reply.status == 200:
                    log.counter_acked = n
                else:
                    log.errors.append(f"PUT counter: {reply.status} {reply.body!r}")
                continue
            collection, cls = ("stats", "critical") if choice == 2 else ("agents", None)
            key = f"r{round_no}-w{log.writer}-{i}"
            value = {"round": round_no, "i": i, "pad": "x" * rng.randrange(0, 300)}
            reply = client.put(collection, key, value, cls=cls)
            if reply.status == 200:
                log.acked[(collection, key)] = value
            else:
                log.errors.append(f"PUT {collection}/{key}: {reply.status} {reply.body!r}")
    except (OSError, ConnectionError, Exception) as exc:  # the kill ends every writer here
        if not stop.is_set():
            log.errors.append(f"before the kill: {exc!r}")
    finally:
        client.close()


def _check_restored(client: Client, logs: list[WriterLog], round_no: int) -> int:
    agents = client.records("agents")
    stats = client.records("stats")
    found = {"agents": agents, "stats": stats}
    checked = 0
    for log in logs:
        for (collection, key), value in log.acked.items():
            assert found[collection].get(key) == value, (
                f"round {round_no}: acknowledged {collection}/{key} lost or changed: "
                f"{found[collection].get(key)!r} != {value!r}"
            )
            checked += 1
        for (collection, key), value in log.maybe_deleted.items():
            assert found[collection].get(key) in (None, value), (
                f"round {round_no}: {collection}/{key} neither deleted nor its acked value"
            )
        for collection, key in log.deleted:
            assert key not in found[collection], (
                f"round {round_no}: acknowledged delete of {collection}/{key} came back"
            )
        counter = agents.get(f"counter-{log.writer}")
        if log.counter_acked >= 0:
            assert counter is not None, f"round {round_no}: counter-{log.writer} lost"
            # The last acknowledged value, or a later one that reached the disk unacknowledged.
            assert log.counter_acked <= counter["n"] <= log.counter_sent, (
                f"round {round_no}: counter-{log.writer} is {counter['n']}, acked "
                f"{log.counter_acked}, sent {log.counter_sent}"
            )
    return checked


@pytest.mark.slow
def test_acknowledged_critical_writes_survive_kill9(agents: AgentFactory) -> None:
    seed = int(os.environ.get("SPINE_TEST_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    # Short intervals so kills also land in tiering passes (file rewrites, journal checkpoints)
    # and git commits, not only in puts.
    agent = agents.new(tiering={"file_backup_interval": "300ms", "git_backup_interval": "1s"})
    logs = [WriterLog(w) for w in range(WRITERS)]
    total_acked = 0
    for round_no in range(KILL_ROUNDS + 1):
        agent.start()
        client = agent.client()
        checked = _check_restored(client, logs, round_no)
        status = client.status()
        assert status["tiers"]["files"]["quarantined"] == [], f"seed {seed}"
        agent.assert_clean_logs()
        client.close()
        if round_no == KILL_ROUNDS:
            break

        stop = threading.Event()
        before = sum(len(log.acked) for log in logs)
        threads = [
            threading.Thread(
                target=_writer,
                args=(agent.client(), log, round_no, stop, rng.randrange(1 << 30)),
            )
            for log in logs
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.020, 0.300))
        stop.set()
        agent.kill9()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        for log in logs:
            assert not log.errors, f"seed {seed}, round {round_no}: {log.errors}"
        total_acked += sum(len(log.acked) for log in logs) - before
    assert checked > 0
    assert total_acked > KILL_ROUNDS, f"too few writes acknowledged to mean much ({total_acked})"
    assert agent.stop() == 0


def test_clean_restart_keeps_session_and_critical_drops_cache(agents: AgentFactory) -> None:
    agent = agents.new().start()
    client = agent.client()
    session = {f"s{i}": {"hits": i, "tag": "é✓"} for i in range(20)}
    for key, value in session.items():
        assert client.put("stats", key, value).status == 200
    assert client.put("sessions", "u1", {"token": "abc"}).status == 200
    assert client.put("agents", "a1", {"role": "planner"}).status == 200
    assert client.put("cache", "c1", {"tmp": True}).status == 200
    assert client.put("stats", "as-cache", 1, cls="cache").status == 200
    assert client.put("agents", "as-session", {"x": 1}, cls="session").status == 200
    assert client.delete("stats", "s0").status == 200
    before = client.status()["records"]
    client.close()

    assert agent.stop() == 0
    agent.start()
    client = agent.client()
    expected = {k: v for k, v in session.items() if k != "s0"}
    assert client.records("stats") == expected
    assert client.get("sessions", "u1").json() == {"token": "abc"}
    assert client.get("agents", "a1").json() == {"role": "planner"}
    assert client.get("agents", "as-session").json() == {"x": 1}
    assert client.get("cache", "c1").status == 404
    assert client.get("stats", "as-cache").status == 404
    status = client.status()
    assert status["restored_from"] == "files"
    assert status["records"] == before - 2
    agent.assert_clean_logs()
    assert agent.stop() == 0


@pytest.mark.slow
def test_sigterm_runs_final_backup_within_stop_budget(
    agents: AgentFactory, remote: BareRemote
) -> None:
    budget = 8.0
    agent = agents.new(stop_budget="8s", git={"remote": remote.url, "branch": "backup/vm-7"})
    agent.start()
    client = agent.client()
    # Some records reach the remote through an explicit backup, the rest only through SIGTERM.
    for i in range(50):
        assert client.put("agents", f"early-{i}", {"i": i}).status == 200
    assert client.post("backup").json()["pushed"] is True
    first_push = remote.branch_sha("backup/vm-7")
    assert first_push is not None
    late = {f"late-{i}": {"i": i, "blob": "y" * 100} for i in range(200)}
    for key, value in late.items():
        assert client.put("tasks", key, value).status == 200
    assert client.delete("agents", "early-0").status == 200
    client.close()

    assert agent.proc is not None
    started = time.monotonic()
    agent.proc.terminate()
    rc = agent.proc.wait(60)
    elapsed = time.monotonic() - started
    assert rc == 0, agent.output()
    assert elapsed < budget, f"stop took {elapsed:.2f}s, budget {budget}s"

    tip = remote.branch_sha("backup/vm-7")
    assert tip is not None and tip != first_push
    backed_up = remote.records("backup/vm-7")
    assert backed_up["tasks"] == late
    assert backed_up["agents"] == {f"early-{i}": {"i": i} for i in range(1, 50)}
    done = [e for e in agent.logs() if e["msg"] == "shutdown backup done"]
    assert len(done) == 1 and done[0]["pushed"] is True
    assert done[0]["commit"] == tip


@pytest.mark.slow
def test_sigterm_with_a_hanging_remote_still_exits_within_stop_budget(
    agents: AgentFactory, remote: BareRemote
) -> None:
    """A remote that accepts the connection and never answers (a black hole) must not hold the
    shutdown past the budget: the push is cut off, the data stays safe locally."""
    budget = 8.0
    agent = agents.new(stop_budget="8s", git={"remote": remote.url, "branch": "backup/hang"})
    agent.start()
    assert agent.client().put("agents", "first", {"n": 1}).status == 200
    assert agent.stop() == 0  # the local backup now has a head: no fetch at the next start

    black_hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        port = black_hole.getsockname()[1]
        agent.config["git"]["remote"] = f"git://127.0.0.1:{port}/backup.git"
        agent.start()
        client = agent.client()
        late = {f"k{i}": {"i": i} for i in range(20)}
        for key, value in late.items():
            assert client.put("agents", key, value).status == 200
        client.close()
        assert agent.proc is not None
        started = time.monotonic()
        agent.proc.terminate()
        rc = agent.proc.wait(60)
        elapsed = time.monotonic() - started
    finally:
        black_hole.close()
    assert rc == 0, agent.output()
    assert elapsed < budget, f"stop took {elapsed:.2f}s with a hanging remote, budget {budget}s"
    done = [e for e in agent.logs() if e["msg"] == "shutdown backup done"]
    assert len(done) == 1 and done[0]["pushed"] is False and done[0]["commit"]
    print(f"stop with a hanging remote: {elapsed:.2f}s (shutdown backup {done[0]['seconds']}s)")

    # Nothing was lost: the records are in the warm files and the local git backup.
    agent.config["git"]["remote"] = remote.url
    agent.start()
    client = agent.client()
    assert client.records("agents") == {"first": {"n": 1}, **late}
    assert client.post("backup").json()["pushed"] is True
    client.close()
    assert agent.stop() == 0
    assert remote.records("backup/hang")["agents"] == {"first": {"n": 1}, **late}
