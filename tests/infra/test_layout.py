"""Naming helper and the architecture's import boundaries."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from infra.naming import Namer, slug

INFRA = Path(__file__).resolve().parents[2] / "infra"
ACCOUNT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")  # GCP service-account id rules


@pytest.mark.parametrize(
    ("stack", "expected"),
    [("dev", "dev"), ("Acme/Spine/Prod.EU", "acme-spine-prod-eu"), ("--", "stack")],
)
def test_slug(stack: str, expected: str) -> None:
    assert slug(stack) == expected


def test_logical_names_carry_the_stack() -> None:
    assert Namer("prod").logical("vm") == "ssk-prod-vm"


def test_long_physical_names_are_shortened_stably_and_stay_valid() -> None:
    long = Namer("a-very-long-stack-name-for-the-europe-team")
    name = long.physical("vm", max_len=30)
    assert len(name) <= 30 and ACCOUNT_ID.match(name)
    assert name == long.physical("vm", max_len=30)
    assert name != Namer("a-very-long-stack-name-for-the-europe-team-2").physical("vm", max_len=30)
    assert Namer("dev").physical("vm", max_len=30) == "ssk-dev-vm"


def test_infra_never_imports_the_agent_ansible_or_tests() -> None:
    """infra/ and ansible/ meet only in templates/ and the inventory; bootstrap/ ships alone."""
    for path in INFRA.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in ("bootstrap", "ansible", "tests"), (
                    f"{path}: {name}"
                )
