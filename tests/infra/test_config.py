"""infra/config.py: defaults, and one clear ConfigError per bad value."""

from __future__ import annotations

from pathlib import Path

import pulumi.runtime
import pytest
import yaml

from infra.config import (
    DEFAULTS,
    IAP_RANGE,
    PROJECT_NAME,
    ConfigError,
    DictSource,
    load_config,
)
from tests.infra.conftest import TEST_BUNDLE, config_of, stack_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_for_compute() -> None:
    cfg = config_of("compute")
    assert cfg.placement.zone == "europe-west1-c"
    assert cfg.disk.type == "pd-ssd" and cfg.disk.size_gb == 50
    assert cfg.disk.snapshot_interval_hours == 24 and cfg.disk.snapshot_retention_days == 14
    assert cfg.vm.spot is False and cfg.vm.termination_action == "STOP"
    assert cfg.vm.max_run_duration_s is None  # a standard VM is not stopped every 4 h
    assert cfg.vm.boot_disk_type == "pd-balanced"
    assert cfg.access.ssh_source_ranges == (IAP_RANGE,)
    assert cfg.sql.version == "POSTGRES_16" and cfg.sql.point_in_time_recovery is True
    assert cfg.deletion_protection is True
    assert cfg.has_vm and not cfg.has_database and not cfg.has_service


def test_zone_defaults_to_the_regions_b_zone() -> None:
    assert config_of("compute", zone=None).placement.zone == "europe-west1-b"


def test_typed_values_are_parsed() -> None:
    cfg = config_of(
        "hybrid",
        spot="true",
        terminationAction="DELETE",
        maxRunDuration="90m",
        diskType="pd-balanced",
        snapshotIntervalHours="6",
        sqlEdition="ENTERPRISE_PLUS",
        sqlTier="db-perf-optimized-N-2",
        sqlPitrDays="35",
        sqlBackupRetentionCount="36",
        serviceIngress="all",
    )
    assert cfg.vm.spot is True and cfg.vm.termination_action == "DELETE"
    assert cfg.vm.max_run_duration_s == 5400
    assert cfg.disk.type == "pd-balanced" and cfg.disk.snapshot_interval_hours == 6
    assert cfg.sql.pitr_days == 35
    assert cfg.service.ingress == "INGRESS_TRAFFIC_ALL"


def test_max_run_duration_none_disables_it() -> None:
    assert config_of("compute", maxRunDuration="none").vm.max_run_duration_s is None


def test_secret_remote_is_flagged() -> None:
    cfg = config_of("compute", secret_keys=(f"{PROJECT_NAME}:gitRemote",))
    assert cfg.agent.git_remote_is_secret and cfg.agent.has_secrets
    assert not config_of("compute").agent.has_secrets


def test_credentials_never_appear_in_repr() -> None:
    keys = (f"{PROJECT_NAME}:gitToken",)
    cfg = config_of("compute", secret_keys=keys, gitToken="ghp_" + "x" * 36)
    assert cfg.agent.git_token and "ghp_" not in repr(cfg)


def test_reads_the_running_pulumi_config() -> None:
    """Without a source, values come from Pulumi's runtime config (stack file, env)."""
    values = {
        k: v if isinstance(v, str) else yaml.safe_dump(v)
        for k, v in stack_config("cloudrun").items()
    }
    values = {k: v for k, v in values.items() if isinstance(v, str)}
    values[f"{PROJECT_NAME}:serviceInvokers"] = '["user:a@example.com"]'
    values[f"{PROJECT_NAME}:labels"] = '{"team": "x"}'
    pulumi.runtime.set_all_config(values, [])
    cfg = load_config()
    assert cfg.topology == "cloudrun" and cfg.service.invokers == ("user:a@example.com",)


def _error(
    topology: str = "compute", /, secret_keys: tuple[str, ...] = (), **overrides: object
) -> str:
    with pytest.raises(ConfigError) as caught:
        config_of(topology, secret_keys=secret_keys, **overrides)
    return str(caught.value)


# Each case: overrides, then fragments the one error message must contain (key, value, allowed).
ERRORS = {
    "topology-missing": ({"topology": None}, ["topology", "cloudrun, compute, hybrid", "required"]),
    "topology-unknown": (
        {"topology": "kubernetes"},
        ["topology='kubernetes'", "cloudrun, compute, hybrid"],
    ),
    "project-missing": ({"gcp:project": None}, ["gcp:project", "required"]),
    "project-malformed": (
        {"gcp:project": "My Project"},
        ["gcp:project='My Project'", "project id"],
    ),
    "region-missing": ({"gcp:region": None}, ["gcp:region", "required"]),
    "region-malformed": ({"gcp:region": "europe"}, ["gcp:region='europe'", "GCP region"]),
    "zone-outside-region": (
        {"zone": "us-central1-a"},
        ["zone='us-central1-a'", "inside gcp:region europe-west1"],
    ),
    "disk-type-typo": ({"diskType": "pd-sdd"}, ["diskType='pd-sdd'", "pd-ssd, pd-balanced"]),
    "disk-type-standard": (
        {"diskType": "pd-standard"},
        ["diskType='pd-standard'", "pd-ssd, pd-balanced"],
    ),
    "disk-too-small": ({"diskSizeGb": "5"}, ["diskSizeGb=5", "from 10 to 65536"]),
    "disk-size-not-int": ({"diskSizeGb": "fifty"}, ["diskSizeGb='fifty'", "integer"]),
    "snapshot-interval": (
        {"snapshotIntervalHours": "5"},
        ["snapshotIntervalHours=5", "1, 2, 3, 4, 6, 8, 12, 24"],
    ),
    "snapshot-start-not-on-hour": (
        {"snapshotStartTime": "03:30"},
        ["snapshotStartTime='03:30'", "HH:00"],
    ),
    "snapshot-retention": (
        {"snapshotRetentionDays": "0"},
        ["snapshotRetentionDays=0", "from 1 to 3650"],
    ),
    "machine-type": ({"machineType": "big one"}, ["machineType='big one'", "e2-standard-2"]),
    "image-family": ({"imageFamily": "Debian_12"}, ["imageFamily='Debian_12'", "lower-case"]),
    "boot-disk": ({"bootDiskSizeGb": "5000"}, ["bootDiskSizeGb=5000", "from 10 to 2000"]),
    "spot-not-bool": ({"spot": "yes"}, ["spot='yes'", "true or false"]),
    "termination-action": (
        {"terminationAction": "HIBERNATE"},
        ["terminationAction='HIBERNATE'", "STOP, DELETE"],
    ),
    "delete-without-spot-or-max-run": (
        {"terminationAction": "DELETE", "maxRunDuration": "none"},
        ["terminationAction='DELETE'", "only to spot VMs or with a maxRunDuration"],
    ),
    "max-run-unparsable": ({"maxRunDuration": "4 hours"}, ["maxRunDuration='4 hours'", "30m, 4h"]),
    "max-run-too-short": ({"maxRunDuration": "10s"}, ["maxRunDuration='10s'", "from 30s to 120d"]),
    "max-run-too-long": ({"maxRunDuration": "200d"}, ["maxRunDuration='200d'", "from 30s to 120d"]),
    "external-ip-not-bool": ({"externalIp": "1"}, ["externalIp='1'", "true or false"]),
    "ssh-user-missing": (
        {"sshUser": None},
        ["sshUser=None", "OS Login", "required for the compute and hybrid"],
    ),
    "ssh-user-malformed": (
        {"sshUser": "Alice Smith"},
        ["sshUser='Alice Smith'", "POSIX user name"],
    ),
    "ssh-range-whole-internet": (
        {"sshSourceRanges": ["0.0.0.0/0"]},
        ["sshSourceRanges='0.0.0.0/0'", "never the whole internet"],
    ),
    "ssh-range-ipv6-internet": (
        {"sshSourceRanges": ["::/0"]},
        ["sshSourceRanges='::/0'", "never the whole internet"],
    ),
    "ssh-range-malformed": (
        {"sshSourceRanges": ["10.0.0.1/8"]},
        ["sshSourceRanges='10.0.0.1/8'", "CIDR"],
    ),
    "ssh-ranges-not-a-list": (
        {"sshSourceRanges": "35.235.240.0/20"},
        ["sshSourceRanges='35.235.240.0/20'", "JSON list"],
    ),
    "labels-bad-key": ({"labels": {"Team": "x"}}, ["labels={'Team': 'x'}", "GCP label rules"]),
    "labels-not-object": ({"labels": ["team"]}, ["labels=['team']", "JSON object"]),
    "subnet-too-small-for-cloud-run-egress": (
        {"subnetCidr": "10.42.0.0/27"},
        ["subnetCidr='10.42.0.0/27'", "/8 to /26", "Direct VPC egress"],
    ),
    "sql-pitr-not-below-retention": (
        {"sqlPitrDays": "7", "sqlBackupRetentionCount": "7"},
        ["sqlPitrDays=7", "fewer days than sqlBackupRetentionCount (7)"],
    ),
    "disk-type-not-for-n4": (
        {"machineType": "n4-standard-2"},
        ["diskType='pd-ssd'", "hyperdisk-balanced", "n4-standard-2"],
    ),
    "hyperdisk-on-e2": (
        {"diskType": "hyperdisk-balanced"},
        ["diskType='hyperdisk-balanced'", "pd-balanced, pd-ssd", "e2-standard-2"],
    ),
    "machine-family-unknown": (
        {"machineType": "zz9-standard-2"},
        ["machineType='zz9-standard-2'", "known family", "e2"],
    ),
    "bundle-missing": (
        {"agentBundle": "/nonexistent/bundle.tar"},
        ["agentBundle='/nonexistent/bundle.tar'", "does not exist", "make bundle"],
    ),
    "subnet-public": (
        {"subnetCidr": "8.8.8.0/24"},
        ["subnetCidr='8.8.8.0/24'", "private IPv4 range"],
    ),
    "deletion-protection-not-bool": (
        {"deletionProtection": "maybe"},
        ["deletionProtection='maybe'", "true or false"],
    ),
    "sql-version-unknown": (
        {"sqlVersion": "POSTGRES_99"},
        ["sqlVersion='POSTGRES_99'", "POSTGRES_16"],
    ),
    "sql-version-mysql": ({"sqlVersion": "MYSQL_8_0"}, ["sqlVersion='MYSQL_8_0'", "POSTGRES_13"]),
    "sql-edition": (
        {"sqlEdition": "STANDARD"},
        ["sqlEdition='STANDARD'", "ENTERPRISE, ENTERPRISE_PLUS"],
    ),
    "sql-tier-malformed": (
        {"sqlTier": "n1-standard-1"},
        ["sqlTier='n1-standard-1'", "db-custom-CPU-MEMORY_MB"],
    ),
    "sql-tier-edition-mismatch": (
        {"sqlTier": "db-perf-optimized-N-2"},
        ["sqlTier='db-perf-optimized-N-2'", "ENTERPRISE_PLUS"],
    ),
    "sql-backup-time": ({"sqlBackupStartTime": "25:00"}, ["sqlBackupStartTime='25:00'", "HH:MM"]),
    "sql-pitr-days-enterprise": ({"sqlPitrDays": "8"}, ["sqlPitrDays=8", "from 1 to 7"]),
    "sql-retention": (
        {"sqlBackupRetentionCount": "0"},
        ["sqlBackupRetentionCount=0", "from 1 to 365"],
    ),
    "sql-ha-not-bool": (
        {"sqlHighAvailability": "on"},
        ["sqlHighAvailability='on'", "true or false"],
    ),
    "git-remote-quote": (
        {"gitRemote": 'https://github.com/a/b".git'},
        ["gitRemote='https://github.com/a/b\".git'", "without spaces, quotes"],
    ),
    "git-remote-scheme": (
        {"gitRemote": "http://github.com/a/b.git"},
        ["gitRemote='http://github.com/a/b.git'", "https://"],
    ),
}

CLOUDRUN_ERRORS = {
    "service-image-missing": (
        {"serviceImage": None},
        ["serviceImage=None", "required for the cloudrun"],
    ),
    "service-image-malformed": (
        {"serviceImage": "Not An Image"},
        ["serviceImage='Not An Image'", "container image"],
    ),
    "agent-image-missing": (
        {"agentImage": None},
        ["agentImage=None", "required for the cloudrun", "make image"],
    ),
    "agent-image-malformed": (
        {"agentImage": "agent image"},
        ["agentImage='agent image'", "container image"],
    ),
    "service-min-over-max": (
        {"serviceMinInstances": "5", "serviceMaxInstances": "2"},
        ["serviceMinInstances=5", "at most serviceMaxInstances (2)"],
    ),
    "service-max-zero": ({"serviceMaxInstances": "0"}, ["serviceMaxInstances=0", "from 1 to 1000"]),
    "service-cpu": ({"serviceCpu": "3"}, ["serviceCpu='3'", "1, 2, 4, 6, 8"]),
    "service-memory-too-small": (
        {"serviceMemory": "256Mi"},
        ["serviceMemory='256Mi'", "512Mi to 32Gi"],
    ),
    "service-memory-unit": ({"serviceMemory": "1GB"}, ["serviceMemory='1GB'", "512Mi to 32Gi"]),
    "service-ingress": (
        {"serviceIngress": "public"},
        ["serviceIngress='public'", "internal, internal-and-cloud-load-balancing, all"],
    ),
    "service-invoker-no-prefix": (
        {"serviceInvokers": ["bob@example.com"]},
        ["serviceInvokers='bob@example.com'", "user:"],
    ),
    "service-invokers-not-list": (
        {"serviceInvokers": "user:bob@example.com"},
        ["serviceInvokers='user:bob@example.com'", "JSON list"],
    ),
}


@pytest.mark.parametrize(("overrides", "fragments"), ERRORS.values(), ids=ERRORS.keys())
def test_each_bad_value_is_one_clear_error(
    overrides: dict[str, object], fragments: list[str]
) -> None:
    message = _error("compute", **overrides)
    assert message.startswith("config ")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("overrides", "fragments"), CLOUDRUN_ERRORS.values(), ids=CLOUDRUN_ERRORS.keys()
)
def test_each_bad_service_value_is_one_clear_error(
    overrides: dict[str, object], fragments: list[str]
) -> None:
    message = _error("cloudrun", **overrides)
    for fragment in fragments:
        assert fragment in message


def test_misspelt_key_is_refused_with_a_suggestion() -> None:
    message = _error(diskTpye="pd-ssd")
    assert message.startswith("config super-spine-kit:diskTpye=<secret>")
    assert "did you mean diskType?" in message


def test_service_settings_are_not_required_without_cloud_run() -> None:
    assert config_of("compute", serviceImage=None).service.image is None
    assert config_of("hybrid", agentImage=None).service.agent_image is None


def test_ssh_user_is_not_required_for_cloudrun() -> None:
    assert config_of("cloudrun", sshUser=None).vm.ssh_user is None


def test_git_remote_with_credentials_is_refused_without_echoing_them() -> None:
    message = _error(gitRemote="https://bot:s3cr3t@github.com/acme/state.git")
    assert "gitRemote=<secret>" in message and "s3cr3t" not in message
    assert "gitToken" in message


def test_git_token_must_be_a_pulumi_secret() -> None:
    message = _error(gitToken="ghp_" + "x" * 36)
    assert "gitToken=<secret>" in message and "--secret" in message and "ghp_" not in message


def test_git_ssh_key_must_be_a_pulumi_secret() -> None:
    message = _error(gitSshKey="-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "gitSshKey=<secret>" in message and "BEGIN" not in message


def test_secret_remote_error_hides_the_value() -> None:
    message = _error(secret_keys=(f"{PROJECT_NAME}:gitRemote",), gitRemote="ftp://internal/repo")
    assert "gitRemote=<secret>" in message and "internal" not in message


def test_config_error_carries_key_value_and_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        config_of("compute", diskType="pd-sdd")
    assert (caught.value.key, caught.value.value) == (f"{PROJECT_NAME}:diskType", "pd-sdd")
    assert caught.value.allowed == "pd-ssd, pd-balanced, hyperdisk-balanced"


def test_a_file_that_is_not_a_bundle_is_refused_in_one_line(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a tar")
    message = _error(agentBundle=str(notes))
    assert "agentBundle=" in message and "not a bundle tar" in message
    assert "\n" not in message


def test_the_bundle_is_not_needed_without_a_vm() -> None:
    assert config_of("cloudrun", agentBundle="/nonexistent.tar").agent.bundle is None


def test_hyperdisk_families_get_a_hyperdisk_boot_disk() -> None:
    cfg = config_of("compute", machineType="c4-standard-4", diskType="hyperdisk-balanced")
    assert cfg.vm.boot_disk_type == "hyperdisk-balanced"


def test_pitr_retention_is_not_checked_when_pitr_is_off() -> None:
    cfg = config_of(
        "hybrid", sqlPointInTimeRecovery="false", sqlPitrDays="7", sqlBackupRetentionCount="3"
    )
    assert cfg.sql.point_in_time_recovery is False


def test_empty_strings_from_pulumi_yaml_defaults_mean_unset() -> None:
    """Pulumi.yaml gives optional strings a "" default, which the CLI passes on."""
    cfg = config_of("compute", zone="", gitRemote="", serviceImage="")
    assert cfg.placement.zone == "europe-west1-b" and cfg.agent.git_remote is None


@pytest.mark.parametrize("topology", ["cloudrun", "compute", "hybrid"])
def test_example_stack_file_is_valid_for_every_topology(topology: str) -> None:
    config = yaml.safe_load((ROOT / "Pulumi.example.yaml").read_text())["config"]
    config[f"{PROJECT_NAME}:topology"] = topology
    config[f"{PROJECT_NAME}:agentBundle"] = str(TEST_BUNDLE)  # `make bundle` builds the real one
    assert load_config(DictSource(config)).topology == topology


def test_readme_lists_every_config_key() -> None:
    docs = (ROOT / "README.md").read_text()
    for key in [*DEFAULTS, "gcp:project", "gcp:region"]:
        assert f"`{key}`" in docs, key
