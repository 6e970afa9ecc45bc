"""What the roles install, read from their files (no VM): one shutdown flush, a health port
bound to the agent, and a self-provisioning path that builds nothing on the VM."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "spine_agent"


def _tasks(name: str) -> list[dict]:
    return yaml.safe_load((ROLE / "tasks" / name).read_text())


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ROLE / "templates" / name).read_text())
    return parser


def test_no_unit_or_hook_runs_a_second_flush_at_shutdown() -> None:
    """The agent flushes on SIGTERM; a second flush shared GCE's 30 s with it (defect 10)."""
    for template in (ROLE / "templates").iterdir():
        assert "ExecStop" not in template.read_text(), template.name
        assert "flush" not in template.read_text(), template.name
    removal = next(t for t in _tasks("health.yml") if "Remove the shutdown hook" in t["name"])
    assert removal["ansible.builtin.file"]["state"] == "absent"
    assert "/etc/systemd/system/super-spine-shutdown.service" in removal["loop"]


def test_the_health_socket_lives_and_dies_with_the_agent() -> None:
    socket = _unit("spine-health.socket.j2")
    assert socket["Unit"]["BindsTo"] == "spine-agent.service"
    assert socket["Socket"]["Accept"] == "yes"
    assert socket["Install"]["WantedBy"] == "spine-agent.service"
    probe = _unit("spine-health@.service.j2")["Service"]
    assert "/v1/health" in probe["ExecStart"] and "echo healthy" in probe["ExecStart"]
    assert probe["User"] == "{{ spine_user }}" and probe["StandardOutput"] == "socket"


def test_a_prebuilt_wheelhouse_skips_the_build_on_the_control_machine() -> None:
    main = _tasks("main.yml")
    build = next(t for t in main if t.get("ansible.builtin.import_tasks") == "wheels.yml")
    assert build["when"] == "spine_wheelhouse_prebuilt | length == 0"
    prebuilt = next(t for t in main if "Use the prebuilt archive" in t["name"])
    assert prebuilt["ansible.builtin.set_fact"]["_spine_agent_archive"] == (
        "{{ spine_wheelhouse_prebuilt }}"
    )
