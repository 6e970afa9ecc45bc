"""Checks that a host provisioned by the kit's playbook is what the roles promise.

Run against your own hosts (as root, or add --sudo):
    pytest tests/hosts --hosts=ssh://root@HOST --ssh-config=~/.ssh/config
    pytest tests/hosts --hosts=ansible://all --ansible-inventory=inventory.yml --sudo
Every check reads state only; nothing on the host is changed.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
import yaml
from testinfra.host import Host

from tests.hosts.conftest import Spine

# What `systemctl show` must report for the agent's unit: the sandbox is only real if systemd
# applied it, so this reads the loaded unit, not the file.
HARDENING: dict[str, str] = {
    "Type": "notify",
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "UMask": "0007",
}

# A tiny HTTP/1.0 client over the agent's unix socket, run with the host's own python3 (the
# host may have neither curl nor the agent's venv on PATH).
HEALTH_PROBE = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(b"GET /v1/health HTTP/1.0\r\nHost: spine-agent\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.write(data.decode())
"""


def show(host: Host, unit: str, *props: str) -> dict[str, str]:
    """`systemctl show -p A -p B UNIT` as a dict."""
    args = " ".join(f"-p {p}" for p in props)
    out = host.check_output(f"systemctl show {args} {shlex.quote(unit)}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def fstab_entry(host: Host, mount_point: str) -> list[str]:
    """The fstab fields of the entry for mount_point (fails when there is none)."""
    for line in host.file("/etc/fstab").content_string.splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#") and fields[1] == mount_point:
            return fields
    pytest.fail(f"/etc/fstab has no entry for {mount_point}")


def agent_status(host: Host, spine: Spine) -> dict[str, Any]:
    """`spine-agent status` as JSON: what the agent itself says about its tiers."""
    out = host.check_output(f"{spine.agent} status --config {shlex.quote(spine.config_path)}")
    return json.loads(out)


# -- the data disk --


def test_data_disk_is_mounted_ext4_from_the_by_id_device(host: Host, spine: Spine) -> None:
    mount = host.mount_point(spine.mount_point)
    assert mount.exists, f"nothing mounted at {spine.mount_point}"
    assert mount.filesystem == "ext4"
    device = host.check_output(f"readlink -f {shlex.quote(spine.disk_device)}")
    assert host.run(f"test -b {shlex.quote(device)}").rc == 0, f"{device} is no block device"
    mounted = host.check_output(f"findmnt -n -o SOURCE --mountpoint {spine.mount_point}")
    assert host.check_output(f"readlink -f {shlex.quote(mounted)}") == device


def test_fstab_mounts_the_disk_by_uuid_with_nofail(host: Host, spine: Spine) -> None:
    uuid = host.check_output(f"blkid -p -s UUID -o value {shlex.quote(spine.disk_device)}")
    source, _target, fstype, options, *_ = fstab_entry(host, spine.mount_point)
    assert source == f"UUID={uuid}"
    assert fstype == "ext4"
    opts = options.split(",")
    assert "nofail" in opts, "a missing disk must not stop the VM from booting"
    assert "discard" in opts
    assert any(o.startswith("x-systemd.device-timeout=") for o in opts)


def test_mount_point_belongs_to_the_agent_user(host: Host, spine: Spine) -> None:
    root = host.file(spine.mount_point)
    assert root.user == spine.user
    assert root.group == spine.group
    assert root.mode == 0o750


# -- the agent --


def test_agent_user_is_a_system_user_without_login_shell(host: Host, spine: Spine) -> None:
    user = host.user(spine.user)
    assert user.exists
    assert user.shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")
    assert user.uid < 1000, "expected a system account"


def test_agent_is_installed_in_its_venv(host: Host, spine: Spine) -> None:
    assert host.file(spine.agent).is_file
    assert host.file(spine.agent).mode & 0o111


def test_agent_service_is_enabled_and_running(host: Host, spine: Spine) -> None:
    service = host.service(spine.unit)
    assert service.is_enabled
    assert service.is_running


def test_agent_socket_exists_with_its_mode(host: Host, spine: Spine) -> None:
    sock = host.file(spine.socket)
    assert sock.is_socket
    assert sock.mode == 0o660
    assert sock.group == spine.group


def test_agent_health_answers_on_the_socket(host: Host, spine: Spine) -> None:
    cmd = f"python3 -c {shlex.quote(HEALTH_PROBE)} {shlex.quote(spine.socket)}"
    reply = host.check_output(cmd)
    assert reply.startswith("HTTP/1.1 200") or reply.startswith("HTTP/1.0 200"), reply
    assert json.loads(reply.split("\r\n\r\n", 1)[1]) == {"status": "ok"}


def test_agent_status_shows_the_tiers(host: Host, spine: Spine) -> None:
    status = agent_status(host, spine)
    assert set(status["tiers"]) >= {"memory", "files", "git"}
    assert status["storage_path"] == spine.mount_point


def test_git_backup_is_configured(host: Host, spine: Spine) -> None:
    config = yaml.safe_load(host.file(spine.config_path).content_string)
    assert isinstance(config.get("git"), dict), "agent.yaml has no git section"
    assert host.file(f"{spine.backup_repo}/HEAD").is_file, "the local backup repository is missing"
    git = agent_status(host, spine)["tiers"]["git"]
    if spine.git_remote:
        assert config["git"].get("remote") == spine.git_remote
        assert git["remote"], "the agent reports no backup remote"


# -- the unit's sandbox and shutdown --


@pytest.fixture(scope="module")
def unit_props(host: Host, spine: Spine) -> dict[str, str]:
    """All hardening properties in one `systemctl show` (one round trip, not twenty)."""
    return show(host, spine.unit, *HARDENING)


@pytest.mark.parametrize(("prop", "expected"), sorted(HARDENING.items()))
def test_unit_hardening_is_in_effect(unit_props: dict[str, str], prop: str, expected: str) -> None:
    actual = unit_props.get(prop, "<missing>")
    # systemd prints lists in its own order (RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX)
    assert sorted(actual.split()) == sorted(expected.split()), f"{prop}={actual}"


def test_unit_writes_only_to_the_data_path(host: Host, spine: Spine) -> None:
    props = show(host, spine.unit, "ReadWritePaths", "User", "RequiresMountsFor")
    assert props["ReadWritePaths"].split() == [spine.mount_point]
    assert props["User"] == spine.user
    assert spine.mount_point in props["RequiresMountsFor"].split()


def timespan_seconds(text: str) -> float:
    """Seconds from a systemd time span as `systemctl show` prints it ("28s", "1min 30s")."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for token in text.split():
        number = token.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(number) * units[token[len(number):] or "s"]
    return total


def test_unit_stops_within_the_preemption_window(host: Host, spine: Spine) -> None:
    timeout = timespan_seconds(show(host, spine.unit, "TimeoutStopUSec")["TimeoutStopUSec"])
    assert spine.stop_budget_s < timeout <= 30, "TimeoutStopSec: above the stop budget, within 30 s"


def test_no_second_shutdown_flush_races_the_agents_own(host: Host) -> None:
    """The agent flushes on SIGTERM; an extra flush unit would share GCE's 30 s with it."""
    assert not host.file("/etc/systemd/system/super-spine-shutdown.service").exists
    assert not host.file("/usr/local/sbin/super-spine-shutdown").exists


def test_health_port_answers_while_the_agent_serves(host: Host, spine: Spine) -> None:
    """What the instance group's TCP health check reads (spine-health.socket)."""
    assert host.socket(f"tcp://{spine.health_port}").is_listening
    answer = host.check_output(f"nc -w 10 127.0.0.1 {spine.health_port} </dev/null")
    assert answer == "healthy"
    props = show(host, "spine-health.socket", "BindsTo")
    assert spine.unit in props["BindsTo"].split()


# -- secrets --


def test_no_secret_is_world_readable(host: Host, spine: Spine) -> None:
    exposed = host.check_output(
        f"find {shlex.quote(spine.config_dir)} {shlex.quote(spine.mount_point)} -xdev "
        "! -type l -perm /o=rwx -print"
    )
    assert exposed == "", f"world-accessible: {exposed}"
    for name in ("git-ssh-key", "git-token"):
        secret = host.file(f"{spine.config_dir}/{name}")
        if secret.exists:
            assert secret.user == spine.user
            assert secret.mode == 0o600
    config = host.file(spine.config_path)
    assert config.user == "root" and config.group == spine.group and config.mode == 0o640
    remote = yaml.safe_load(config.content_string).get("git", {}).get("remote") or ""
    assert "@" not in remote.split("//", 1)[-1].split("/", 1)[0] or remote.startswith("ssh://"), (
        "credentials in the git remote URL"
    )


# -- the operator's command line and the PostgreSQL tier --


def test_spine_agent_is_on_the_path_and_finds_its_config(host: Host, spine: Spine) -> None:
    """What an operator who SSHes in types: no venv path, no --config."""
    out = host.check_output("env -i PATH=/usr/local/bin:/usr/bin:/bin spine-agent status")
    assert json.loads(out)["storage_path"] == spine.mount_point


def test_a_postgres_tier_verifies_the_server_and_holds_no_password(
    host: Host, spine: Spine
) -> None:
    config = yaml.safe_load(host.file(spine.config_path).content_string)
    postgres = config.get("postgres")
    if postgres is None:  # compute: no tier, and nothing left of one
        assert not host.file(f"{spine.config_dir}/postgres-ca.pem").exists
        return
    dsn = dict(part.split("=", 1) for part in postgres["dsn"].split())
    assert dsn["sslmode"] in ("verify-ca", "verify-full")
    assert host.file(dsn["sslrootcert"]).is_file
    assert "password" not in postgres["dsn"] and "password_file" not in postgres
    assert postgres["auth"] == "iam"
    unit = "/etc/systemd/system/spine-agent.service"
    leaked = host.run(f"grep -rlis password {shlex.quote(spine.config_dir)} {unit}")
    assert leaked.stdout.strip() == "", leaked.stdout
