"""The shared API client's own rules; its requests are exercised against the real agent by the
integration tests, the CLI and the bench."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bootstrap.client import ApiClient, is_serving, record_path


@pytest.mark.parametrize("where", [{}, {"socket_path": Path("/tmp/x.sock"), "port": 8000}])
def test_the_client_needs_exactly_one_address(where: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="socket path or its TCP port"):
        ApiClient(**where)  # type: ignore[arg-type]


def test_names_are_quoted_whole() -> None:
    assert record_path("agents") == "/v1/records/agents"
    assert record_path("a b", "x/y?z") == "/v1/records/a%20b/x%2Fy%3Fz"


def test_no_agent_means_not_serving(tmp_path: Path) -> None:
    assert not is_serving(tmp_path / "absent.sock")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound, never listening: what a killed agent leaves
    assert stale.exists() and not is_serving(stale)


def test_a_refused_request_drops_the_connection(tmp_path: Path) -> None:
    client = ApiClient(tmp_path / "absent.sock", timeout=1)
    with pytest.raises(FileNotFoundError):
        client.request("GET", "/v1/health")
    assert client.conn is None
