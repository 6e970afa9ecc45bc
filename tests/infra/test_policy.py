"""The policy pack, run on the resources the mocks record: good stacks pass, a bad one fails."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import grpc
import pulumi_gcp as gcp
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from infra.offline import RecordedResource, Recording, run_offline
from infra.policy import rules
from tests.infra.conftest import COMPUTE_VARIANT, SECRET_KEYS, SECRET_VARIANT, record

ROOT = Path(__file__).resolve().parents[2]


def policy_args(resource: RecordedResource) -> ResourceValidationArgs:
    """What the engine hands a policy: inputs by their Pulumi names, secrets unwrapped."""
    options = PolicyResourceOptions(
        protect=resource.protect,
        ignore_changes=resource.ignore_changes,
        delete_before_replace=resource.delete_before_replace,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=resource.additional_secret_outputs,
        parent=resource.parent,
    )
    return ResourceValidationArgs(
        resource_type=resource.type,
        props=resource.inputs,
        urn=resource.urn,
        name=resource.name,
        opts=options,
        provider=None,
    )


def violations(policy: ResourceValidationPolicy, recording: Recording) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for resource in recording.resources:
        if resource.custom:
            policy.validate(
                policy_args(resource), lambda msg, _urn, n=resource.name: found.append((n, msg))
            )
    return found


GOOD_STACKS = {
    "cloudrun": lambda: record("cloudrun"),
    "compute": lambda: record("compute"),
    "hybrid": lambda: record("hybrid"),
    "compute-spot-external-ip": lambda: record("compute", **COMPUTE_VARIANT),
    "compute-secrets": lambda: record("compute", secret_keys=SECRET_KEYS, **SECRET_VARIANT),
}


def test_pack_has_the_six_mandatory_rules() -> None:
    names = {p.name for p in rules.MANDATORY_POLICIES}
    assert names == {
        "data-disk-durable",
        "sql-backups-pitr-private",
        "no-ssh-from-internet",
        "no-plaintext-secrets",
        "no-default-compute-sa",
        "cloudrun-agent-sync",
    }
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in rules.MANDATORY_POLICIES)


@pytest.mark.parametrize("stack", GOOD_STACKS)
def test_well_built_stacks_pass_every_policy(stack: str) -> None:
    recording = GOOD_STACKS[stack]()
    for policy in rules.ALL_POLICIES:
        assert violations(policy, recording) == [], policy.name


def test_unprotected_data_is_flagged_as_advisory() -> None:
    recording = record("hybrid", deletionProtection="false", maxRunDuration="none")
    for policy in rules.MANDATORY_POLICIES:
        assert violations(policy, recording) == [], policy.name
    flagged = {name for name, _ in violations(rules.data_protected, recording)}
    assert flagged == {"ssk-dev-sql-pg", "ssk-dev-vm-data"}


def _bad_program() -> dict[str, object]:
    """A stack that breaks every rule, declared with raw pulumi_gcp resources."""
    gcp.compute.Disk("bad-disk", zone="europe-west1-b", type="pd-standard", size=50)
    gcp.compute.Disk("untyped-disk", zone="europe-west1-b", size=50)
    gcp.compute.Instance(
        "bad-vm",
        zone="europe-west1-b",
        machine_type="e2-small",
        boot_disk=gcp.compute.InstanceBootDiskArgs(
            device_name="super-spine-disk",
            initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                image="debian-cloud/debian-12"
            ),
        ),
        network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(network="default")],
        metadata={
            "db-password": "hunter2",
            "startup-script": "git clone https://bot:hunter2@github.com/acme/state.git",
        },
        service_account=gcp.compute.InstanceServiceAccountArgs(
            email="123456789-compute@developer.gserviceaccount.com", scopes=["cloud-platform"]
        ),
    )
    gcp.compute.Instance(
        "bad-vm-no-sa",
        zone="europe-west1-b",
        machine_type="e2-small",
        boot_disk=gcp.compute.InstanceBootDiskArgs(
            initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                image="debian-cloud/debian-12"
            ),
        ),
        network_interfaces=[gcp.compute.InstanceNetworkInterfaceArgs(network="default")],
        metadata_startup_script="echo '-----BEGIN RSA PRIVATE KEY-----' > /root/key",
    )
    gcp.sql.DatabaseInstance(
        "bad-sql",
        database_version="POSTGRES_16",
        region="europe-west1",
        settings=gcp.sql.DatabaseInstanceSettingsArgs(
            tier="db-f1-micro",
            backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                enabled=False
            ),
            ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=True,
                authorized_networks=[
                    gcp.sql.DatabaseInstanceSettingsIpConfigurationAuthorizedNetworkArgs(
                        value="0.0.0.0/0"
                    )
                ],
            ),
        ),
    )
    gcp.sql.DatabaseInstance(
        "defaults-sql",
        database_version="POSTGRES_16",
        region="europe-west1",
        settings=gcp.sql.DatabaseInstanceSettingsArgs(tier="db-f1-micro"),
    )
    allow = gcp.compute.FirewallAllowArgs
    gcp.compute.Firewall(
        "bad-ssh",
        network="default",
        allows=[allow(protocol="tcp", ports=["22"])],
        source_ranges=["0.0.0.0/0"],
    )
    gcp.compute.Firewall(
        "bad-ssh-range",
        network="default",
        allows=[allow(protocol="tcp", ports=["20-30"])],
        source_ranges=["::/0"],
    )
    gcp.compute.Firewall("bad-ssh-implicit", network="default", allows=[allow(protocol="all")])
    # Not violations: HTTPS from anywhere, SSH from IAP, egress, a disabled rule.
    gcp.compute.Firewall(
        "ok-https",
        network="default",
        allows=[allow(protocol="tcp", ports=["443"])],
        source_ranges=["0.0.0.0/0"],
    )
    gcp.compute.Firewall(
        "ok-iap",
        network="default",
        allows=[allow(protocol="tcp", ports=["22"])],
        source_ranges=["35.235.240.0/20"],
    )
    gcp.compute.Firewall(
        "ok-egress",
        network="default",
        direction="EGRESS",
        allows=[allow(protocol="tcp", ports=["22"])],
        destination_ranges=["0.0.0.0/0"],
    )
    gcp.compute.Firewall(
        "ok-disabled",
        network="default",
        disabled=True,
        allows=[allow(protocol="tcp", ports=["22"])],
        source_ranges=["0.0.0.0/0"],
    )
    # A template whose data disk would be created and deleted with each VM, and a group that
    # does not keep it.
    template = gcp.compute.InstanceTemplate(
        "bad-template",
        machine_type="e2-small",
        disks=[
            gcp.compute.InstanceTemplateDiskArgs(boot=True, source_image="debian-cloud/debian-12"),
            gcp.compute.InstanceTemplateDiskArgs(
                device_name="super-spine-disk", disk_size_gb=50, auto_delete=True
            ),
            gcp.compute.InstanceTemplateDiskArgs(type="SCRATCH", disk_type="local-ssd"),
        ],
        network_interfaces=[gcp.compute.InstanceTemplateNetworkInterfaceArgs(network="default")],
        service_account=gcp.compute.InstanceTemplateServiceAccountArgs(
            email="vm@acme-spine-1.iam.gserviceaccount.com", scopes=["cloud-platform"]
        ),
    )
    gcp.compute.InstanceGroupManager(
        "bad-group",
        zone="europe-west1-b",
        base_instance_name="bad",
        target_size=1,
        versions=[gcp.compute.InstanceGroupManagerVersionArgs(instance_template=template.id)],
        stateful_disks=[
            gcp.compute.InstanceGroupManagerStatefulDiskArgs(
                device_name="super-spine-disk", delete_rule="ON_PERMANENT_INSTANCE_DELETION"
            )
        ],
    )
    env = gcp.cloudrunv2.ServiceTemplateContainerEnvArgs
    gcp.cloudrunv2.Service(
        "bad-run",
        location="europe-west1",
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            containers=[
                gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    image="europe-docker.pkg.dev/p/r/i:1",
                    envs=[
                        env(name="DB_PASSWORD", value="hunter2"),
                        env(name="DATABASE_URL", value="postgres://app:hunter2@10.0.0.3/app"),
                        env(name="LOG_LEVEL", value="info"),
                    ],
                )
            ]
        ),
    )
    gcp.cloudrunv2.Service(
        "bad-sidecar",
        location="europe-west1",
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            service_account="run@acme-spine-1.iam.gserviceaccount.com",
            containers=[
                gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    name="agent",
                    image="europe-docker.pkg.dev/p/r/agent:1",
                    envs=[
                        env(name="SUPER_SPINE_POSTGRES__DSN", value="host=/cloudsql/p:r:i"),
                        env(name="SUPER_SPINE_POSTGRES__WRITE", value="async"),
                        env(name="SUPER_SPINE_STOP_BUDGET", value="25s"),
                    ],
                )
            ],
        ),
    )
    return {}


@functools.lru_cache(maxsize=1)
def bad_stack() -> Recording:
    return run_offline(
        _bad_program, {"gcp:project": "acme-spine-1", "gcp:region": "europe-west1"}, stack="bad"
    )


NO_DATA_DISK = (
    "the VM attaches no separate disk named 'super-spine-disk'; the data disk must be its own "
    "resource in attachedDisks, so it outlives the VM"
)
TYPES = "pd-ssd, pd-balanced, hyperdisk-balanced"
BAD = {
    "data-disk-durable": {
        ("bad-disk", f"data disk type is pd-standard; use one of {TYPES}"),
        ("untyped-disk", f"data disk type is pd-standard; use one of {TYPES}"),
        (
            "bad-template",
            "the template attaches no existing disk named 'super-spine-disk' with autoDelete "
            "false; the data disk must be its own resource, so it outlives the VM",
        ),
        ("bad-template", "scratch (local SSD) disks lose their data when the VM stops"),
        (
            "bad-group",
            "the group does not keep 'super-spine-disk' as a stateful disk with deleteRule "
            "NEVER: a recreated VM would lose it",
        ),
        ("bad-vm", "'super-spine-disk' is the boot disk, which is deleted with the VM"),
        ("bad-vm", NO_DATA_DISK),
        ("bad-vm-no-sa", NO_DATA_DISK),
    },
    "sql-backups-pitr-private": {
        ("bad-sql", "automated backups are off (settings.backupConfiguration.enabled)"),
        (
            "bad-sql",
            "point-in-time recovery is off (backupConfiguration.pointInTimeRecoveryEnabled)",
        ),
        ("bad-sql", "the instance has a public IP; set ipConfiguration.ipv4Enabled=false"),
        ("bad-sql", "authorizedNetworks opens the instance to outside ranges"),
        ("bad-sql", "no privateNetwork: the instance would be unreachable without a public IP"),
        ("defaults-sql", "automated backups are off (settings.backupConfiguration.enabled)"),
        (
            "defaults-sql",
            "point-in-time recovery is off (backupConfiguration.pointInTimeRecoveryEnabled)",
        ),
        ("defaults-sql", "the instance has a public IP; set ipConfiguration.ipv4Enabled=false"),
        (
            "defaults-sql",
            "no privateNetwork: the instance would be unreachable without a public IP",
        ),
    },
    "no-ssh-from-internet": {
        (name, "port 22 is open to the whole internet; allow IAP's 35.235.240.0/20 instead")
        for name in ("bad-ssh", "bad-ssh-range", "bad-ssh-implicit")
    },
    "no-plaintext-secrets": {
        ("bad-run", "env DB_PASSWORD is set in plain text; use a Secret Manager reference"),
        ("bad-run", "env DATABASE_URL holds what looks like a credential"),
        ("bad-vm", "metadata key 'db-password' carries a secret; VM metadata is readable"),
        ("bad-vm", "metadata 'startup-script' holds what looks like a credential"),
        ("bad-vm-no-sa", "metadata 'metadataStartupScript' holds what looks like a credential"),
    },
    "cloudrun-agent-sync": {
        (
            "bad-sidecar",
            "the agent sidecar must write sync (SUPER_SPINE_POSTGRES__WRITE=sync): a Cloud Run "
            "instance has no disk to hold an async backlog",
        ),
        (
            "bad-sidecar",
            "the agent sidecar needs SUPER_SPINE_STOP_BUDGET under Cloud Run's 10 s SIGTERM grace",
        ),
    },
    "no-default-compute-sa": {
        ("bad-vm", "the VM runs as the default compute service account; give it its own"),
        ("bad-vm-no-sa", "the VM runs as the default compute service account; give it its own"),
        ("bad-run", "the service runs as the default compute service account; give it its own"),
    },
}


@pytest.mark.parametrize("rule", BAD)
def test_bad_stack_fails_each_mandatory_rule(rule: str) -> None:
    policy = next(p for p in rules.MANDATORY_POLICIES if p.name == rule)
    assert set(violations(policy, bad_stack())) == BAD[rule]


def _analyze_request(resource: RecordedResource) -> analyzer_pb2.AnalyzeRequest:
    props = struct_pb2.Struct()
    props.update(resource.inputs)
    return analyzer_pb2.AnalyzeRequest(
        type=resource.type,
        properties=props,
        urn=resource.urn,
        name=resource.name,
        options=analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect),
    )


def test_policy_pack_serves_the_rules_as_pulumi_would_run_it() -> None:
    """`pulumi up --policy-pack infra/policy` runs __main__.py in that directory and talks to
    it over gRPC: it must start, list its rules, and judge resources as the tests above do."""
    proc = subprocess.Popen(
        [sys.executable, "__main__.py"],
        cwd=ROOT / "infra" / "policy",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty())
            assert info.name == "super-spine-kit-guardrails"
            assert [p.name for p in info.policies] == [p.name for p in rules.ALL_POLICIES]
            good_disk = record("compute").one("gcp:compute/disk:Disk")
            assert list(stub.Analyze(_analyze_request(good_disk)).diagnostics) == []
            bad_disk = next(r for r in bad_stack().resources if r.name == "bad-disk")
            found = {d.policyName for d in stub.Analyze(_analyze_request(bad_disk)).diagnostics}
            assert found == {"data-disk-durable", "data-protected"}
    finally:
        proc.kill()
        proc.wait()
