"""The GCE startup script, rendered from templates/: shellcheck-clean, and its refusals, run on
this machine against the lab's stand-in metadata server (tests/lab/metadata.py). Its happy
path runs the roles, so it is proven on the lab VM (tests/ansible, case 5), not here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest

from infra import bundle, scripts
from tests.infra.conftest import make_bundle_shaped_tar
from tests.lab.metadata import LabMetadata

SHELLCHECK = "/usr/bin/shellcheck"  # Debian's package; scripts/setup.sh installs it


@pytest.mark.parametrize(
    "url", [scripts.METADATA_URL, "http://10.0.2.2:8080/computeMetadata/v1"]
)
def test_rendered_startup_script_passes_shellcheck(url: str, tmp_path: Path) -> None:
    script = tmp_path / "startup.sh"
    script.write_text(scripts.startup_script(url))
    result = subprocess.run(
        [SHELLCHECK, "--shell=bash", "--severity=style", str(script)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_startup_script_reaches_the_metadata_server_without_dns() -> None:
    assert "metadata=http://169.254.169.254/computeMetadata/v1" in scripts.startup_script()


def test_startup_script_installs_nothing_itself_but_runs_the_roles() -> None:
    startup = scripts.startup_script()
    assert "ansible-playbook\" site.yml -c local -i localhost," in startup
    assert "mkfs" not in startup and "systemctl" not in startup and "apt-get" not in startup
    assert "--no-index" in startup  # ansible-core from the bundle's wheels only


@pytest.fixture
def bundle_file(tmp_path: Path) -> bundle.Bundle:
    """A file shaped like a bundle (the startup script must refuse it before running it)."""
    return bundle.inspect(make_bundle_shaped_tar(tmp_path / "bundle.tar"))


@pytest.fixture
def metadata(bundle_file: bundle.Bundle) -> Iterator[LabMetadata]:
    with LabMetadata(objects={bundle_file.object_name: bundle_file.path},
                     address="127.0.0.1") as server:
        server.attributes.update(scripts.vm_metadata(
            startup="",
            bundle_url=server.object_url("bucket", bundle_file.object_name),
            bundle_sha256=bundle_file.sha256,
            variables=scripts.role_vars(None),
            secret_urls={},
        ))
        yield server


def run_startup(metadata: LabMetadata, state: Path) -> subprocess.CompletedProcess[str]:
    script = scripts.render("gce-startup.sh.j2", {
        "spine_metadata_url": metadata.metadata_url,
        "spine_bootstrap_dir": str(state),
        "spine_bootstrap_log": str(state.parent / "bootstrap.log"),
        "spine_fetch_attempts": 2,
    })
    path = state.parent / "startup.sh"
    path.write_text(script)
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                          timeout=120)


def test_a_bundle_with_another_digest_is_refused_and_nothing_runs(
    metadata: LabMetadata, tmp_path: Path
) -> None:
    metadata.attributes[scripts.BUNDLE_SHA_KEY] = "0" * 64
    result = run_startup(metadata, tmp_path / "state")
    assert result.returncode == 1
    assert "the bundle's digest is not " + "0" * 64 + "; refusing to run it" in result.stdout
    assert not (tmp_path / "state" / "bundle").exists()
    assert not (tmp_path / "bootstrap.log").exists()


def test_missing_metadata_stops_with_one_line(metadata: LabMetadata, tmp_path: Path) -> None:
    del metadata.attributes[scripts.BUNDLE_URL_KEY]
    result = run_startup(metadata, tmp_path / "state")
    assert result.returncode == 1
    assert "FAILED: no super-spine-bundle-url in the metadata" in result.stdout


def test_a_malformed_digest_is_refused_before_any_download(
    metadata: LabMetadata, tmp_path: Path
) -> None:
    metadata.attributes[scripts.BUNDLE_SHA_KEY] = "not-a-digest"
    result = run_startup(metadata, tmp_path / "state")
    assert result.returncode == 1 and "is not a sha256 digest" in result.stdout
    assert not any("/storage/" in path for path in metadata.requests)


def test_an_already_provisioned_vm_does_nothing_at_boot(
    metadata: LabMetadata, tmp_path: Path
) -> None:
    """A reboot of the same VM: same bundle, same variables -> no download, no playbook."""
    state = tmp_path / "state"
    state.mkdir()
    attrs = metadata.attributes
    wanted = subprocess.run(
        ["sha256sum"], input=f"{attrs[scripts.BUNDLE_SHA_KEY]}\n{attrs[scripts.VARS_KEY]}\n"
        f"{attrs[scripts.SECRETS_KEY]}\n", capture_output=True, text=True, check=True,
    ).stdout.split()[0]
    (state / "applied").write_text(wanted + "\n")
    result = run_startup(metadata, state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already provisioned" in result.stdout
    assert not any("/storage/" in path for path in metadata.requests)


def test_the_metadata_stand_in_wants_the_flavor_header_and_the_token(
    metadata: LabMetadata,
) -> None:
    assert metadata.answer("/computeMetadata/v1/instance/attributes/super-spine-vars", {})[0] == 403
    assert metadata.answer("/storage/v1/b/bucket/o/x?alt=media", {})[0] == 401


def test_unknown_template_variables_are_errors() -> None:
    with pytest.raises(jinja2.UndefinedError):
        scripts.render("gce-startup.sh.j2", {})
