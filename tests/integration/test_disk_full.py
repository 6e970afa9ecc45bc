"""A full disk under the real agent: a small tmpfs or loop-device ext4 mounted as the storage
path (needs root). Writes get a clear 507, reads keep being served, and nothing acknowledged is
lost once space is freed."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import AgentFactory

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a filesystem needs root")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["tmpfs", "ext4-loop"])
def small_fs(request: pytest.FixtureRequest, workdir: Path, agents: AgentFactory) -> Iterator[Path]:
    mount_point = workdir / "mnt"
    mount_point.mkdir()
    if request.param == "tmpfs":
        _run("mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(mount_point))
    else:
        image = workdir / "disk.img"
        with open(image, "wb") as handle:
            handle.truncate(4 * 1024 * 1024)
        _run("mkfs.ext4", "-q", "-F", str(image))
        _run("mount", "-o", "loop", str(image), str(mount_point))
    try:
        yield mount_point
    finally:
        agents.cleanup()  # nothing may hold the filesystem open
        for _ in range(50):
            if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
        assert not os.path.ismount(mount_point)


def _fill(path: Path) -> int:
    """Write until the filesystem refuses, down to single bytes; return the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            block = b"\xff" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
                written += n
                if n < chunk:
                    break
        try:
            os.fsync(fd)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return written


def test_full_disk_gives_507_keeps_reads_and_loses_nothing(
    small_fs: Path, agents: AgentFactory
) -> None:
    agent = agents.new(storage=small_fs / "storage").start()
    client = agent.client()
    acked: dict[tuple[str, str], Any] = {}

    def put(collection: str, key: str, value: Any) -> int:
        reply = client.put(collection, key, value)
        if reply.status == 200:
            acked[(collection, key)] = value
        return reply.status

    for i in range(20):
        assert put("agents", f"early-{i}", {"i": i, "pad": "e" * 200}) == 200
        assert put("stats", f"early-{i}", {"i": i}) == 200

    filler = small_fs / "filler"
    assert _fill(filler) > 0

    # Puts may still fit in the journal's last partly used block; then the disk says no.
    refusal = None
    for i in range(2000):
        reply = client.put("agents", f"full-{i}", {"i": i, "pad": "f" * 500})
        if reply.status == 200:
            acked[("agents", f"full-{i}")] = {"i": i, "pad": "f" * 500}
            continue
        refusal = reply
        break
    assert refusal is not None, "the full disk never refused a write"
    assert refusal.status == 507, refusal.body
    assert refusal.headers["content-type"] == "application/json"
    error = refusal.json()["error"]
    assert "no space" in error.lower() or "disk full" in error.lower(), error
    refused_key = f"full-{i}"

    # A session put needs the disk too; a cache put does not.
    # (bigger than the refused put, so it cannot fit in whatever that one left over)
    session = client.put("stats", "while-full", {"x": "s" * 1000})
    assert session.status == 507 and "error" in session.json()
    assert client.put("cache", "while-full", {"x": 1}).status == 200

    # Reads, status and metrics are still served, and the refused writes are absent.
    assert client.request("GET", "/v1/health").status == 200
    for (collection, key), value in acked.items():
        reply = client.get(collection, key)
        assert reply.status == 200 and reply.json() == value
    assert client.get("agents", refused_key).status == 404
    assert client.get("stats", "while-full").status == 404
    status = client.status()
    assert status["records"] == len(acked) + 1  # + the cache record
    metrics = client.request("GET", "/metrics").body.decode()
    assert "spine_put_errors_total 0.0" not in metrics

    # A tiering pass cannot write the warm files: a clear error, and nothing dropped.
    tier = client.post("tier")
    assert tier.status == 507, tier.body
    assert "error" in tier.json()
    for (collection, key), value in acked.items():
        assert client.get(collection, key).json() == value
    client.close()

    # The worst case: the agent dies while the disk is full. Free space, start again.
    agent.kill9()
    filler.unlink()
    agent.start()
    client = agent.client()
    assert client.records("agents") == {k: v for (c, k), v in acked.items() if c == "agents"}
    assert client.records("stats") == {k: v for (c, k), v in acked.items() if c == "stats"}
    assert put("agents", "after", {"room": True}) == 200
    client.close()
    assert agent.stop() == 0

    agent.start()
    client = agent.client()
    assert client.records("agents") == {k: v for (c, k), v in acked.items() if c == "agents"}
    assert client.records("stats") == {k: v for (c, k), v in acked.items() if c == "stats"}
    assert agent.stop() == 0


@pytest.mark.parametrize("small_fs", ["tmpfs"], indirect=True)
def test_writes_resume_without_restart_once_space_is_freed(
    small_fs: Path, agents: AgentFactory
) -> None:
    agent = agents.new(storage=small_fs / "storage").start()
    client = agent.client()
    assert client.put("agents", "a", {"n": 1}).status == 200
    filler = small_fs / "filler"
    _fill(filler)
    statuses = [client.put("agents", f"b{i}", {"pad": "p" * 500}).status for i in range(2000)]
    assert 507 in statuses
    first_refusal = statuses.index(507)
    acked = {f"b{i}" for i, s in enumerate(statuses) if s == 200}
    assert all(s == 200 for s in statuses[:first_refusal])

    filler.unlink()
    assert client.put("agents", "c", {"n": 3}).status == 200
    assert client.post("tier").status == 200
    client.close()
    assert agent.stop() == 0
    agent.start()
    records = agent.client().records("agents")
    assert records["a"] == {"n": 1} and records["c"] == {"n": 3}
    assert {k for k in records if k.startswith("b")} == acked
    agent.assert_clean_logs()
    assert agent.stop() == 0
