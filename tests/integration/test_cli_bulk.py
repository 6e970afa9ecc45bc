"""`spine-agent get-many`, `bulk`, `transaction` and `put --ttl` against the real daemon: missing
records are listed (exit 0), a transaction's failed condition exits 4 and writes nothing, a bad
TTL exits 2 before anything is sent, a TTL on a critical record is refused (exit 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Agent, AgentFactory
from .test_cli import cli, one_line


@pytest.fixture
def running(agents: AgentFactory) -> Agent:
    return agents.new("cli-bulk").start()


def ops_file(tmp: Path, operations: list[dict[str, object]]) -> str:
    path = tmp / "ops.json"
    path.write_text(json.dumps({"operations": operations}))
    return str(path)


def test_get_many_prints_found_and_missing_records(running: Agent) -> None:
    config = running.config_path
    assert cli("put", "agents", "a1", '{"n": 1}', config=config).returncode == 0
    proc = cli("get-many", "agents/a1", "tasks/none", config=config)
    assert proc.returncode == 0, proc
    body = json.loads(proc.stdout)
    assert body["missing"] == 1
    assert [(r["key"], r["found"]) for r in body["records"]] == [("a1", True), ("none", False)]
    assert body["records"][0]["value"] == {"n": 1}


def test_get_many_needs_collection_slash_key(running: Agent) -> None:
    proc = cli("get-many", "agents", config=running.config_path)
    assert proc.returncode == 2
    assert "must be COLLECTION/KEY" in one_line(proc.stderr)


def test_bulk_applies_a_file_of_operations(running: Agent) -> None:
    config = running.config_path
    path = ops_file(
        running.workdir,
        [
            {"op": "put", "collection": "agents", "key": "a", "value": 1},
            {"op": "put", "collection": "stats", "key": "s", "value": 2, "ttl": 600},
        ],
    )
    proc = cli("bulk", path, config=config)
    assert proc.returncode == 0, proc
    assert [r["status"] for r in json.loads(proc.stdout)["results"]] == [200, 200]
    assert json.loads(cli("get", "stats", "s", config=config).stdout) == 2


def test_bulk_reads_stdin_and_exits_4_when_a_condition_failed(running: Agent) -> None:
    config = running.config_path
    body = {"operations": [
        {"op": "put", "collection": "agents", "key": "a", "value": 1, "if_match": 5},
        {"op": "put", "collection": "agents", "key": "b", "value": 2},
    ]}  # fmt: skip
    proc = cli("bulk", "-", config=config, stdin=json.dumps(body).encode())
    assert proc.returncode == 4, proc
    assert json.loads(proc.stdout)["failed"] == 1
    assert json.loads(cli("get", "agents", "b", config=config).stdout) == 2


def test_transaction_exits_4_and_writes_nothing_when_a_condition_fails(running: Agent) -> None:
    config = running.config_path
    path = ops_file(
        running.workdir,
        [
            {"op": "put", "collection": "agents", "key": "a", "value": 1},
            {"op": "check", "collection": "tasks", "key": "t", "if_match": 9},
        ],
    )
    proc = cli("transaction", path, config=config)
    assert proc.returncode == 4, proc
    assert "tasks/t" in one_line(proc.stderr)
    assert cli("get", "agents", "a", config=config).returncode == 1


def test_transaction_applies_all(running: Agent) -> None:
    config = running.config_path
    path = ops_file(
        running.workdir,
        [
            {"op": "put", "collection": "agents", "key": "a", "value": 1},
            {"op": "check", "collection": "tasks", "key": "t", "if_absent": True},
        ],
    )
    assert cli("transaction", path, config=config).returncode == 0
    assert json.loads(cli("get", "agents", "a", config=config).stdout) == 1


def test_a_file_that_is_not_json_exits_2(running: Agent) -> None:
    path = running.workdir / "bad.json"
    path.write_text("{nope")
    proc = cli("bulk", str(path), config=running.config_path)
    assert proc.returncode == 2 and "is not JSON" in one_line(proc.stderr)


def test_a_missing_file_exits_2(running: Agent) -> None:
    proc = cli("transaction", "/nonexistent/ops.json", config=running.config_path)
    assert proc.returncode == 2 and "cannot read" in one_line(proc.stderr)


def test_a_bad_batch_is_refused_with_one_line(running: Agent) -> None:
    path = ops_file(running.workdir, [{"op": "upsert", "collection": "a", "key": "b"}])
    proc = cli("bulk", path, config=running.config_path)
    assert proc.returncode == 1
    assert "operations[0].op" in one_line(proc.stderr)


def test_put_ttl_stores_a_session_record(running: Agent) -> None:
    config = running.config_path
    assert cli("put", "--ttl", "600", "stats", "s", "1", config=config).returncode == 0
    assert json.loads(cli("get", "stats", "s", config=config).stdout) == 1


@pytest.mark.parametrize("ttl", ["0", "-3", "soon", "1.5"])
def test_put_with_a_bad_ttl_exits_2(running: Agent, ttl: str) -> None:
    proc = cli("put", f"--ttl={ttl}", "stats", "s", "1", config=running.config_path)
    assert proc.returncode == 2, proc
    assert "--ttl" in one_line(proc.stderr)


def test_put_ttl_on_a_critical_record_is_refused(running: Agent) -> None:
    proc = cli("put", "--ttl", "60", "agents", "a", "1", config=running.config_path)
    assert proc.returncode == 1
    assert "critical" in one_line(proc.stderr)
