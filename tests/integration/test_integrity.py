"""Regression tests of the real agent for acknowledged deletes that came back, the journal bound
and a start that waited on the remote (issue 7, items 3, 4, 12 and 14): each sequence is the
one that failed, run against `spine-agent run` with `kill -9`."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from .conftest import AgentFactory, BareRemote, Client, wait_for


def test_a_cache_override_then_delete_does_not_bring_the_critical_value_back(
    agents: AgentFactory,
) -> None:
    agent = agents.new().start()
    client = agent.client()
    assert client.put("agents", "k", "A").status == 200  # critical, fdatasync'd
    assert client.put("agents", "k", "B", cls="cache").status == 200
    assert client.delete("agents", "k").status == 200
    client.close()
    agent.kill9()
    agent.start()
    assert agent.client().get("agents", "k").status == 404


def test_a_cache_override_is_what_a_crash_forgets_not_the_older_value(
    agents: AgentFactory,
) -> None:
    """A cache record may be lost in a crash; the critical value it replaced must not return."""
    agent = agents.new().start()
    client = agent.client()
    assert client.put("agents", "k", "A").status == 200
    client.post("tier")  # "A" is in agents.json now
    assert client.put("agents", "k", "B", cls="cache").status == 200
    client.close()
    agent.kill9()
    agent.start()
    assert agent.client().get("agents", "k").status == 404


def test_session_override_then_restart_then_delete_stays_deleted(agents: AgentFactory) -> None:
    agent = agents.new().start()
    client = agent.client()
    assert client.put("agents", "k", "A").status == 200
    client.post("tier")
    client.post("backup")
    assert client.put("agents", "k", "B", cls="session").status == 200
    client.close()
    agent.kill9()
    agent.start()
    client = agent.client()
    assert client.get("agents", "k").json() == "B"
    assert client.delete("agents", "k").status == 200
    client.post("tier")
    client.close()
    agent.kill9()
    agent.start()
    client = agent.client()
    assert client.get("agents", "k").status == 404
    client.post("backup")  # git must not hold "A" either: a new VM restores from it
    client.close()
    assert agent.stop() == 0
    fresh = agents.new("fresh", git={"path": str(agent.storage / ".backup.git")}).start()
    assert fresh.client().get("agents", "k").status == 404


def test_an_emptied_collection_does_not_come_back_from_git(agents: AgentFactory) -> None:
    agent = agents.new().start()
    client = agent.client()
    assert client.put("agents", "a", {"n": 1}).status == 200
    assert client.put("tasks", "b", {"n": 2}).status == 200
    assert client.post("backup").status == 200
    assert client.delete("agents", "a").status == 200
    assert client.delete("tasks", "b").status == 200
    assert client.post("tier").status == 200
    client.close()
    agent.kill9()
    agent.start()
    client = agent.client()
    status = client.status()
    assert status["restored_from"] == "files"
    assert status["records"] == 0
    assert client.get("agents", "a").status == 404 and client.get("tasks", "b").status == 404


def test_deletes_bound_for_git_survive_a_crash_after_the_file_pass(
    agents: AgentFactory, remote: BareRemote
) -> None:
    """The warm files dropped the record and the journal was checkpointed before git saw the
    delete: the delete must still reach git (and the remote), or a new VM restores the record."""
    agent = agents.new(git={"remote": remote.url, "branch": "backup/del"}).start()
    client = agent.client()
    assert client.put("agents", "gone", {"n": 1}).status == 200
    assert client.put("agents", "kept", {"n": 2}).status == 200
    assert client.post("backup").json()["pushed"] is True
    assert client.delete("agents", "gone").status == 200
    assert client.post("tier").status == 200
    client.close()
    agent.kill9()
    agent.start()
    client = agent.client()
    assert client.post("backup").json()["pushed"] is True
    client.close()
    assert agent.stop() == 0
    assert remote.records("backup/del")["agents"] == {"kept": {"n": 2}}
    new_vm = agents.new("newvm", git={"remote": remote.url, "branch": "backup/del"}).start()
    assert new_vm.client().records("agents") == {"kept": {"n": 2}}


def test_the_journal_is_bounded_for_an_agent_that_always_dies_before_its_first_pass(
    agents: AgentFactory,
) -> None:
    """Crash loops used to grow the journal without end (723 MB for 160 live keys)."""
    from bootstrap.storage import JOURNAL_CHECKPOINT_BYTES

    agent = agents.new()
    journal = agent.storage / "journal"
    value = {"pad": "x" * 60_000}
    rounds = 0
    written = 0
    while written < 2.5 * JOURNAL_CHECKPOINT_BYTES:
        agent.start()
        client = agent.client()
        for i in range(160):
            assert client.put("agents", f"k{i}", {**value, "round": rounds}).status == 200
            written += 60_000
        client.close()
        agent.kill9()
        rounds += 1
    agent.start()
    kept = sum(p.stat().st_size for p in journal.glob("journal-*.jsonl"))
    assert kept <= JOURNAL_CHECKPOINT_BYTES + 2 * 160 * 61_000, f"journal holds {kept} bytes"
    records = agent.client().records("agents")
    assert len(records) == 160
    assert all(r["round"] == rounds - 1 for r in records.values())


def test_a_vm_with_warm_files_serves_without_waiting_for_a_silent_remote(
    agents: AgentFactory, remote: BareRemote
) -> None:
    agent = agents.new(git={"remote": remote.url, "branch": "backup/silent"}).start()
    assert agent.client().put("agents", "a", {"n": 1}).status == 200
    assert agent.stop() == 0
    black_hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)  # handshakes complete; nobody ever answers
    try:
        port = black_hole.getsockname()[1]
        agent.config["git"]["remote"] = f"git://127.0.0.1:{port}/backup.git"
        started = time.monotonic()
        agent.start()
        ready_after = time.monotonic() - started
        assert agent.client().get("agents", "a").json() == {"n": 1}
        serving = wait_for(
            lambda: [e for e in agent.logs() if e["msg"] == "serving"],
            timeout=30,
            what="the 'serving' log line",
        )
        # The remote check runs behind the socket: start-up is not the 15 s fetch timeout.
        assert serving and serving[0]["startup_s"] < 10, serving
        print(f"ready after {ready_after:.2f}s with a silent remote")
    finally:
        black_hole.close()


@pytest.mark.slow
def test_aggressive_tiering_crash_loop_serves_every_read_right(agents: AgentFactory) -> None:
    """Item 9: passes every 250 ms, a 1 MB memory limit and a 100 ms hot age make nearly every
    read of an older record a pread while a pass rewrites its file; kills land anywhere."""
    from .test_durability import WriterLog, _check_restored, _writer

    rng = random.Random(int(os.environ.get("SPINE_TEST_SEED", "7")))
    agent = agents.new(
        memory_limit="1MB",
        tiering={"file_backup_interval": "250ms", "git_backup_interval": "1s", "hot_age": "100ms"},
    )
    logs = [WriterLog(w) for w in range(2)]
    served_right = [0]
    bad: list[str] = []

    def reader(client: Client, stop: threading.Event, seed: int) -> None:
        pick = random.Random(seed)
        try:
            while not stop.is_set():
                try:
                    known = [item for log in logs for item in list(log.acked.items())[:2000]]
                except RuntimeError:  # a writer changed its log while we copied it
                    continue
                if not known:
                    time.sleep(0.01)
                    continue
                (collection, key), value = pick.choice(known)
                reply = client.get(collection, key)
                if reply.status == 200 and reply.json() == value:
                    served_right[0] += 1
                elif reply.status != 404:  # 404: a writer may have deleted it meanwhile
                    bad.append(f"{collection}/{key}: {reply.status} {reply.body[:80]!r}")
        except Exception as exc:  # the kill ends every reader here
            if not stop.is_set():
                bad.append(f"before the kill: {exc!r}")
        finally:
            client.close()

    for round_no in range(16):
        agent.start()
        client = agent.client()
        _check_restored(client, logs, round_no)
        client.close()
        stop = threading.Event()
        threads = [
            threading.Thread(target=_writer, args=(agent.client(), log, round_no, stop, i))
            for i, log in enumerate(logs)
        ]
        threads += [
            threading.Thread(target=reader, args=(agent.client(), stop, 1000 * round_no + i))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.5, 1.5))
        stop.set()
        agent.kill9()
        for thread in threads:
            thread.join(60)
        assert bad == [], bad[:5]
        for log in logs:
            assert not log.errors, log.errors[:3]
    print(f"reads served right: {served_right[0]}")
    assert served_right[0] > 100


def test_sigterm_during_a_slow_start_ends_with_a_clean_shutdown(
    agents: AgentFactory, workdir: Path
) -> None:
    """A blank disk waits for its remote at start (here an ssh remote whose `ssh` never answers:
    a stand-in on PATH that marks when git calls it, then sleeps). A stop in that window used to
    kill the process outright (and, as a container's PID 1, was ignored until SIGKILL); now it is
    noted and the agent shuts down cleanly once the restore gives up."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    marker = workdir / "ssh-called"
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(f'#!/bin/sh\ntouch "{marker}"\nexec sleep 60\n')
    fake_ssh.chmod(0o755)
    agent = agents.new(
        git={"remote": "ssh://git@127.0.0.1/backup.git"},
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    agent.start(wait=False)
    wait_for(marker.exists, timeout=60, what="git calling ssh during the start-up fetch")
    assert agent.proc is not None and agent.proc.poll() is None
    agent.proc.terminate()
    rc = agent.proc.wait(60)
    assert rc == 0, agent.output()
    messages = [e["msg"] for e in agent.logs()]
    assert "stop signal during start-up" in messages and "shutdown backup done" in messages
    assert "serving" not in messages
