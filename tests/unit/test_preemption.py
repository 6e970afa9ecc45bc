"""The preemption watcher against a real HTTP server that plays GCE's metadata long-poll."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bootstrap.config import ConfigError, config_from_mapping
from bootstrap.lifecycle import HybridVMStorage
from bootstrap.preemption import PreemptionWatcher, running_on_gce


class FakeMetadata:
    """`instance/preempted` with etag long-poll semantics, flipped by the test."""

    def __init__(self) -> None:
        self.value = "FALSE"
        self.etag = 1
        self.changed = threading.Condition()
        self.requests: list[dict[str, list[str]]] = []
        self.headers_ok = True
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                outer.requests.append(query)
                if self.headers.get("Metadata-Flavor") != "Google":
                    outer.headers_ok = False
                    self.send_response(403)
                    self.end_headers()
                    return
                if parts.path != "/computeMetadata/v1/instance/preempted":
                    self.send_response(404)
                    self.end_headers()
                    return
                with outer.changed:
                    if query.get("last_etag", ["0"])[0] == str(outer.etag):
                        outer.changed.wait(timeout=float(query.get("timeout_sec", ["5"])[0]))
                    body, etag = outer.value.encode(), str(outer.etag)
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/computeMetadata/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def preempt(self) -> None:
        with self.changed:
            self.value, self.etag = "TRUE", self.etag + 1
            self.changed.notify_all()

    def close(self) -> None:
        with self.changed:
            self.changed.notify_all()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    server = FakeMetadata()
    yield server
    server.close()


def test_flushes_once_when_preemption_is_announced(metadata: FakeMetadata) -> None:
    calls: list[int] = []
    watcher = PreemptionWatcher(lambda: calls.append(1), metadata.url, poll_timeout=2)
    watcher.start()
    assert not watcher.preempted.wait(0.5)  # long-polling, nothing yet
    metadata.preempt()
    assert watcher.preempted.wait(10)
    assert calls == [1]
    assert metadata.headers_ok
    assert any(q.get("wait_for_change") == ["true"] for q in metadata.requests)


def test_unreachable_metadata_server_is_retried_without_crashing() -> None:
    watcher = PreemptionWatcher(lambda: None, "http://127.0.0.1:9/computeMetadata/v1")
    watcher.start()
    assert not watcher.preempted.wait(1.5)
    assert watcher.is_alive()
    watcher.stop()


def test_preemption_pushes_the_backup(tmp_path: Path, metadata: FakeMetadata) -> None:
    import subprocess

    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    agent = HybridVMStorage(
        config=config_from_mapping(
            {
                "storage_path": str(tmp_path / "s"),
                "git": {"remote": f"file://{remote}", "branch": "backup/spot-vm"},
                "preemption": {"watch": "on", "metadata_url": metadata.url},
            }
        )
    )
    agent.initialize()
    agent.put("agents", "a1", {"alive": True})
    metadata.preempt()
    assert agent.watcher is not None and agent.watcher.preempted.wait(10)
    agent.watcher.join(10)
    shown = subprocess.run(
        ["git", "--git-dir", str(remote), "log", "-p", "backup/spot-vm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"a1"' in shown
    agent.shutdown()


def test_watch_off_and_auto_off_gce(tmp_path: Path) -> None:
    product = tmp_path / "product_name"
    product.write_text("Standard PC (Q35 + ICH9, 2009)\n")
    assert running_on_gce(product) is False
    product.write_text("Google Compute Engine\n")
    assert running_on_gce(product) is True
    agent = HybridVMStorage(storage_path=str(tmp_path / "s"), preemption={"watch": "off"})
    assert agent.watcher is None


@pytest.mark.parametrize(
    ("raw", "named"),
    [({"watch": "sometimes"}, "preemption.watch"), ({"metadata_url": "ftp://x"}, "metadata_url")],
)
def test_bad_preemption_config(raw: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config_from_mapping({"preemption": raw})
