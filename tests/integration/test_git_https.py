"""The git token path against a real https remote: the agent pushes through TLS on 127.0.0.1 to
dulwich's smart-HTTP server (under uvicorn), which demands HTTP basic auth. Nothing is mocked:
git itself asks GIT_ASKPASS for the token, and the server checks what git sends.

Also checked: the token never lands in the agent's logs, status or local git config, nor in
~/.git-credentials when the host's git config names the `store` credential helper.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvicorn
from a2wsgi import WSGIMiddleware
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain

from .conftest import AgentFactory, BareRemote

TOKEN = "s3cr3t-token-for-tests"
USERNAME = "x-access-token"  # what the agent's askpass helper answers for the user name
BRANCH = "backup/https-vm"


@dataclass
class HttpsRemote:
    """A bare repository served over https with basic auth; records what clients sent."""

    remote: BareRemote
    url: str
    ca_file: Path
    authorizations: list[str] = field(default_factory=list)

    def token_attempts(self) -> list[str]:
        """The passwords clients sent, decoded (the first request of each git call has none)."""
        tokens = []
        for header in self.authorizations:
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                assert user == USERNAME
                tokens.append(password)
        return tokens


def _basic_auth(app: Any, expected: str, seen: list[str]) -> Any:
    """WSGI wrapper: 401 with a Basic challenge unless the header carries the token."""
    wanted = "Basic " + base64.b64encode(f"{USERNAME}:{expected}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        header = environ.get("HTTP_AUTHORIZATION", "")
        seen.append(header)
        if header != wanted:
            challenge = [("WWW-Authenticate", 'Basic realm="backup"'), ("Content-Length", "0")]
            start_response("401 Unauthorized", challenge)
            return [b""]
        return app(environ, start_response)

    return guarded


@pytest.fixture
def https_remote(workdir: Path) -> Iterator[HttpsRemote]:
    path = workdir / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True, timeout=60)
    repo = Repo(str(path))
    seen: list[str] = []
    app = _basic_auth(make_wsgi_chain(DictBackend({"/backup.git": repo})), TOKEN, seen)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = workdir / "ca.pem", workdir / "cert.pem", workdir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            WSGIMiddleware(app),
            ssl_certfile=str(cert_file),
            ssl_keyfile=str(key_file),
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the https git server did not start"
    try:
        yield HttpsRemote(BareRemote(path), f"https://127.0.0.1:{port}/backup.git", ca_file, seen)
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        repo.close()


def token_file(workdir: Path, token: str) -> Path:
    path = workdir / "git-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def start_agent(agents: AgentFactory, https: HttpsRemote, token: Path, home: Path) -> Any:
    """The agent with the token, and a HOME whose ~/.gitconfig would store any credential."""
    home.mkdir(exist_ok=True)
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    git = {"remote": https.url, "branch": BRANCH, "token_file": str(token)}
    # git trusts the test CA through its own variable: the agent's code path is unchanged.
    env = {"GIT_SSL_CAINFO": str(https.ca_file), "HOME": str(home)}
    return agents.new("https-vm", git=git, env=env).start()


def assert_token_nowhere(agent: Any, status: dict[str, Any], token: str, home: Path) -> None:
    assert token not in agent.stdout() and token not in agent.stderr()
    assert token not in str(status)
    assert not (home / ".git-credentials").exists(), "the host's credential helper kept it"
    assert token not in (agent.storage / ".backup.git" / "config").read_text()


def test_the_token_reaches_the_https_remote_through_askpass(
    agents: AgentFactory, https_remote: HttpsRemote, workdir: Path
) -> None:
    agent = start_agent(agents, https_remote, token_file(workdir, TOKEN), workdir / "home")
    client = agent.client()
    assert client.put("agents", "a1", {"name": "first"}).status == 200
    assert client.post("backup").json()["pushed"] is True
    assert https_remote.remote.records(BRANCH) == {"agents": {"a1": {"name": "first"}}}
    assert https_remote.token_attempts() and set(https_remote.token_attempts()) == {TOKEN}
    status = client.status()
    assert status["backup"]["last_push_error"] is None
    assert agent.stop() == 0
    assert_token_nowhere(agent, status, TOKEN, workdir / "home")


def test_a_wrong_token_is_refused_and_never_shown(
    agents: AgentFactory, https_remote: HttpsRemote, workdir: Path
) -> None:
    wrong = "wrong-token-never-shown"
    agent = start_agent(agents, https_remote, token_file(workdir, wrong), workdir / "home")
    client = agent.client()
    assert client.put("agents", "a1", 1).status == 200
    assert client.post("backup").json()["pushed"] is False
    assert https_remote.remote.branch_sha(BRANCH) is None
    assert wrong in https_remote.token_attempts()
    status = client.status()
    assert status["backup"]["last_push_error"], status["backup"]
    assert agent.stop() == 0
    assert_token_nowhere(agent, status, wrong, workdir / "home")
