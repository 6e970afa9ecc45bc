"""scripts/image.sh: the tag is a function of the inputs (source, Containerfile, base), and
every bad argument gets one line and exit 2 before anything is built."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.container.conftest import BuiltImage, run_image_script
from tests.container.podman import REPO

NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__",
                                    ".*_cache", "storage", ".storage-backup", "bench")


def _tag_only(script: Path, base: str) -> str:
    proc = subprocess.run(
        ["bash", str(script), "--tag-only", "--base", base],
        capture_output=True,
        text=True,
        env=dict(os.environ, VENV=str(REPO / ".venv")),
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_the_same_inputs_give_the_same_tag(agent_image: BuiltImage) -> None:
    assert _tag_only(REPO / "scripts" / "image.sh", agent_image.base) == agent_image.tag


def test_another_base_gives_another_tag(agent_image: BuiltImage) -> None:
    other = _tag_only(REPO / "scripts" / "image.sh", agent_image.base + "-other")
    assert other != agent_image.tag
    assert other.split("-")[0] == agent_image.tag.split("-")[0]  # the agent's version


def test_a_changed_containerfile_or_agent_source_gives_another_tag(
    agent_image: BuiltImage, tmp_path: Path
) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=NOT_SOURCE)
    script = copy / "scripts" / "image.sh"
    with (copy / "container" / "Containerfile").open("a") as fh:
        fh.write("# a comment is a change too\n")
    containerfile_changed = _tag_only(script, agent_image.base)
    with (copy / "bootstrap" / "__init__.py").open("a") as fh:
        fh.write("# a change to the agent's source\n")
    source_changed = _tag_only(script, agent_image.base)
    assert len({agent_image.tag, containerfile_changed, source_changed}) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "image: unknown argument '--bogus'"),
        (["--base"], "image: --base needs an image reference"),
        (["--base", "python 3"], "image: --base 'python 3' is not an image reference"),
        (["--base", "x" * 300], "image: --base 'xxxxx"),
        (["--name"], "image: --name needs a repository name"),
        (["--name", "Upper/Case"], "image: --name 'Upper/Case' is not a lower-case repository"),
        (["--name", "agent:tag"], "image: --name 'agent:tag' is not a lower-case repository"),
    ],
)
def test_a_bad_argument_exits_2_with_one_line(args: list[str], message: str) -> None:
    proc = run_image_script(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(message), lines[0]
    assert len(lines[0]) < 240


def test_the_script_passes_shellcheck() -> None:
    proc = subprocess.run(
        ["shellcheck", "--severity=style", str(REPO / "scripts" / "image.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
