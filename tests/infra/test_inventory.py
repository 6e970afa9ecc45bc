"""The ansibleInventory output is an inventory Ansible itself accepts."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from infra.inventory import HostSpec, iap_proxy_args, render_inventory
from tests.infra.conftest import record

ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\ndef\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`ansible-inventory --list` over two inventories at once (Ansible starts slowly)."""
    tmp = tmp_path_factory.mktemp("inventory")
    hybrid = tmp / "hybrid.yml"
    hybrid.write_text(record("hybrid").outputs["ansibleInventory"])
    keyed = tmp / "keyed.yml"
    keyed.write_text(
        render_inventory(
            [
                HostSpec(
                    group="group-with-key",
                    project="p-123456",
                    zone="z",
                    ssh_user="u",
                    git_ssh_key=SSH_KEY,
                )
            ]
        )
    )
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(hybrid), "-i", str(keyed), "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
            "ANSIBLE_INVENTORY_ENABLED": "yaml",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp),
        },
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_hybrid_inventory_output_is_accepted_by_ansible(listed: dict) -> None:
    name = record("hybrid").outputs["instanceGroup"]
    assert name in listed["super_spine"]["hosts"]
    hv = listed["_meta"]["hostvars"][name]
    for var in (
        "ansible_host",
        "ansible_user",
        "ansible_ssh_common_args",
        "spine_disk_device",
        "spine_mount_point",
        "spine_git_remote",
        "spine_postgres_host",
        "spine_postgres_user",
        "spine_postgres_ca_cert",
    ):
        assert var in hv, var
    assert hv["ansible_python_interpreter"] == "/usr/bin/python3"
    # There is no password to carry: the VM's agent logs in with its metadata-server token.
    assert not [var for var in hv if "password" in var]


def test_multi_line_ssh_key_survives_the_round_trip(listed: dict) -> None:
    hv = listed["_meta"]["hostvars"]["group-with-key"]
    assert hv["spine_git_ssh_key"] == SSH_KEY
    assert hv["spine_git_remote"] == ""


def test_proxy_command_quotes_what_it_interpolates() -> None:
    args = iap_proxy_args("group 1", "proj-1", "europe-west1-b")
    assert "list-instances 'group 1' --project=proj-1 --zone=europe-west1-b" in args
    assert "--project=proj-1 --zone=europe-west1-b --verbosity=warning" in args


def _ssh_options(args: str) -> dict[str, str]:
    """What OpenSSH makes of the options (ssh -G parses them and prints its config)."""
    result = subprocess.run(
        ["ssh", "-G", *shlex.split(args), "any-host"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)


def test_ssh_accepts_the_options_and_pins_no_host_key() -> None:
    """A recreated VM has new host keys: a pinned one (even accept-new) would refuse it."""
    options = _ssh_options(iap_proxy_args("ssk-dev-vm-group-x", "proj-1", "europe-west1-b"))
    assert options["stricthostkeychecking"] == "false"
    assert options["userknownhostsfile"] == "/dev/null"
    assert options["proxycommand"].startswith("gcloud compute start-iap-tunnel $(gcloud ")


def test_the_proxy_command_is_valid_shell_that_finds_the_groups_vm() -> None:
    """ssh runs ProxyCommand with the shell: the lookup of the current VM must parse."""
    args = iap_proxy_args("ssk-dev-vm-group-x", "proj-1", "europe-west1-b")
    command = _ssh_options(args)["proxycommand"].replace("%p", "22")
    parsed = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True,
                            check=False)
    assert parsed.returncode == 0, parsed.stderr
    assert "--format='value(name)' --limit=1" in command
