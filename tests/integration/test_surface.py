"""What the agent exposes besides records: socket permissions, TCP only on loopback when asked,
Prometheus metrics, the OpenAPI document and sd_notify READY/STOPPING."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import START_TIMEOUT, AgentFactory
from .tcp import tcp_config, tcp_request


def _listening_inet(pid: int) -> list[tuple[str, int]]:
    return [
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]


def test_socket_is_0660_and_no_tcp_port_by_default(agents: AgentFactory) -> None:
    agent = agents.new().start()
    mode = os.stat(agent.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert _listening_inet(agent.pid) == []
    assert agent.stop() == 0
    assert not agent.socket_path.exists(), "a clean stop removes the socket"


def test_socket_mode_is_configurable(agents: AgentFactory) -> None:
    agent = agents.new(api={"socket_mode": "0600"}).start()
    assert stat.S_IMODE(os.stat(agent.socket_path).st_mode) == 0o600
    assert agent.stop() == 0


def test_tcp_port_listens_on_loopback_only(agents: AgentFactory, workdir: Path) -> None:
    api, port, token = tcp_config(workdir)
    agent = agents.new(api=api).start()
    assert _listening_inet(agent.pid) == [("127.0.0.1", port)]
    reply = tcp_request(port, "GET", "/v1/health", {"Authorization": f"Bearer {token}"})
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
    # Reachable on the unix socket too.
    assert agent.client().request("GET", "/v1/health").status == 200
    assert agent.stop() == 0


def test_metrics_parse_as_prometheus_text(agents: AgentFactory) -> None:
    agent = agents.new().start()
    client = agent.client()
    for key in ("a1", "a2"):
        assert client.put("agents", key, {"k": key}).status == 200
    assert client.put("stats", "s1", {"n": 1}).status == 200
    assert client.put("cache", "c1", 1).status == 200

    reply = client.request("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    assert "spine_records" in families
    by_class = {s.labels["class"]: s.value for s in families["spine_records"].samples}
    assert by_class == {"critical": 2.0, "session": 1.0, "cache": 1.0}
    puts = families["spine_puts_total"].samples[0].value
    assert puts == 4.0
    assert families["spine_memory_limit_bytes"].samples[0].value == 100 * 1000**2
    assert agent.stop() == 0


def test_openapi_document_lists_the_record_paths(agents: AgentFactory) -> None:
    agent = agents.new().start()
    reply = agent.client().request("GET", "/v1/openapi.json")
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    record = paths["/v1/records/{collection}/{key}"]
    assert {"get", "put", "delete"} <= set(record)
    assert "get" in paths["/v1/records/{collection}"]
    assert {"/v1/health", "/v1/status", "/v1/tier", "/v1/backup", "/v1/flush"} <= set(paths)
    assert set(record["put"]["responses"]) >= {"200", "400", "413", "507"}
    assert agent.stop() == 0


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_ready_then_stopping(agents: AgentFactory, workdir: Path, abstract: bool) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"ssk-notify-{os.getpid()}-{time.monotonic_ns()}"
        listener.bind("\0" + name)
        address = "@" + name
    else:
        address = str(workdir / "notify.sock")
        listener.bind(address)
    listener.settimeout(START_TIMEOUT)
    try:
        agent = agents.new(env={"NOTIFY_SOCKET": address}).start(wait=False)
        message = listener.recv(4096).decode()
        assert message == "READY=1"
        # READY means serving: the socket answers right away, without any retry loop.
        assert agent.client().request("GET", "/v1/health").status == 200
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.recv(4096)  # nothing else until asked to stop
        listener.settimeout(START_TIMEOUT)
        assert agent.proc is not None
        agent.proc.terminate()
        assert listener.recv(4096).decode() == "STOPPING=1"
        assert agent.stop() == 0
    finally:
        listener.close()


def test_second_agent_on_the_same_storage_refuses_to_start(agents: AgentFactory) -> None:
    first = agents.new("first").start()
    client = first.client()
    assert client.put("agents", "before", {"n": 1}).status == 200
    second = agents.new("second", storage=first.storage)
    second.start(wait=False)
    assert second.proc is not None
    rc = second.proc.wait(START_TIMEOUT)
    assert rc != 0
    assert "in use by another agent" in second.stderr()
    assert len(second.stderr().strip().splitlines()) == 1
    # The first one still serves on its socket, and loses nothing.
    client.close()
    assert client.put("agents", "after", {"n": 2}).status == 200
    assert first.stop() == 0
    first.start()
    assert first.client().records("agents") == {"before": {"n": 1}, "after": {"n": 2}}
    assert first.stop() == 0


def test_status_and_metrics_stay_up_while_passes_checkpoint_the_journal(
    agents: AgentFactory,
) -> None:
    """Scrapes race the tiering thread dropping journal segments: never a 500."""
    agent = agents.new(tiering={"file_backup_interval": "50ms"}).start()
    stop = threading.Event()
    put_errors: list[int] = []

    def writer() -> None:
        client = agent.client()
        i = 0
        while not stop.is_set():
            i += 1
            status = client.put("stats", f"k{i % 200}", {"i": i}).status
            if status != 200:
                put_errors.append(status)
        client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    client = agent.client()
    try:
        failures = []
        i, until = 0, time.monotonic() + 2.0  # 40 pass intervals at least, however fast scrapes are
        while i < 400 or time.monotonic() < until:
            i += 1
            path = "/metrics" if i % 2 else "/v1/status"
            reply = client.request("GET", path)
            if reply.status != 200:
                failures.append((path, reply.status))
    finally:
        stop.set()
        thread.join(60)
    assert failures == []
    assert put_errors == []
    passes = sum(e["msg"] == "tiering pass" for e in agent.logs())
    assert passes > 5, "the scrapes did not overlap any tiering pass"
    assert agent.stop() == 0
