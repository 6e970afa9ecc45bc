"""The guardrails, as pulumi-policy resource validations.

Kept apart from `__main__.py` (which starts the policy server) so tests can call each rule's
validate function on the resources recorded under mocks. Property names are the engine's
(camelCase), and secret values arrive unwrapped, so "is it a secret?" is judged by names
and value shapes, not by Pulumi's secret flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

DATA_DEVICE_NAME = "super-spine-disk"
DATA_DISK_TYPES = ("pd-ssd", "pd-balanced", "hyperdisk-balanced")
INSTANCE = "gcp:compute/instance:Instance"
INSTANCE_TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GROUP = "gcp:compute/instanceGroupManager:InstanceGroupManager"
DISK = "gcp:compute/disk:Disk"
SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
FIREWALL = "gcp:compute/firewall:Firewall"
RUN_SERVICES = (
    "gcp:cloudrunv2/service:Service",
    "gcp:cloudrunv2/job:Job",
    "gcp:cloudrun/service:Service",
)
METADATA_TYPES = (
    INSTANCE,
    INSTANCE_TEMPLATE,
    "gcp:compute/projectMetadata:ProjectMetadata",
    "gcp:compute/projectMetadataItem:ProjectMetadataItem",
)
OPEN_RANGES = ("0.0.0.0/0", "::/0")

SENSITIVE_NAME = re.compile(
    r"pass(word|wd)?\b|passw|secret|token|private[-_]?key|credential|api[-_]?key", re.I
)
SECRET_VALUE = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),  # scheme://user:password@host
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,})"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
)


def _get(data: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list) or part >= len(data):
                return None
            data = data[part]
        else:
            if not isinstance(data, Mapping):
                return None
            data = data.get(part)
    return data


def _looks_secret(value: Any) -> bool:
    return isinstance(value, str) and any(p.search(value) for p in SECRET_VALUE)


# --- The data disk is pd-ssd or pd-balanced and is never auto-deleted. -------------------


def validate_data_disk(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type == DISK:
        disk_type = props.get("type") or "pd-standard"
        if disk_type not in DATA_DISK_TYPES:
            report(f"data disk type is {disk_type}; use one of {', '.join(DATA_DISK_TYPES)}", None)
    elif args.resource_type == INSTANCE:
        if _get(props, "bootDisk", "deviceName") == DATA_DEVICE_NAME:
            report(f"'{DATA_DEVICE_NAME}' is the boot disk, which is deleted with the VM", None)
        attached = props.get("attachedDisks") or []
        data = [d for d in attached if _get(d, "deviceName") == DATA_DEVICE_NAME]
        if not data:
            report(
                f"the VM attaches no separate disk named '{DATA_DEVICE_NAME}'; the data disk "
                "must be its own resource in attachedDisks, so it outlives the VM",
                None,
            )
        for disk in attached:
            if _get(disk, "autoDelete") is True:
                report(f"attached disk {disk.get('deviceName')} is set to auto-delete", None)
        if props.get("scratchDisks"):
            report("scratch (local SSD) disks lose their data when the VM stops", None)
    elif args.resource_type == INSTANCE_TEMPLATE:
        _validate_template_disks(props.get("disks") or [], report)
    elif args.resource_type == GROUP:
        stateful = {
            _get(d, "deviceName"): _get(d, "deleteRule") for d in props.get("statefulDisks") or []
        }
        if stateful.get(DATA_DEVICE_NAME, "missing") not in ("NEVER", None):
            report(
                f"the group does not keep '{DATA_DEVICE_NAME}' as a stateful disk with "
                "deleteRule NEVER: a recreated VM would lose it",
                None,
            )


def _validate_template_disks(disks: list[Any], report: ReportViolation) -> None:
    """In a template the data disk is an existing disk (`source`), never auto-deleted."""
    data = [d for d in disks if _get(d, "deviceName") == DATA_DEVICE_NAME]
    if any(_get(d, "boot") for d in data):
        report(f"'{DATA_DEVICE_NAME}' is the boot disk, which is deleted with the VM", None)
    if not [d for d in data if _get(d, "source") and _get(d, "autoDelete") is False]:
        report(
            f"the template attaches no existing disk named '{DATA_DEVICE_NAME}' with "
            "autoDelete false; the data disk must be its own resource, so it outlives the VM",
            None,
        )
    for disk in disks:
        if _get(disk, "type") == "SCRATCH" or _get(disk, "diskType") == "local-ssd":
            report("scratch (local SSD) disks lose their data when the VM stops", None)


data_disk_durable = ResourceValidationPolicy(
    name="data-disk-durable",
    description=(
        "The data disk is pd-ssd, pd-balanced or hyperdisk-balanced, a separate resource never "
        "auto-deleted, and stateful in the VM's instance group."
    ),
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_data_disk,
)


# --- Cloud SQL has backups and PITR, and no public IP. ------------------------------------


def validate_sql(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != SQL_INSTANCE:
        return
    settings = args.props.get("settings") or {}
    backup = settings.get("backupConfiguration") or {}
    ip = settings.get("ipConfiguration") or {}
    if backup.get("enabled") is not True:
        report("automated backups are off (settings.backupConfiguration.enabled)", None)
    if backup.get("pointInTimeRecoveryEnabled") is not True:
        report(
            "point-in-time recovery is off (backupConfiguration.pointInTimeRecoveryEnabled)", None
        )
    # Cloud SQL assigns a public IPv4 address unless told not to.
    if ip.get("ipv4Enabled") is not False:
        report("the instance has a public IP; set ipConfiguration.ipv4Enabled=false", None)
    if ip.get("authorizedNetworks"):
        report("authorizedNetworks opens the instance to outside ranges", None)
    if not ip.get("privateNetwork"):
        report("no privateNetwork: the instance would be unreachable without a public IP", None)


sql_backups_private = ResourceValidationPolicy(
    name="sql-backups-pitr-private",
    description="Cloud SQL has automated backups and PITR, and no public IP.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_sql,
)


# --- No firewall opens port 22 to the internet. --------------------------------------------


def _covers_22(allow: Mapping[str, Any]) -> bool:
    if str(allow.get("protocol", "")).lower() not in ("tcp", "all", "6"):
        return False
    ports = allow.get("ports") or []
    if not ports:
        return True
    for spec in ports:
        low, _, high = str(spec).partition("-")
        if int(low) <= 22 <= int(high or low):
            return True
    return False


def validate_firewall(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != FIREWALL:
        return
    props = args.props
    if (props.get("direction") or "INGRESS") != "INGRESS" or props.get("disabled") is True:
        return
    if not any(_covers_22(a) for a in props.get("allows") or []):
        return
    sources = props.get("sourceRanges") or []
    # With no source at all, GCP applies the rule to 0.0.0.0/0.
    implicit_any = (
        not sources and not props.get("sourceTags") and not props.get("sourceServiceAccounts")
    )
    if implicit_any or any(s in OPEN_RANGES for s in sources):
        report("port 22 is open to the whole internet; allow IAP's 35.235.240.0/20 instead", None)


no_open_ssh = ResourceValidationPolicy(
    name="no-ssh-from-internet",
    description="No firewall rule opens port 22 to 0.0.0.0/0.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_firewall,
)


# --- No secret in plain env or metadata. ----------------------------------------------------


def _env_lists(data: Any) -> Iterable[list[Any]]:
    """Every `envs`/`env` list anywhere inside a Cloud Run resource."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if key in ("envs", "env") and isinstance(value, list):
                yield value
            else:
                yield from _env_lists(value)
    elif isinstance(data, list):
        for item in data:
            yield from _env_lists(item)


def validate_no_plain_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type in RUN_SERVICES:
        for envs in _env_lists(props):
            for env in envs:
                name, value = str(env.get("name", "")), env.get("value")
                if value is None:
                    continue
                if SENSITIVE_NAME.search(name):
                    report(f"env {name} is set in plain text; use a Secret Manager reference", None)
                elif _looks_secret(value):
                    report(f"env {name} holds what looks like a credential", None)
    if args.resource_type in METADATA_TYPES:
        metadata = dict(props.get("metadata") or {})
        if args.resource_type == "gcp:compute/projectMetadataItem:ProjectMetadataItem":
            metadata = {str(props.get("key")): props.get("value")}
        if props.get("metadataStartupScript"):
            metadata["metadataStartupScript"] = props["metadataStartupScript"]
        for key, value in metadata.items():
            if SENSITIVE_NAME.search(key):
                report(f"metadata key '{key}' carries a secret; VM metadata is readable", None)
            elif _looks_secret(value):
                report(f"metadata '{key}' holds what looks like a credential", None)


no_plain_secrets = ResourceValidationPolicy(
    name="no-plaintext-secrets",
    description="No secret sits in a plain environment variable or in VM metadata.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_no_plain_secrets,
)


# --- Workloads never run as the default compute service account. --------------------------


def _is_default_sa(email: Any) -> bool:
    return (
        not email
        or email == "default"
        or str(email).endswith("-compute@developer.gserviceaccount.com")
    )


def validate_service_account(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if args.resource_type in (INSTANCE, INSTANCE_TEMPLATE):
        email = _get(props, "serviceAccount", "email")
        if _is_default_sa(email):
            report("the VM runs as the default compute service account; give it its own", None)
    elif args.resource_type == "gcp:cloudrunv2/service:Service":
        email = _get(props, "template", "serviceAccount")
        if _is_default_sa(email):
            report("the service runs as the default compute service account; give it its own", None)


no_default_sa = ResourceValidationPolicy(
    name="no-default-compute-sa",
    description="VMs (and Cloud Run services) do not use the default compute service account.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_service_account,
)


# --- The agent sidecar on Cloud Run: acknowledged only once in PostgreSQL. ------------------
# An instance has no disk: an async agent would acknowledge writes held only in memory, and
# Cloud Run SIGKILLs 10 s after SIGTERM, so the stop budget must end before that.
CLOUD_RUN_GRACE_S = 10.0
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min)?\s*$")
_BUDGET_UNITS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0}


def _seconds(value: str) -> float | None:
    match = _BUDGET.match(value)
    return float(match.group(1)) * _BUDGET_UNITS[match.group(2)] if match else None


def validate_sidecar_sync(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in RUN_SERVICES:
        return
    for envs in _env_lists(args.props):
        values = {str(e.get("name")): e.get("value") for e in envs if isinstance(e, Mapping)}
        if "SUPER_SPINE_POSTGRES__DSN" not in values:
            continue
        if values.get("SUPER_SPINE_POSTGRES__WRITE") != "sync":
            report("the agent sidecar must write sync (SUPER_SPINE_POSTGRES__WRITE=sync): "
                   "a Cloud Run instance has no disk to hold an async backlog", None)
        budget = _seconds(str(values.get("SUPER_SPINE_STOP_BUDGET") or ""))
        if budget is None or budget >= CLOUD_RUN_GRACE_S:
            report("the agent sidecar needs SUPER_SPINE_STOP_BUDGET under Cloud Run's 10 s "
                   "SIGTERM grace", None)


sidecar_sync = ResourceValidationPolicy(
    name="cloudrun-agent-sync",
    description="A Cloud Run agent sidecar writes to PostgreSQL synchronously and stops in time.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=validate_sidecar_sync,
)


# --- Advisory: data-bearing resources are protected from `pulumi destroy`. ----------------


def validate_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in (DISK, SQL_INSTANCE) and not args.opts.protect:
        report("a data-bearing resource without `protect`: pulumi destroy would delete it", None)


data_protected = ResourceValidationPolicy(
    name="data-protected",
    description="The data disk and the SQL instance carry Pulumi's protect flag.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=validate_protected,
)

MANDATORY_POLICIES: list[Policy] = [
    data_disk_durable,
    sql_backups_private,
    no_open_ssh,
    no_plain_secrets,
    no_default_sa,
    sidecar_sync,
]
ALL_POLICIES: list[Policy] = [*MANDATORY_POLICIES, data_protected]
