"""The ansibleInventory output is an inventory Ansible itself accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from infra.inventory import HostSpec, iap_proxy_args, render_inventory
from tests.infra.conftest import record

ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")


def _ansible_list(inventory: str, tmp_path: Path) -> dict:
    path = tmp_path / "inventory.yml"
    path.write_text(inventory)
    result = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=False,
        env={
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_hybrid_inventory_output_is_accepted_by_ansible(tmp_path: Path) -> None:
    recording = record("hybrid")
    listed = _ansible_list(recording.outputs["ansibleInventory"], tmp_path)
    name = recording.outputs["instanceName"]
    assert listed["super_spine"]["hosts"] == [name]
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


def test_proxy_command_quotes_what_it_interpolates() -> None:
    args = iap_proxy_args("vm-1", "proj-1", "europe-west1-b")
    assert args.startswith(
        "-o ProxyCommand='gcloud compute start-iap-tunnel vm-1 %p --listen-on-stdin"
    )
    assert "--project=proj-1 --zone=europe-west1-b" in args


def test_multi_line_ssh_key_survives_the_round_trip(tmp_path: Path) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\ndef\n-----END OPENSSH PRIVATE KEY-----\n"
    inventory = render_inventory(
        [
            HostSpec(
                name="vm",
                project="p-123456",
                zone="z",
                internal_ip="10.0.0.2",
                ssh_user="u",
                git_ssh_key=key,
            )
        ]
    )
    hv = _ansible_list(inventory, tmp_path)["_meta"]["hostvars"]["vm"]
    assert hv["spine_git_ssh_key"] == key
    assert hv["spine_git_remote"] == ""
