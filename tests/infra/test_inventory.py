"""The ansibleInventory output is an inventory Ansible itself accepts."""

from __future__ import annotations

import json
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
                    name="vm-with-key",
                    project="p-123456",
                    zone="z",
                    internal_ip="10.0.0.2",
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
    name = record("hybrid").outputs["instanceName"]
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
        "spine_postgres_password_secret",
    ):
        assert var in hv, var
    assert hv["ansible_python_interpreter"] == "/usr/bin/python3"


def test_multi_line_ssh_key_survives_the_round_trip(listed: dict) -> None:
    hv = listed["_meta"]["hostvars"]["vm-with-key"]
    assert hv["spine_git_ssh_key"] == SSH_KEY
    assert hv["spine_git_remote"] == ""


def test_proxy_command_quotes_what_it_interpolates() -> None:
    args = iap_proxy_args("vm-1", "proj-1", "europe-west1-b")
    assert args.startswith(
        "-o ProxyCommand='gcloud compute start-iap-tunnel vm-1 %p --listen-on-stdin"
    )
    assert "--project=proj-1 --zone=europe-west1-b" in args
