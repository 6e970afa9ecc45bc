"""Dangerous configs through the real `spine-agent run` (issue 7, items 11, 15, 16): each exits 2
with one short line on stderr, touches nothing, and the alias bomb is refused small.

The bomb's resource use is read from the child's own rusage (os.wait4), so the figure is the
refusal's peak RSS, not the test process's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap.config import MAX_ERROR_CHARS
from tests.unit.test_config import alias_bomb

from .conftest import SPINE_AGENT, clean_env
from .test_cli import cli, one_line

PREFIX = "spine-agent: "
# argv[1:] is the command; prints "<exit code> <peak RSS KiB>" on its first stdout line, then
# the command's own stdout (read after it exits, from a pipe it keeps).
PEAK_RSS_LAUNCHER = """
import os, sys
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.dup2(write_end, 1)
    os.execv(sys.argv[1], sys.argv[1:])
os.close(write_end)
_, status, usage = os.wait4(pid, 0)
out = os.read(read_end, 1 << 20)
sys.stdout.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}\\n")
sys.stdout.write(out.decode(errors="replace"))
"""
HTTPS_REMOTE = "https://git.example.com/org/backup.git"

# id: (YAML after storage_path, what the one line must contain)
DANGEROUS: dict[str, tuple[str, str]] = {
    "deep-nesting": ("memory_limit: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested deeper"),
    "nan-duration": ("tiering:\n  hot_age: .nan\n", "tiering.hot_age=nan"),
    "inf-stop-budget": ("stop_budget: .inf\n", "stop_budget=inf"),
    "absurd-duration": ("git:\n  push_retry_max: 100000d\n", "git.push_retry_max='100000d'"),
    "absurd-size": ("memory_limit: 2000GB\n", "memory_limit='2000GB'"),
    "bool-tcp-port": ("api:\n  tcp_port: true\n", "api.tcp_port=True"),
    "bool-socket-mode": ("api:\n  socket_mode: false\n", "api.socket_mode=False"),
    "huge-integer": ("memory_limit: " + "9" * 5000 + "\n", "not valid YAML"),
    "huge-value": ("log_level: " + "x" * 30_000 + "\n", "log_level='xxx"),
    "oversized-file": ("#" + "x" * 70_000 + "\n", "larger than 64 KiB"),
    "bad-url": ("git:\n  remote: 'https://[::1/x.git'\n", "not a valid URL"),
    "unknown-tier": ("routes:\n  critical: [files, s3]\n", "unknown tier 's3'"),
    "cache-to-files": ("routes:\n  cache: [files]\n", "routes.cache=['files']"),
    "git-before-files": ("routes:\n  critical: [git, files]\n", "list files before git"),
}


def run_agent(workdir: Path, body: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    storage = workdir / "storage"
    config = workdir / "agent.yaml"
    config.write_text(f"storage_path: {storage}\n{body}")
    return cli("run", config=config), storage


def assert_refused(proc: subprocess.CompletedProcess[str], storage: Path, needle: str) -> str:
    assert proc.returncode == 2, proc
    line = one_line(proc.stderr)
    assert line.startswith(PREFIX) and len(line) <= len(PREFIX) + MAX_ERROR_CHARS, line
    assert needle in line, line
    assert proc.stdout == ""
    assert not storage.exists(), "a refused config must not touch the storage path"
    return line


@pytest.mark.parametrize("case", sorted(DANGEROUS))
def test_a_dangerous_config_exits_2_with_one_short_line(workdir: Path, case: str) -> None:
    body, needle = DANGEROUS[case]
    proc, storage = run_agent(workdir, body)
    assert_refused(proc, storage, needle)


def test_the_alias_bomb_is_refused_small(workdir: Path) -> None:
    """Before the fix: 1.7 GB and up to 19 s, then a 580 MB line. Memory is bounded here; the
    time is printed for the report, not asserted (the machine is shared)."""
    storage = workdir / "storage"
    config = workdir / "bomb.yaml"
    config.write_text(f"storage_path: {storage}\n{alias_bomb()}")
    started = time.monotonic()
    # A small launcher forks the agent and reads its peak RSS: the agent's own rusage taken
    # from here would include this (large, long-lived) pytest process copied into the fork.
    child = subprocess.Popen(
        [sys.executable, "-c", PEAK_RSS_LAUNCHER, SPINE_AGENT, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    stdout, stderr = child.communicate(timeout=120)
    status_line, _, stdout = stdout.partition("\n")
    exit_code, peak_kb = (int(part) for part in status_line.split())
    elapsed = time.monotonic() - started
    proc = subprocess.CompletedProcess(child.args, exit_code, stdout, stderr)
    assert_refused(proc, storage, "anchors and aliases are not allowed")
    peak_mb = peak_kb / 1024
    print(f"alias bomb refused: {elapsed:.2f}s wall, {peak_mb:.0f} MB peak RSS")
    assert peak_mb < 150, f"refusing the bomb took {peak_mb:.0f} MB"


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("SUPER_SPINE_STOP_BUDGET", "99999999d", "stop_budget='99999999d'"),
        ("SUPER_SPINE_API__TCP_PORT", "true", "api.tcp_port='true'"),
        ("SUPER_SPINE_GIT__BRANCH", "b" * 10_000, "longer than 4096"),
    ],
)
def test_environment_overrides_are_bounded_too(
    workdir: Path, name: str, value: str, needle: str
) -> None:
    storage = workdir / "storage"
    proc = cli("run", env={"SUPER_SPINE_STORAGE_PATH": str(storage), name: value})
    assert_refused(proc, storage, needle)


def write_secret(workdir: Path, name: str, mode: int) -> Path:
    path = workdir / name
    path.write_text("s3cr3t-token\n")
    path.chmod(mode)
    return path


def test_a_token_with_an_http_remote_is_refused(workdir: Path) -> None:
    token = write_secret(workdir, "token", 0o600)
    body = f"git:\n  remote: http://git.example.com/b.git\n  token_file: {token}\n"
    proc, storage = run_agent(workdir, body)
    line = assert_refused(proc, storage, "git.remote='http://git.example.com/b.git'")
    assert "only to an https:// remote" in line and "s3cr3t" not in line


@pytest.mark.parametrize("key", ["token_file", "ssh_key_file"])
def test_a_credential_file_readable_by_others_is_refused(workdir: Path, key: str) -> None:
    secret = write_secret(workdir, key, 0o644)
    proc, storage = run_agent(workdir, f"git:\n  remote: {HTTPS_REMOTE}\n  {key}: {secret}\n")
    line = assert_refused(proc, storage, f"git.{key}=")
    assert "mode 0644" in line and "s3cr3t" not in line
