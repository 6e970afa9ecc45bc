"""`make plan` and the Pulumi entry point, both offline."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import pytest
import yaml

from infra import plan
from infra.config import PROJECT_NAME
from infra.offline import run_offline
from tests.infra.conftest import TEST_BUNDLE, stack_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("topology", "expected"),
    [
        (
            "cloudrun",
            [
                "[CloudRunService]",
                "gcp:cloudrunv2:Service",
                "INGRESS_TRAFFIC_INTERNAL_ONLY",
                # the sidecar: both containers, the app after the agent's startup probe
                "container app: europe-docker.pkg.dev/my-gcp-project/super-spine/super-spine:1.0.0"
                " port=8080",
                "after=agent mounts=spine-socket:/run/super-spine env=SUPER_SPINE_SOCKET",
                "container agent: europe-docker.pkg.dev/my-gcp-project/super-spine/"
                "super-spine-agent:",
                "no-port 1cpu/512Mi startup-probe=GET /v1/health:8091",
                "spine-socket(memory)",
                "serviceUrl: https://",
            ],
        ),
        (
            "compute",
            [
                "[SpineVm]",
                "gcp:compute:Disk",
                "protect,retainOnDelete",
                "stateful=super-spine-disk(delete=NEVER)",
                "update=PROACTIVE/REPLACE/RECREATE surge=0",
                "tcp:8021 expects 'healthy'",
                "[BundleStore]",
                "ansibleInventory:",
            ],
        ),
        (
            "hybrid",
            ["[Database]", "[SpineVm]", "publicIp=False ssl=ENCRYPTED_ONLY", "spine_postgres_host"],
        ),
    ],
)
def test_plan_prints_each_topology(
    topology: str, expected: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The example stack file, with a bundle-shaped file instead of `make bundle`'s real one.
    stack = yaml.safe_load(plan.EXAMPLE_STACK.read_text())
    stack["config"][f"{PROJECT_NAME}:agentBundle"] = str(TEST_BUNDLE)
    stack_file = tmp_path / "Pulumi.example.yaml"
    stack_file.write_text(yaml.safe_dump(stack))
    assert plan.main(["--topology", topology, "--stack-file", str(stack_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Offline plan for topology '{topology}'")
    for fragment in expected:
        assert fragment in out
    assert "offline-mock-password" not in out


def test_plan_reports_bad_config_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack_file = tmp_path / "Pulumi.bad.yaml"
    stack_file.write_text(
        "config:\n  gcp:project: my-gcp-project\n  gcp:region: europe-west1\n"
        "  super-spine-kit:diskType: pd-sdd\n  super-spine-kit:sshUser: a\n"
    )
    assert plan.main(["--topology", "compute", "--stack-file", str(stack_file)]) == 2
    assert capsys.readouterr().err.strip() == (
        "plan: config super-spine-kit:diskType='pd-sdd' is invalid; "
        "allowed: pd-ssd, pd-balanced, hyperdisk-balanced"
    )


def test_plan_refuses_encrypted_stack_files(tmp_path: Path) -> None:
    stack_file = tmp_path / "Pulumi.enc.yaml"
    stack_file.write_text("config:\n  super-spine-kit:gitToken:\n    secure: v1:abc\n")
    with pytest.raises(SystemExit, match="gitToken is encrypted"):
        plan.plan("compute", stack_file)


def test_entry_point_runs_as_pulumi_runs_it() -> None:
    """Pulumi runs infra/__main__.py with infra/ as the working directory and sys.path[0]."""
    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    saved_modules = {k: m for k, m in sys.modules.items() if k == "infra" or k.startswith("infra.")}
    infra_dir = ROOT / "infra"

    def program() -> dict[str, object]:
        # A fresh import of `infra` from where Pulumi starts: the entry point must find it.
        for name in saved_modules:
            del sys.modules[name]
        os.chdir(infra_dir)
        sys.path[:] = [str(infra_dir), *[p for p in saved_path if Path(p or ".").resolve() != ROOT]]
        runpy.run_path(str(infra_dir / "__main__.py"), run_name="__main__")
        assert sys.modules["infra"].__file__ == str(infra_dir / "__init__.py")
        return {}

    try:
        recording = run_offline(program, stack_config("compute"))
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        sys.modules.update(saved_modules)
    assert recording.outputs["topology"] == "compute"
    assert recording.one("gcp:compute/instanceTemplate:InstanceTemplate").name == (
        "ssk-dev-vm-template"
    )
    assert f"{PROJECT_NAME}-dev" in recording.resources[0].parent
