"""The optional TCP API: a loopback Host header (DNS rebinding) and the bearer token, both
checked on every request; the unix socket needs neither. Also the Allow header on a 405."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Agent, AgentFactory
from .tcp import tcp_config, tcp_request


@pytest.fixture
def tcp_agent(agents: AgentFactory, workdir: Path) -> Iterator[tuple[Agent, int, str]]:
    api, port, token = tcp_config(workdir)
    agent = agents.new(api=api).start()
    yield agent, port, token
    assert agent.stop() == 0


@pytest.mark.parametrize(
    "host",
    ["evil.example", "attacker.localhost.evil", "127.0.0.2", "localhost:1", "", "10.0.0.1:80"],
)
def test_a_host_that_is_not_loopback_is_refused(
    tcp_agent: tuple[Agent, int, str], host: str
) -> None:
    agent, port, token = tcp_agent
    auth = {"Authorization": f"Bearer {token}"}
    reply = tcp_request(port, "PUT", "/v1/records/agents/a", {**auth, "Host": host}, b"1")
    assert reply.status == 400, reply.body
    assert "Host header" in reply.json()["error"]
    assert agent.client().get("agents", "a").status == 404  # nothing was written


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "LOCALHOST", "localhost:{port}", "127.0.0.1:{port}"]
)
def test_loopback_hosts_with_the_token_are_served(
    tcp_agent: tuple[Agent, int, str], host: str
) -> None:
    _, port, token = tcp_agent
    headers = {"Authorization": f"Bearer {token}", "Host": host.format(port=port)}
    assert tcp_request(port, "PUT", "/v1/records/agents/a", headers, b"1").status == 200
    assert tcp_request(port, "GET", "/v1/records/agents/a", headers).body == b"1"


@pytest.mark.parametrize(
    "auth",
    [None, "", "Bearer", "Bearer wrong-token-xxxxxxxxxx", "Basic dXNlcjpwYXNz", "bearer {}"],
    ids=["none", "empty", "no-token", "wrong", "basic", "lowercase-scheme"],
)
def test_a_missing_or_wrong_token_is_refused(
    tcp_agent: tuple[Agent, int, str], auth: str | None
) -> None:
    agent, port, token = tcp_agent
    headers = {} if auth is None else {"Authorization": auth.format(token)}
    for method, path, body in [
        ("PUT", "/v1/records/agents/a", b"1"),
        ("GET", "/v1/status", None),
        ("POST", "/v1/flush", None),
    ]:
        reply = tcp_request(port, method, path, headers, body)
        assert reply.status == 401, reply.body
        assert reply.headers["www-authenticate"] == "Bearer"
        assert token not in reply.body.decode()
    assert agent.client().get("agents", "a").status == 404
    # The unix socket is guarded by its file mode and needs no token.
    assert agent.client().put("agents", "a", 1).status == 200


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/records/agents/a", "GET, PUT, DELETE"),
        ("/v1/tier", "POST"),
        ("/v1/health", "HEAD, GET"),
    ],
)
def test_405_names_the_allowed_methods(agents: AgentFactory, path: str, allow: str) -> None:
    agent = agents.new().start()
    reply = agent.client().request("PATCH", path, b"{}")
    assert reply.status == 405
    assert set(reply.headers["allow"].split(", ")) == set(allow.split(", "))
    assert reply.headers["content-type"] == "application/json"
    assert "error" in reply.json()
    assert agent.stop() == 0
