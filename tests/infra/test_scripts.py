"""The GCE startup/shutdown scripts, rendered from templates/, pass shellcheck and behave."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from infra import scripts

SHELLCHECK = "/usr/bin/shellcheck"  # Debian's package; scripts/setup.sh installs it

RENDERED = {
    "startup-with-remote": lambda: scripts.startup_script("https://github.com/acme/state.git"),
    "startup-without-remote": lambda: scripts.startup_script(None),
    "shutdown": scripts.shutdown_script,
}


@pytest.mark.parametrize("name", RENDERED)
def test_rendered_script_passes_shellcheck(name: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.sh"
    script.write_text(RENDERED[name]())
    result = subprocess.run(
        [SHELLCHECK, "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _agent_yaml(startup: str) -> dict:
    match = re.search(r"<<'SUPER_SPINE_AGENT_YAML'\n(.*?)SUPER_SPINE_AGENT_YAML\n", startup, re.S)
    assert match, "the startup script embeds agent.yaml in a quoted heredoc"
    return yaml.safe_load(match.group(1))


def test_startup_embeds_the_agent_config_from_the_shared_template() -> None:
    config = _agent_yaml(scripts.startup_script("https://github.com/acme/state.git"))
    assert config["storage_path"] == "/data/super-spine"
    assert config["stop_budget"] == "25s"
    assert config["git"]["remote"] == "https://github.com/acme/state.git"
    assert "remote" not in _agent_yaml(scripts.startup_script(None))["git"]


def test_startup_never_formats_and_uses_the_contract_paths() -> None:
    startup = scripts.startup_script(None)
    assert "mkfs" not in startup and "wipefs" not in startup
    assert "device=/dev/disk/by-id/google-super-spine-disk" in startup
    assert "mount_point=/data/super-spine" in startup
    assert "agent=/opt/super-spine/venv/bin/spine-agent" in startup


def test_shutdown_asks_the_agent_to_flush_within_gces_budget() -> None:
    shutdown = scripts.shutdown_script()
    assert 'timeout 25 "$agent" flush --config "$config"' in shutdown
    assert "config=/etc/super-spine/agent.yaml" in shutdown


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.sh"
    path.write_text(script)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    # A stand-in `logger`: the real one may be absent in containers; output goes to stdout.
    (tmp_path / "logger").write_text(
        '#!/bin/sh\nshift 2; [ "$1" = "--" ] && shift; echo "logger: $*"\n'
    )
    (tmp_path / "logger").chmod(0o755)
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, check=False)


def test_startup_gives_up_quietly_when_the_disk_is_missing(tmp_path: Path) -> None:
    script = scripts.render(
        "gce-startup.sh.j2",
        {
            "spine_disk_device": str(tmp_path / "no-such-disk"),
            "spine_mount_point": str(tmp_path / "mnt"),
            "spine_disk_label": "super-spine",
            "spine_mount_options": "defaults",
            "spine_disk_wait_timeout": 0,
            "spine_agent_bin": str(tmp_path / "spine-agent"),
            "spine_config_path": str(tmp_path / "agent.yaml"),
            "spine_agent_yaml": "storage_path: /x\n",
        },
    )
    result = _run(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "did not appear within 0s; nothing to mount" in result.stdout


def test_shutdown_without_an_agent_exits_cleanly(tmp_path: Path) -> None:
    script = scripts.render(
        "gce-shutdown.sh.j2",
        {
            "spine_agent_bin": str(tmp_path / "absent"),
            "spine_config_path": "/x",
            "spine_flush_timeout": 1,
        },
    )
    result = _run(script, tmp_path)
    assert result.returncode == 0 and "nothing to flush" in result.stdout


def test_shutdown_runs_flush_with_the_config(tmp_path: Path) -> None:
    agent = tmp_path / "spine-agent"
    agent.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/called\n')
    agent.chmod(0o755)
    script = scripts.render(
        "gce-shutdown.sh.j2",
        {
            "spine_agent_bin": str(agent),
            "spine_config_path": "/etc/x.yaml",
            "spine_flush_timeout": 5,
        },
    )
    result = _run(script, tmp_path)
    assert result.returncode == 0 and "flushed before shutdown" in result.stdout
    assert (tmp_path / "called").read_text().strip() == "flush --config /etc/x.yaml"


def test_unknown_template_variables_are_errors() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        scripts.render("gce-startup.sh.j2", {})
