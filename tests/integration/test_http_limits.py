"""The HTTP limits, for real over the agent's unix socket: head size, idle and slow connections,
and more connections than the agent serves (also with few file descriptors)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psutil
import pytest

from bootstrap.client import ApiClient, record_path

from .conftest import Agent, AgentFactory

HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
WAIT = 60.0  # generous: the machine is shared


def _connect(agent: Agent) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(str(agent.socket_path))
    return sock


def _read_reply(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Status and JSON body of one response (the agent answers these with content-length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(body)


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


@contextmanager
def _connections(agent: Agent, count: int) -> Iterator[list[socket.socket]]:
    socks = [_connect(agent) for _ in range(count)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_head_over_the_limit_gets_431(agents: AgentFactory) -> None:
    agent = agents.new(api={"max_header_bytes": "16KiB"}).start()
    sock = _connect(agent)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 20_000)
    status, body = _read_reply(sock)
    assert status == 431
    assert "api.max_header_bytes" in str(body["error"])
    assert _closed_by_peer(sock)
    sock.close()
    # A head just under the limit is served.
    sock = _connect(agent)
    sock.sendall(HEALTH[:-2] + b"X-Big: " + b"a" * 15_000 + b"\r\n\r\n")
    assert _read_reply(sock) == (200, {"status": "ok"})
    sock.close()
    assert agent.stop() == 0


def test_big_bodies_are_not_taken_for_head_bytes(agents: AgentFactory) -> None:
    """A body that arrives in several reads after its head is not counted against the head."""
    agent = agents.new(api={"max_header_bytes": "1KiB"}).start()
    client = agent.client()
    for round_ in range(3):
        value = {"pad": "x" * 600_000, "round": round_}
        assert client.put("agents", f"k{round_}", value).status == 200
        assert client.get("agents", f"k{round_}").json() == value
    client.close()
    assert agent.stop() == 0


def _send_huge_header(agent: Agent, size: int, sent: list[int]) -> None:
    sock = _connect(agent)
    chunk = b"a" * (1 << 20)
    total = 0
    try:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        while total < size:
            sock.sendall(chunk)
            total += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sent.append(total)
        sock.close()


def test_eight_64mb_headers_are_cut_off_without_memory_growth(agents: AgentFactory) -> None:
    """The issue's case: 8 clients at once with a 64 MB header took the RSS from 39 to ~500 MB."""
    agent = agents.new().start()
    process = psutil.Process(agent.pid)
    before = process.memory_info().rss
    sent: list[int] = []
    threads = [
        threading.Thread(target=_send_huge_header, args=(agent, 64 << 20, sent)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    grown = process.memory_info().rss - before
    assert max(sent) < 16 << 20, sent  # cut off long before 64 MB went through
    assert grown < 40 << 20, f"RSS grew by {grown >> 20} MB"
    assert agent.client().request("GET", "/v1/health").status == 200
    assert agent.stop() == 0


def test_idle_and_slow_connections_are_closed(agents: AgentFactory) -> None:
    agent = agents.new(api={"idle_timeout": "1s", "max_connections": 1000}).start()
    with _connections(agent, 500) as idle:
        slow = _connect(agent)
        slow.sendall(b"GET /v1/health HTTP/1.1\r\n")
        for byte in b"X-Slow: abcdefghij":  # one byte every 0.3 s: a slowloris head
            with suppress(BrokenPipeError, ConnectionResetError):
                slow.send(bytes([byte]))
            time.sleep(0.3)
        # Every idle connection, and the slow one, is closed by the agent (not by us).
        assert all(_closed_by_peer(sock) for sock in idle)
        assert _closed_by_peer(slow)
        slow.close()
    process = psutil.Process(agent.pid)
    assert len([c for c in process.net_connections(kind="unix") if c.raddr]) <= 2
    # A connection that speaks within the idle time is served, and kept alive for the next.
    sock = _connect(agent)
    sock.sendall(HEALTH)
    assert _read_reply(sock) == (200, {"status": "ok"})
    time.sleep(0.3)
    sock.sendall(HEALTH)
    assert _read_reply(sock) == (200, {"status": "ok"})
    sock.close()
    assert agent.stop() == 0


def test_over_max_connections_new_clients_get_a_clean_503_then_service(
    agents: AgentFactory,
) -> None:
    """The issue's case: with a 256-descriptor limit and 400 connections every new client failed.
    Now a client beyond api.max_connections reads a JSON 503, and is served once others go."""
    agent = agents.new(api={"idle_timeout": "2s", "max_connections": 100}).start()
    subprocess.run(["prlimit", f"--pid={agent.pid}", "--nofile=256:256"], check=True)
    with _connections(agent, 400):
        time.sleep(1.0)  # the agent works through the burst (over-limit ones get 503 at once)
        answers = []
        for _ in range(5):
            sock = _connect(agent)
            sock.sendall(HEALTH)
            answers.append(_read_reply(sock))
            sock.close()
        assert {status for status, _ in answers} <= {200, 503}, answers
        assert any(status == 503 for status, _ in answers)
        for status, body in answers:
            if status == 503:
                assert "api.max_connections" in str(body["error"])
        # Once the idle ones are closed, new clients are served again.
        deadline = time.monotonic() + WAIT
        while True:
            sock = _connect(agent)
            sock.sendall(HEALTH)
            status, _ = _read_reply(sock)
            sock.close()
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200
    assert agent.running()
    assert agent.stop() == 0
    agent.assert_clean_logs()


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_the_shared_client_outlives_the_agents_idle_timeout(
    agents: AgentFactory, method: str
) -> None:
    """The agent closes a kept-alive connection after api.idle_timeout; the next request of the
    shared client (CLI, tests, bench) goes on a fresh connection instead of failing with a
    broken pipe (a slow thread under load met this in the If-Match counter test)."""
    agent = agents.new(api={"idle_timeout": "1s"}).start()
    client = ApiClient(agent.socket_path)
    assert client.put_record("agents", "a", b"1").status == 200
    time.sleep(2.5)  # past the idle timeout: the agent has closed this connection
    reply = (
        client.put_record("agents", "a", b"2")
        if method == "PUT"
        else client.request("GET", record_path("agents", "a"))
    )
    assert reply.status == 200
    assert client.request("GET", record_path("agents", "a")).body == (
        b"2" if method == "PUT" else b"1"
    )
    client.close()
