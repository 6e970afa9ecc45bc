"""Shared fixtures for the Pulumi program's tests.

Importing pulumi_gcp costs about a second per module; it happens once here, at collection,
and every topology is recorded once per session (cached by its config), so the whole suite
runs in seconds.
"""

from __future__ import annotations

import functools
import json
import tarfile
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi_gcp as gcp
import pulumi_random
import pytest

from infra.config import PROJECT_NAME, DictSource, StackConfig, load_config
from infra.offline import Recording, run_offline
from infra.topologies import build

# pulumi_gcp's modules load lazily, on first attribute access: touch each one the program
# uses, here, once per session.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pulumi_gcp's own deprecated aliases
    _WARM = (
        gcp.compute.Instance,
        gcp.sql.DatabaseInstance,
        gcp.cloudrunv2.Service,
        gcp.projects.IAMMember,
        gcp.secretmanager.Secret,
        gcp.serviceaccount.Account,
        gcp.servicenetworking.Connection,
        pulumi_random.RandomPassword,
    )



def make_bundle_shaped_tar(path: Path) -> Path:
    """A tar with a bundle's members (config checks them); the real bundle, whose build
    downloads from PyPI, is built and booted by the lab test (tests/ansible, case 5)."""
    with tarfile.open(path, "w") as tar:
        for name, data in (
            ("bundle.json", json.dumps({"agent_wheel": "x.whl", "ansible_core": "2.19.14"})),
            ("wheelhouse.tar", ""),
            ("ansible/site.yml", "- hosts: all\n"),
        ):
            source = path.parent / name.replace("/", "-")
            source.write_text(data)
            tar.add(source, arcname=name)
    return path


TEST_BUNDLE = make_bundle_shaped_tar(Path(tempfile.mkdtemp(prefix="ssk-bundle-")) / "b.tar")

BASE_CONFIG: dict[str, object] = {
    "gcp:project": "acme-spine-1",
    "gcp:region": "europe-west1",
    f"{PROJECT_NAME}:zone": "europe-west1-c",
    f"{PROJECT_NAME}:sshUser": "alice_example_com",
    f"{PROJECT_NAME}:serviceImage": "europe-docker.pkg.dev/acme-spine-1/spine/super-spine:1.0.0",
    f"{PROJECT_NAME}:agentImage": (
        "europe-docker.pkg.dev/acme-spine-1/spine/super-spine-agent:0.1.0-0123456789abcdef"
    ),
    f"{PROJECT_NAME}:serviceInvokers": ["group:spine-users@example.com"],
    f"{PROJECT_NAME}:gitRemote": "https://github.com/acme/spine-state.git",
    f"{PROJECT_NAME}:labels": {"team": "platform"},
    f"{PROJECT_NAME}:agentBundle": str(TEST_BUNDLE),
}


def stack_config(topology: str, /, **overrides: object) -> dict[str, object]:
    """BASE_CONFIG for `topology`; overrides use short keys (`diskType`) or full ones."""
    config = dict(BASE_CONFIG)
    config[f"{PROJECT_NAME}:topology"] = topology
    for key, value in overrides.items():
        full = key if ":" in key else f"{PROJECT_NAME}:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value
    return config


def config_of(
    topology: str, /, secret_keys: tuple[str, ...] = (), **overrides: object
) -> StackConfig:
    source = DictSource(stack_config(topology, **overrides), frozenset(secret_keys))
    return load_config(source)


@functools.cache
def _record(topology: str, stack: str, secret_keys: tuple[str, ...], frozen: str) -> Recording:
    config = json.loads(frozen)
    return run_offline(lambda: build(load_config(), stack), config, secret_keys, stack=stack)


def record(
    topology: str, /, stack: str = "dev", secret_keys: tuple[str, ...] = (), **overrides: object
) -> Recording:
    """Run the program offline for this config (cached: same config, same recording)."""
    config = stack_config(topology, **overrides)
    return _record(topology, stack, secret_keys, json.dumps(config, sort_keys=True))


@pytest.fixture(scope="session")
def recorder() -> Callable[..., Recording]:
    return record


@pytest.fixture(scope="session", params=["cloudrun", "compute", "hybrid"])
def any_topology(request: pytest.FixtureRequest) -> tuple[str, Recording]:
    return request.param, record(request.param)


# One recording covers many non-default settings at once: fewer program runs, faster tests.
COMPUTE_VARIANT: dict[str, object] = {
    "spot": "true",
    "terminationAction": "DELETE",
    "maxRunDuration": "30m",
    "diskType": "pd-balanced",
    "diskSizeGb": "200",
    "snapshotIntervalHours": "6",
    "externalIp": "true",
    "enableApis": "false",
    "sshSourceRanges": ["198.51.100.0/24"],
}
SECRET_KEYS = ("super-spine-kit:gitRemote", "super-spine-kit:gitToken")
SECRET_VARIANT: dict[str, object] = {"gitToken": "ghp_" + "t" * 36}


def find(recording: Recording, type_: str, name_part: str = "") -> Any:
    """The one resource of `type_` whose name contains `name_part`."""
    found = [r for r in recording.of_type(type_) if name_part in r.name]
    assert len(found) == 1, (
        f"expected one {type_} named *{name_part}*, found {[r.name for r in found]}"
    )
    return found[0]
