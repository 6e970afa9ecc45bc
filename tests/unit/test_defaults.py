"""Every default has one source, bootstrap.config.DEFAULTS; the copies that must exist elsewhere
(the config template, the Ansible role, the Pulumi startup script, the docs' tables and the
library's keyword arguments) are held to it here by rendering or parsing them for real."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from bootstrap.config import DEFAULTS, AgentConfig, config_from_mapping
from bootstrap.lifecycle import HybridVMStorage
from infra import scripts

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "ansible" / "roles" / "spine_agent"
TEMPLATES = REPO / "templates"
# Where the role or template may legitimately differ from DEFAULTS: dotted key -> why. None
# today: the role's storage path is the data disk's mount point, which is the agent's default.
ROLE_DIFFERS_FROM_AGENT: dict[str, str] = {}
# Variables the role's template task sets itself (tasks/main.yml), empty without secrets.
TEMPLATE_TASK_VARS = {"spine_git_ssh_key_file": "", "spine_git_token_file": ""}


def _agent_defaults(storage_path: str = DEFAULTS["storage_path"]) -> AgentConfig:
    return config_from_mapping({"storage_path": storage_path})


def _render_agent_yaml(variables: dict[str, Any]) -> dict[str, Any]:
    """templates/agent.yaml.j2 as Ansible renders it (trim_blocks), parsed."""
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined)
    text = env.from_string((TEMPLATES / "agent.yaml.j2").read_text()).render(**variables)
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed


def _role_defaults() -> dict[str, Any]:
    """defaults/main.yml with its `{{ other_var }}` references resolved, as Ansible would."""
    values: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    env = jinja2.Environment()
    for _ in range(3):  # references nest at most this deep
        for name, value in values.items():
            if isinstance(value, str) and "{{" in value:
                values[name] = env.from_string(value).render(**values)
    return values


def _differences(got: AgentConfig, want: AgentConfig, allowed: dict[str, str]) -> list[str]:
    def flat(config: AgentConfig) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in asdict(config).items():
            if isinstance(value, dict) and key != "class_map":
                result.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                result[key] = value
        return result

    mine, theirs = flat(got), flat(want)
    return [
        f"{k}: {mine[k]!r} != {theirs[k]!r}"
        for k in mine
        if k not in allowed and mine[k] != theirs[k]
    ]


def test_the_template_alone_renders_the_agents_defaults() -> None:
    rendered = _render_agent_yaml({})
    assert _differences(config_from_mapping(rendered), _agent_defaults(), {}) == []


def test_the_roles_defaults_render_the_agents_defaults() -> None:
    rendered = _render_agent_yaml({**_role_defaults(), **TEMPLATE_TASK_VARS})
    got = config_from_mapping(rendered)
    assert _differences(got, _agent_defaults(), ROLE_DIFFERS_FROM_AGENT) == []


def test_the_roles_argument_specs_document_its_defaults() -> None:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    defaults = _role_defaults()
    template_vars = set(re.findall(r"\b(spine_\w+)", (TEMPLATES / "agent.yaml.j2").read_text()))
    checked = []
    for name in sorted(template_vars & set(options) & set(defaults)):
        if "default" in options[name]:
            assert options[name]["default"] == defaults[name], name
            checked.append(name)
    assert {"spine_memory_limit", "spine_stop_budget", "spine_hot_age"} <= set(checked)


def test_the_startup_script_and_unit_use_the_agents_stop_budget() -> None:
    assert DEFAULTS["stop_budget"] == scripts.STOP_BUDGET
    assert DEFAULTS["storage_path"] == scripts.MOUNT_POINT
    unit = (TEMPLATES / "spine-agent.service.j2").read_text()
    assert re.findall(r"spine_stop_budget \| default\('([^']*)'\)", unit) == [
        DEFAULTS["stop_budget"]
    ]


def test_the_library_front_door_takes_its_defaults_from_the_config(tmp_path: Path) -> None:
    storage = HybridVMStorage(storage_path=str(tmp_path / "s"))
    assert storage.config == _agent_defaults(str(tmp_path / "s"))


def _table_defaults(text: str) -> dict[str, str]:
    """Dotted key -> value of the `default` column, from every markdown table that has one; a
    row naming several keys (`a.x` / `.y`) with as many values gives one entry per key."""
    found: dict[str, str] = {}
    column: int | None = None
    header = True
    for line in text.splitlines():
        if not line.startswith("|"):
            column, header = None, True
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header:
            column, header = (cells.index("default") if "default" in cells else None), False
            continue
        if column is None or column >= len(cells):
            continue
        keys = re.findall(r"`([\w.]+)`", cells[0])
        values = re.findall(r"`([^`]+)`", cells[column].split("(")[0])
        section = keys[0].rpartition(".")[0] if keys else ""
        keys = [f"{section}{k}" if k.startswith(".") else k for k in keys]
        if len(values) == len(keys):
            found.update(zip(keys, values, strict=True))
    return {key: value for key, value in found.items() if key in DEFAULTS}


def _nested(key: str, value: str) -> dict[str, Any]:
    section, _, name = key.rpartition(".")
    return {section: {name: value}} if section else {name: value}


@pytest.mark.parametrize(
    ("doc", "must_cover"),
    [
        ("README.md", set(DEFAULTS)),
        (
            "docs/contracts.md",
            # every key the template writes (the others are not templated)
            set(DEFAULTS)
            - {"git.push_retry_max", "api.max_header_bytes"}
            - {"api.max_connections", "api.idle_timeout"}
            - {"api.max_batch_ops", "api.max_batch_bytes"},
        ),
    ],
)
def test_the_docs_tables_state_the_agents_defaults(doc: str, must_cover: set[str]) -> None:
    stated = _table_defaults((REPO / doc).read_text())
    assert must_cover <= set(stated), sorted(must_cover - set(stated))
    for key, value in stated.items():
        raw = {"storage_path": DEFAULTS["storage_path"], **_nested(key, value)}
        got = config_from_mapping(raw)
        assert _differences(got, _agent_defaults(), {}) == [], f"{doc}: {key} = {value}"
