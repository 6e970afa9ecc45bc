"""Fixtures for the agent's integration tests: the real `spine-agent run` as a subprocess, a real
bare git remote, and the shared API client (bootstrap.client) on the agent's unix socket.

Nothing here is mocked. Every agent a test starts is stopped (SIGKILL if it must) in teardown,
and every directory lives under a short /tmp path so unix socket paths stay under 108 bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from bootstrap.client import JSON_HEADERS, ApiClient, Reply, is_serving, record_path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SPINE_AGENT = str(VENV_BIN / "spine-agent")
if not Path(SPINE_AGENT).exists():  # pragma: no cover - the venv is how tests are run
    SPINE_AGENT = str(REPO / ".venv" / "bin" / "spine-agent")

# Generous: other engineers run QEMU VMs on this 2-core machine while tests run.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours without any SUPER_SPINE_* or NOTIFY_SOCKET leaking in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SUPER_SPINE_") and k != "NOTIFY_SOCKET"
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


class Client(ApiClient):
    """The shared API client on the agent's socket, with the tests' timeout and conveniences
    that assert what every caller expects. Not thread-safe: one per thread."""

    def __init__(self, socket_path: Path, timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__(socket_path, timeout=timeout)

    def put(self, collection: str, key: str, value: Any, cls: str | None = None) -> Reply:
        query = f"?class={cls}" if cls else ""
        return self.request(
            "PUT", record_path(collection, key) + query, json.dumps(value).encode(), JSON_HEADERS
        )

    def get(self, collection: str, key: str) -> Reply:
        return self.request("GET", record_path(collection, key))

    def delete(self, collection: str, key: str) -> Reply:
        return self.request("DELETE", record_path(collection, key))

    def records(self, collection: str, prefix: str = "") -> dict[str, Any]:
        query = f"?limit=100000&prefix={quote(prefix, safe='')}" if prefix else "?limit=100000"
        reply = self.request("GET", record_path(collection) + query)
        assert reply.status == 200, reply.body
        body = reply.json()
        assert body["truncated"] is False, (collection, prefix)
        records: dict[str, Any] = body["records"]
        return records

    def status(self) -> dict[str, Any]:
        reply = self.request("GET", "/v1/status")
        assert reply.status == 200, reply.body
        result: dict[str, Any] = reply.json()
        return result

    def post(self, verb: str) -> Reply:
        return self.request("POST", f"/v1/{verb}")


@dataclass
class Agent:
    """One `spine-agent run` child with its config, logs and a client."""

    workdir: Path
    name: str
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    use_config_file: bool = True
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def storage(self) -> Path:
        return Path(self.config["storage_path"])

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    @property
    def socket_path(self) -> Path:
        api = self.config.get("api") or {}
        return Path(api.get("socket", str(self.storage / "spine-agent.sock")))

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.run{self.runs}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.run{self.runs}.stderr"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def write_config(self) -> Path:
        self.config_path.write_text(yaml.safe_dump(self.config))
        return self.config_path

    def start(self, wait: bool = True) -> Agent:
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        self.runs += 1
        argv = [SPINE_AGENT, "run"]
        if self.use_config_file:
            argv += ["--config", str(self.write_config())]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=clean_env(**self.env),
                cwd=self.workdir,
                # Its own session: a ^C (or a SIGINT to pytest's process group) must not
                # reach the agent; only the signals a test sends do.
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.proc.returncode} before serving:\n{self.output()}"
                )
            if is_serving(self.socket_path):
                return
            time.sleep(0.02)
        raise AssertionError(f"agent did not serve within {timeout}s:\n{self.output()}")

    def client(self, timeout: float = REQUEST_TIMEOUT) -> Client:
        return Client(self.socket_path, timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"agent ignored SIGTERM for {timeout}s:\n{self.output()}"
            ) from None

    def kill9(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def logs(self) -> list[dict[str, Any]]:
        """This run's structured log lines (stdout is one JSON object per line)."""
        lines = []
        for line in self.stdout().splitlines():
            if line.strip():
                lines.append(json.loads(line))
        return lines

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-4000:]}\n--- stderr ---\n{self.stderr()[-4000:]}"

    def assert_clean_logs(self) -> None:
        """The run logged no error and wrote nothing to stderr."""
        errors = [entry for entry in self.logs() if entry["level"] in ("error", "critical")]
        assert not errors, f"error log lines: {errors}"
        assert self.stderr() == "", self.stderr()


class AgentFactory:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.agents: list[Agent] = []

    def new(
        self,
        name: str = "agent",
        storage: Path | None = None,
        env: dict[str, str] | None = None,
        use_config_file: bool = True,
        **config: Any,
    ) -> Agent:
        storage = storage or self.workdir / f"{name}-storage"
        base: dict[str, Any] = {
            "storage_path": str(storage),
            "tiering": {
                # The scheduler stays out of the way unless a test asks for it.
                "file_backup_interval": "1h",
                "git_backup_interval": "1h",
            },
            "git": {"branch": f"backup/{name}"},
        }
        for key, value in config.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        agent = Agent(self.workdir, name, base, env=env or {}, use_config_file=use_config_file)
        self.agents.append(agent)
        return agent

    def cleanup(self) -> None:
        for agent in self.agents:
            if agent.running():
                assert agent.proc is not None
                agent.proc.kill()
                agent.proc.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short path under /tmp (pytest's tmp_path can push socket paths past 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ssk-it-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agents(workdir: Path) -> Iterator[AgentFactory]:
    factory = AgentFactory(workdir)
    yield factory
    factory.cleanup()


@dataclass
class BareRemote:
    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "--git-dir", str(self.path), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def branch_sha(self, branch: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
        return proc.stdout.strip() or None

    def show(self, rev: str, path: str) -> bytes:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), "show", f"{rev}:{path}"],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return proc.stdout

    def blob(self, sha: str) -> bytes:
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "blob", sha],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return proc.stdout

    def records(self, branch: str) -> dict[str, dict[str, Any]]:
        """Critical records at the branch tip, read independently of the agent's code: the
        tip's MANIFEST.json names the snapshot blobs (one per warm file: a JSON object, or
        JSON lines in older backups) and the change segments,
        applied in order; a change line with "d" is a delete. The blobs are read from the
        remote's object store, so this also proves they were pushed."""
        rev = f"refs/heads/{branch}"
        manifest = json.loads(self.show(rev, "MANIFEST.json"))
        result: dict[str, dict[str, Any]] = {}
        for name, sha in manifest["snapshot"].items():
            coll = result.setdefault(name.split(".")[0], {})
            data = self.blob(sha)
            try:
                whole = json.loads(data)  # a snapshot blob in the warm-file layout
            except json.JSONDecodeError:
                whole = None
            if isinstance(whole, dict):
                coll.update(whole)
                continue
            for line in data.splitlines():  # or one {"k": ..., "v": ...} line per record
                rec = json.loads(line)
                coll[rec["k"]] = rec["v"]
        for segment in manifest["segments"]:
            for line in self.blob(segment["sha"]).splitlines():
                rec = json.loads(line)
                coll = result.setdefault(rec["f"].split(".")[0], {})
                if rec.get("d"):
                    coll.pop(rec["k"], None)
                else:
                    coll[rec["k"]] = rec["v"]
        return {name: coll for name, coll in result.items() if coll}


@pytest.fixture
def remote(workdir: Path) -> BareRemote:
    path = workdir / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True, timeout=60)
    return BareRemote(path)


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    """Poll until predicate() is truthy; return its value. Fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
