"""Tiering in the real daemon: the memory limit evicts clean records (cache first) and serves
evicted ones from the warm files, dirty records are never dropped but reported, and restore
never puts an older copy over a newer one."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .conftest import AgentFactory, Client


def _gauge(client: Client, name: str) -> float:
    text = client.request("GET", "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return float(family.samples[0].value)
    raise AssertionError(f"{name} not in /metrics")


def test_memory_limit_evicts_clean_records_and_never_drops_dirty_ones(
    agents: AgentFactory,
) -> None:
    agent = agents.new(memory_limit="1MB").start()
    client = agent.client()
    blob = "v" * 4000
    # ~1.3 MB of critical records: not evictable until they are in the warm files AND in git.
    critical = {f"a{i:04d}": {"i": i, "blob": blob} for i in range(300)}
    for key, value in critical.items():
        assert client.put("agents", key, value).status == 200
    assert client.post("tier").status == 200  # warm files written; git backup not yet due

    status = client.status()
    assert status["records"] == len(critical)
    assert status["tiers"]["memory"]["over_limit"] is True
    assert status["dirty"]["unevictable_over_limit"] is True
    assert status["dirty"]["git"] == len(critical)
    assert status["classes"]["critical"]["in_memory"] == len(critical)
    assert _gauge(client, "spine_memory_over_limit") == 1.0
    warnings = [e for e in agent.logs() if "memory limit exceeded" in e["msg"]]
    assert warnings and warnings[0]["level"] == "warning"
    # Git-dirty records can't be evicted by a tiering pass, so the pass must not keep asking
    # for another one: no busy loop of passes (and warnings) while we wait.
    passes_before = sum(e["msg"] == "tiering pass" for e in agent.logs())
    time.sleep(1.0)
    passes_after = sum(e["msg"] == "tiering pass" for e in agent.logs())
    assert passes_after - passes_before <= 2, f"{passes_after - passes_before} passes in 1 s"
    assert client.records("agents") == critical

    # Once in git they are clean: the next pass evicts down under the limit.
    assert client.post("backup").json()["commit"]
    assert client.post("tier").status == 200
    status = client.status()
    assert status["tiers"]["memory"]["over_limit"] is False
    assert status["tiers"]["memory"]["bytes"] <= 1_000_000
    assert status["classes"]["critical"]["in_memory"] < len(critical)
    assert status["records"] == len(critical)
    assert _gauge(client, "spine_evictions_total") > 0
    assert _gauge(client, "spine_memory_over_limit") == 0.0
    # Evicted records are read back from the warm files, the same JSON.
    assert client.records("agents") == critical
    for key in ("a0000", "a0150", "a0299"):
        assert client.get("agents", key).json() == critical[key]

    # Session records past the limit: written and evicted by the passes, all still served.
    session = {f"s{i:04d}": {"i": i, "blob": blob} for i in range(300)}
    for key, value in session.items():
        assert client.put("stats", key, value).status == 200
    assert client.post("tier").status == 200
    assert client.records("stats") == session
    assert client.status()["tiers"]["memory"]["over_limit"] is False
    client.close()

    assert agent.stop() == 0
    agent.start()
    client = agent.client()
    assert client.records("agents") == critical
    assert client.records("stats") == session
    status = client.status()
    assert status["tiers"]["memory"]["bytes"] <= 1_000_000
    assert status["records"] == len(critical) + len(session)
    agent.assert_clean_logs()
    assert agent.stop() == 0


def _value(client: Client, key: str) -> Any:
    reply = client.get("agents", key)
    assert reply.status == 200, reply.body
    return reply.json()


def test_restore_never_puts_an_older_backup_over_newer_local_data(agents: AgentFactory) -> None:
    agent = agents.new().start()
    client = agent.client()
    # k1: git has v1, the warm files v2 (git older than the files).
    assert client.put("agents", "k1", "v1").status == 200
    assert client.post("backup").status == 200
    assert client.put("agents", "k1", "v2").status == 200
    assert client.post("tier").status == 200
    # k2: files v1, git v2 (newer), journal v3 (newest, never tiered).
    assert client.put("agents", "k2", "v1").status == 200
    assert client.post("tier").status == 200
    assert client.put("agents", "k2", "v2").status == 200
    assert client.post("backup").status == 200
    assert client.put("agents", "k2", "v3").status == 200
    # k3: deleted after its backup; the delete is only in the journal.
    assert client.put("agents", "k3", "v1").status == 200
    assert client.post("backup").status == 200
    assert client.delete("agents", "k3").status == 200
    client.close()
    agent.kill9()

    agent.start()
    client = agent.client()
    assert _value(client, "k1") == "v2"
    assert _value(client, "k2") == "v3"
    assert client.get("agents", "k3").status == 404
    client.close()
    assert agent.stop() == 0
    agent.start()  # and the same after a clean cycle through files and git
    client = agent.client()
    assert client.records("agents") == {"k1": "v2", "k2": "v3"}
    assert agent.stop() == 0
