"""Render the GCE startup and shutdown scripts from the shared Jinja2 templates.

The templates live in `templates/` because Ansible renders the same files (agent.yaml) with
the same variable names (docs/contracts.md); infra/ and ansible/ meet there and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

# Paths on the VM: docs/contracts.md.
DISK_DEVICE_NAME = "super-spine-disk"
DISK_DEVICE = f"/dev/disk/by-id/google-{DISK_DEVICE_NAME}"
MOUNT_POINT = "/data/super-spine"
AGENT_BIN = "/opt/super-spine/venv/bin/spine-agent"
AGENT_CONFIG = "/etc/super-spine/agent.yaml"
DISK_LABEL = "super-spine"
MOUNT_OPTIONS = "discard,defaults,nofail,x-systemd.device-timeout=10s"
STOP_BUDGET = "25s"
# GCE gives a Spot VM about 30 s between the preemption notice and power-off.
FLUSH_TIMEOUT_S = 25


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,  # as Ansible's template module does, so both render alike
        autoescape=False,  # shell and YAML, not HTML
    )


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Render one template; an unknown variable is an error, not an empty string."""
    return _environment().get_template(template).render(**variables)


def agent_config(git_remote: str | None) -> str:
    """agent.yaml for a VM; the remote is left out when it is a secret (metadata is not)."""
    variables: dict[str, Any] = {
        "spine_storage_path": MOUNT_POINT,
        "spine_stop_budget": STOP_BUDGET,
    }
    if git_remote:
        variables["spine_git_remote"] = git_remote
    return render("agent.yaml.j2", variables)


def startup_script(git_remote: str | None) -> str:
    """Boot-time script: re-mount an existing data disk (never format) and start the agent."""
    return render(
        "gce-startup.sh.j2",
        {
            "spine_disk_device": DISK_DEVICE,
            "spine_mount_point": MOUNT_POINT,
            "spine_disk_label": DISK_LABEL,
            "spine_mount_options": MOUNT_OPTIONS,
            "spine_disk_wait_timeout": 60,
            "spine_agent_bin": AGENT_BIN,
            "spine_config_path": AGENT_CONFIG,
            "spine_agent_yaml": agent_config(git_remote),
        },
    )


def shutdown_script() -> str:
    """Stop/preemption script: ask the agent to flush within GCE's ~30 s."""
    return render(
        "gce-shutdown.sh.j2",
        {
            "spine_flush_timeout": FLUSH_TIMEOUT_S,
            "spine_agent_bin": AGENT_BIN,
            "spine_config_path": AGENT_CONFIG,
        },
    )
