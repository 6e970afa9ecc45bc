"""api.health_port: a TCP port that answers GET /v1/health and nothing else, with no token.

Cloud Run probes a sidecar over TCP or HTTP, never over a unix socket: the agent's startup
probe reads this port (infra/components/service.py). It must not open the API to anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Agent, AgentFactory
from .tcp import free_port, tcp_config, tcp_request


@pytest.fixture
def health_agent(agents: AgentFactory) -> Iterator[tuple[Agent, int]]:
    port = free_port()
    agent = agents.new(api={"health_port": port}).start()
    yield agent, port
    assert agent.stop() == 0


def test_the_health_port_answers_the_health_check_without_a_token(
    health_agent: tuple[Agent, int],
) -> None:
    _, port = health_agent
    for method in ("GET", "HEAD"):
        reply = tcp_request(port, method, "/v1/health", {"Host": "10.1.2.3:9"})
        assert reply.status == 200, reply.body


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/records/agents/a"),
        ("PUT", "/v1/records/agents/a"),
        ("GET", "/v1/status"),
        ("POST", "/v1/flush"),
        ("POST", "/v1/health"),
        ("GET", "/metrics"),
    ],
)
def test_the_health_port_serves_nothing_else(
    health_agent: tuple[Agent, int], method: str, path: str
) -> None:
    agent, port = health_agent
    assert agent.client().put("agents", "a", 1).status == 200
    reply = tcp_request(port, method, path, {}, b"2" if method == "PUT" else None)
    assert reply.status == 404, reply.body
    assert "answers GET /v1/health only" in reply.json()["error"]
    assert agent.client().get("agents", "a").body == b"1"  # nothing was written or read


def test_the_health_port_and_the_token_port_live_side_by_side(
    agents: AgentFactory, workdir: Path
) -> None:
    api, port, token = tcp_config(workdir)
    health = free_port()
    agent = agents.new(api={**api, "health_port": health}).start()
    try:
        assert tcp_request(health, "GET", "/v1/health", {}).status == 200
        assert tcp_request(port, "GET", "/v1/health", {}).status == 401  # still guarded
        auth = {"Authorization": f"Bearer {token}"}
        assert tcp_request(port, "PUT", "/v1/records/agents/a", auth, b"1").status == 200
    finally:
        assert agent.stop() == 0
