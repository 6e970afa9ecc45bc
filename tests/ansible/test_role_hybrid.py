"""The spine_agent role's hybrid wiring, rendered and run here (no VM): the postgres section the
agent gets from the Pulumi variables, and the operators' `spine-agent` on the PATH.

The lab case (tests/ansible/test_hybrid_lab.py) runs the same role on a VM against a real
PostgreSQL; these are the fast checks of the same files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from bootstrap.tiers.pg_config import parse_postgres_config
from infra import scripts
from infra.offline import MOCK_CA_CERT

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "spine_agent"


def _role_defaults() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment()
    for _ in range(3):
        for name, value in values.items():
            if isinstance(value, str) and "{{" in value:
                values[name] = env.from_string(value).render(**values)
    return values


def _render(path: Path, variables: dict[str, Any]) -> str:
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: f"# {text}"
    return env.from_string(path.read_text()).render(**variables)


def _hybrid_vars(ca_file: Path) -> dict[str, Any]:
    """What the Pulumi hybrid stack hands the role (scripts.postgres_vars), over its defaults."""
    postgres = scripts.postgres_vars(
        host="10.99.0.3",
        database="superspine",
        user="ssk-dev-vm@acme-spine-1.iam",
        ca_cert=MOCK_CA_CERT,
        connection_name="acme-spine-1:europe-west1:ssk-dev-sql-pg",
    )
    return {
        **_role_defaults(),
        **scripts.role_vars(None, postgres),
        "spine_postgres_ca_file": str(ca_file),
        "spine_git_ssh_key_file": "",
        "spine_git_token_file": "",
    }


def test_every_postgres_variable_pulumi_sets_is_a_documented_role_option() -> None:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    postgres = scripts.postgres_vars(
        host="h", database="d", user="u", ca_cert="c", connection_name="n"
    )
    assert set(postgres) <= set(options)
    defaults = _role_defaults()
    assert set(postgres) <= set(defaults)


def test_the_hybrid_vm_gets_a_postgres_section_the_agent_accepts(tmp_path: Path) -> None:
    ca = tmp_path / "postgres-ca.pem"
    ca.write_text(MOCK_CA_CERT)
    rendered = yaml.safe_load(_render(REPO / "templates" / "agent.yaml.j2", _hybrid_vars(ca)))
    section = rendered["postgres"]
    config = parse_postgres_config(section, tmp_path)
    assert config.auth == "iam" and config.write == "async" and config.password_file is None
    assert "host=10.99.0.3" in config.dsn and "sslmode=verify-ca" in config.dsn
    assert f"sslrootcert={ca}" in config.dsn and "user=ssk-dev-vm@acme-spine-1.iam" in config.dsn
    assert "password" not in yaml.safe_dump(rendered)


def test_without_a_host_there_is_no_postgres_section(tmp_path: Path) -> None:
    variables = {**_role_defaults(), "spine_git_ssh_key_file": "", "spine_git_token_file": ""}
    rendered = yaml.safe_load(_render(REPO / "templates" / "agent.yaml.j2", variables))
    assert "postgres" not in rendered


# -- the operators' spine-agent ----------------------------------------------------------------
# The wrapper's whole job is to set SUPER_SPINE_CONFIG and switch to the agent's user. Here the
# venv's spine-agent is a two-line stand-in that reports both (this machine's venv is not
# readable by another user); the lab VM runs the real one (`spine-agent status` over ssh).
STAND_IN = """#!/bin/sh
echo "user=$(id -un) config=$SUPER_SPINE_CONFIG args=$*"
"""


@pytest.fixture
def cli(tmp_path: Path) -> Path:
    """The wrapper as the role renders it, for the agent's user `nobody`."""
    assert os.geteuid() == 0, "these checks switch users, as the wrapper does on a VM"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "spine-agent").write_text(STAND_IN)
    (venv / "bin" / "spine-agent").chmod(0o755)
    variables = {
        "spine_config_path": "/etc/super-spine/agent.yaml",
        "spine_venv_dir": str(venv),
        "spine_user": "nobody",
        "ansible_managed": "test",
    }
    path = tmp_path / "spine-agent"
    path.write_text(_render(ROLE / "templates" / "spine-agent-cli.sh.j2", variables))
    path.chmod(0o755)
    for directory in (tmp_path, *tmp_path.parents):
        if directory == Path("/tmp"):
            break
        directory.chmod(directory.stat().st_mode | 0o711)
    return path


def test_root_runs_spine_agent_as_the_agents_user_with_its_config(cli: Path) -> None:
    done = subprocess.run([str(cli), "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "user=nobody config=/etc/super-spine/agent.yaml args=status"


def test_root_with_a_path_without_sbin_still_switches_user(cli: Path) -> None:
    """An operator's PATH may lack /usr/sbin (where runuser lives): the lab's host check met
    `runuser: not found` with PATH=/usr/local/bin:/usr/bin:/bin."""
    done = subprocess.run([str(cli), "status"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "user=nobody config=/etc/super-spine/agent.yaml args=status"


def test_an_explicit_config_is_kept(cli: Path) -> None:
    env = {**os.environ, "SUPER_SPINE_CONFIG": "/srv/other.yaml"}
    done = subprocess.run([str(cli), "get", "a", "b"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.stdout.strip() == "user=nobody config=/srv/other.yaml args=get a b"


def test_a_user_without_sudo_is_told_what_to_do(cli: Path) -> None:
    """`daemon` has no sudo rights: one line, exit 2."""
    done = subprocess.run(["runuser", "-u", "daemon", "--", str(cli), "status"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "spine-agent: run it as root or with sudo (it runs as nobody, who reads "
        "/etc/super-spine/agent.yaml)"
    )
