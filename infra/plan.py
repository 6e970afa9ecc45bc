"""`make plan TOPOLOGY=...`: review a topology offline, without credentials or the Pulumi CLI.

Runs the real program under Pulumi's mocks with the example stack file (Pulumi.example.yaml,
topology overridden) and prints every declared resource with its key settings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from infra.config import PROJECT_NAME, TOPOLOGIES, ConfigError, load_config
from infra.offline import RecordedResource, Recording, run_offline
from infra.topologies import build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_STACK = ROOT / "Pulumi.example.yaml"


def _get(data: Any, path: str, default: Any = None) -> Any:
    """`a.b[0].c` lookup in recorded inputs; missing parts give `default`."""
    current = data
    for part in path.replace("[", ".").replace("]", "").split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return default
        if current is None:
            return default
    return current


def _template(i: dict[str, Any]) -> str:
    s = i.get("scheduling", {})
    run = _get(s, "maxRunDuration.seconds")
    disks = i.get("disks", [])
    boot: dict[str, Any] = next((d for d in disks if d.get("boot")), {})
    data = [d.get("deviceName") for d in disks if not d.get("boot")]
    parts = [
        i.get("machineType", ""),
        s.get("provisioningModel", ""),
        f"restart={s.get('automaticRestart')}",
        f"maintenance={s.get('onHostMaintenance')}",
    ]
    if s.get("instanceTerminationAction"):
        parts.append(f"on-end={s['instanceTerminationAction']}")
    parts.append(f"maxRun={int(run) // 60}min" if run else "maxRun=none")
    parts.append(f"boot={boot.get('diskType')}")
    parts.append(f"disks={','.join(str(d) for d in data)}")
    parts.append("shielded" if _get(i, "shieldedInstanceConfig.enableSecureBoot") else "UNSHIELDED")
    parts.append(f"oslogin={_get(i, 'metadata.enable-oslogin')}")
    parts.append(
        "external-ip" if _get(i, "networkInterfaces.0.accessConfigs") else "no-external-ip"
    )
    return " ".join(parts)


def _group(i: dict[str, Any]) -> str:
    stateful = ",".join(
        f"{d.get('deviceName')}(delete={d.get('deleteRule')})" for d in i.get("statefulDisks", [])
    )
    heal = i.get("autoHealingPolicies", {})
    update = i.get("updatePolicy", {})
    return (
        f"{i.get('zone')} size={i.get('targetSize')} stateful={stateful} "
        f"autoheal-after={heal.get('initialDelaySec')}s "
        f"update={update.get('type')}/{update.get('minimalAction')}/"
        f"{update.get('replacementMethod')} surge={update.get('maxSurgeFixed')}"
    )


def _sql(i: dict[str, Any]) -> str:
    s = i.get("settings", {})
    b = s.get("backupConfiguration", {})
    ip = s.get("ipConfiguration", {})
    return (
        f"{i.get('databaseVersion')} {s.get('tier')} {s.get('edition')} "
        f"{s.get('availabilityType')} backups={b.get('enabled')}@{b.get('startTime')} "
        f"pitr={b.get('pointInTimeRecoveryEnabled')}/{b.get('transactionLogRetentionDays')}d "
        f"keep={_get(b, 'backupRetentionSettings.retainedBackups')} "
        f"publicIp={ip.get('ipv4Enabled')} ssl={ip.get('sslMode')} "
        f"apiDeletionProtection={s.get('deletionProtectionEnabled')}"
    )


def _container(c: dict[str, Any]) -> str:
    """One container of a Cloud Run service: image, port or none, probe, order, mounts, env."""
    envs = [
        f"{e['name']}=<secret:{_get(e, 'valueSource.secretKeyRef.version')}>"
        if e.get("valueSource")
        else e["name"]
        for e in c.get("envs", [])
    ]
    port = _get(c, "ports.containerPort")
    probe = _get(c, "startupProbe.httpGet")
    parts = [
        f"container {c.get('name')}: {c.get('image')}",
        f"port={port}" if port else "no-port",
        f"{_get(c, 'resources.limits.cpu')}cpu/{_get(c, 'resources.limits.memory')}",
    ]
    if probe:
        parts.append(f"startup-probe=GET {probe.get('path')}:{probe.get('port')}")
    if c.get("dependsOns"):
        parts.append(f"after={','.join(c['dependsOns'])}")
    mounts = [f"{m['name']}:{m['mountPath']}" for m in c.get("volumeMounts", [])]
    parts.append(f"mounts={','.join(mounts)}")
    parts.append(f"env={','.join(envs)}")
    return " ".join(parts)


def _run(i: dict[str, Any]) -> str:
    t = i.get("template", {})
    volumes = [
        f"{v['name']}({'memory' if _get(v, 'emptyDir.medium') == 'MEMORY' else 'cloudsql'})"
        for v in t.get("volumes", [])
    ]
    head = (
        f"{i.get('ingress')} "
        f"scale={_get(t, 'scaling.minInstanceCount', 0)}-{_get(t, 'scaling.maxInstanceCount')} "
        f"sa={t.get('serviceAccount')} volumes={','.join(volumes)}"
    )
    # One line per container, printed under the service (see format_plan).
    return "\n".join([head, *(_container(c) for c in t.get("containers", []))])


def _snapshots(i: dict[str, Any]) -> str:
    p = i.get("snapshotSchedulePolicy", {})
    sched = p.get("schedule", {})
    every = (
        f"every {_get(sched, 'hourlySchedule.hoursInCycle')}h"
        if "hourlySchedule" in sched
        else "daily"
    )
    start = _get(sched, "hourlySchedule.startTime") or _get(sched, "dailySchedule.startTime")
    keep = _get(p, "retentionPolicy.maxRetentionDays")
    on_delete = _get(p, "retentionPolicy.onSourceDiskDelete")
    return f"{every} from {start} UTC, keep {keep}d, {on_delete}"


def _firewall(i: dict[str, Any]) -> str:
    allows = ",".join(
        a["protocol"] + ":" + "/".join(a.get("ports", [])) for a in i.get("allows", [])
    )
    sources = ",".join(i.get("sourceRanges", []))
    return (
        f"{i.get('direction')} {allows} from {sources} to tags {','.join(i.get('targetTags', []))}"
    )


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "gcp:compute/instanceTemplate:InstanceTemplate": _template,
    "gcp:compute/instanceGroupManager:InstanceGroupManager": _group,
    "gcp:compute/healthCheck:HealthCheck": lambda i: (
        f"tcp:{_get(i, 'tcpHealthCheck.port')} expects '{_get(i, 'tcpHealthCheck.response')}' "
        f"every {i.get('checkIntervalSec')}s"
    ),
    "gcp:storage/bucket:Bucket": lambda i: (
        f"{i.get('location')} uniformAccess={i.get('uniformBucketLevelAccess')} "
        f"publicAccess={i.get('publicAccessPrevention')}"
    ),
    "gcp:storage/bucketObject:BucketObject": lambda i: f"{i.get('name')}",
    "gcp:storage/bucketIAMMember:BucketIAMMember": lambda i: (
        f"{i.get('role')} {i.get('member')}"
    ),
    "gcp:compute/disk:Disk": lambda i: (
        f"{i.get('type')} {i.get('size')}GB {i.get('zone')} "
        f"snapshotBeforeDestroy={i.get('createSnapshotBeforeDestroy')}"
    ),
    "gcp:compute/resourcePolicy:ResourcePolicy": _snapshots,
    "gcp:compute/firewall:Firewall": _firewall,
    "gcp:compute/network:Network": lambda i: (
        f"custom-mode autoSubnets={i.get('autoCreateSubnetworks')}"
    ),
    "gcp:compute/subnetwork:Subnetwork": lambda i: (
        f"{i.get('ipCidrRange')} {i.get('region')} "
        f"privateGoogleAccess={i.get('privateIpGoogleAccess')} flowLogs=on"
    ),
    "gcp:compute/routerNat:RouterNat": lambda i: f"{i.get('sourceSubnetworkIpRangesToNat')}",
    "gcp:compute/globalAddress:GlobalAddress": lambda i: (
        f"{i.get('purpose')} /{i.get('prefixLength')}"
    ),
    "gcp:servicenetworking/connection:Connection": lambda i: f"{i.get('service')}",
    "gcp:sql/databaseInstance:DatabaseInstance": _sql,
    "gcp:sql/database:Database": lambda i: f"{i.get('name')}",
    "gcp:sql/user:User": lambda i: f"{i.get('name')} password=<secret>",
    "gcp:secretmanager/secret:Secret": lambda i: f"{i.get('secretId')}",
    "gcp:secretmanager/secretVersion:SecretVersion": lambda i: "data=<secret>",
    "gcp:secretmanager/secretIamMember:SecretIamMember": lambda i: (
        f"{i.get('role')} {i.get('member')}"
    ),
    "gcp:projects/iAMMember:IAMMember": lambda i: (
        f"{i.get('role')} {i.get('member')}"
        + (f" if {_get(i, 'condition.title')}" if i.get("condition") else "")
    ),
    "gcp:projects/service:Service": lambda i: f"{i.get('service')}",
    "gcp:serviceaccount/account:Account": lambda i: f"{i.get('accountId')}",
    "gcp:cloudrunv2/service:Service": _run,
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": lambda i: (
        f"{i.get('role')} {i.get('member')}"
    ),
    "random:index/randomPassword:RandomPassword": lambda i: f"length={i.get('length')}",
}


COMPONENT_ORDER = (
    "ProjectApis",
    "Network",
    "ServiceIdentity",
    "Database",
    "BundleStore",
    "AgentSecrets",
    "SpineVm",
    "CloudRunService",
)


def _flags(r: RecordedResource) -> str:
    flags = [
        name
        for name, on in (
            ("protect", r.protect),
            ("retainOnDelete", r.retain_on_delete),
            ("deleteBeforeReplace", r.delete_before_replace),
        )
        if on
    ]
    return ",".join(flags) or "-"


def _is_stack(urn: str) -> bool:
    return urn.split("::")[2:3] == ["pulumi:pulumi:Stack"]


def _short_type(type_: str) -> str:
    pkg, _, rest = type_.partition(":")
    module, _, kind = rest.partition(":")
    return f"{pkg}:{module.split('/')[0]}:{kind}" if pkg != PROJECT_NAME else f"[{kind}]"


def format_plan(recording: Recording, topology: str, stack: str) -> str:
    """A readable table: components first, children indented below their parent."""
    rows: list[tuple[str, str, str, str]] = []

    def order(r: RecordedResource) -> tuple[int, str]:
        # Registration order is asynchronous; print in a stable, readable order instead.
        kind = r.type.removeprefix(f"{PROJECT_NAME}:infra:")
        rank = COMPONENT_ORDER.index(kind) if kind in COMPONENT_ORDER else len(COMPONENT_ORDER)
        return rank, r.name

    def walk(parent: str, depth: int) -> None:
        for r in sorted(recording.resources, key=order):
            if r.parent == parent:
                summary = SUMMARIES.get(r.type, lambda i: "")(r.inputs)
                rows.append((_short_type(r.type), "  " * depth + r.name, _flags(r), summary))
                walk(r.urn, depth + 1)

    stack_urns = {r.parent for r in recording.resources if _is_stack(r.parent)}
    for urn in sorted(stack_urns):
        walk(urn, 0)
    headers = ("TYPE", "NAME", "OPTIONS", "KEY SETTINGS")
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(3)]
    lines = [
        f"Offline plan for topology '{topology}' (stack '{stack}', under Pulumi mocks: "
        f"nothing was created)",
        "",
        "  ".join(h.ljust(w) for h, w in zip(headers[:3], widths, strict=True)) + "  " + headers[3],
    ]
    for row in rows:
        first, *more = row[3].split("\n")
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + first
        )
        # A multi-line summary (a service's containers) continues under its first line.
        lines += [" " * (sum(widths) + 6) + "  " + line for line in more]
    custom = sum(1 for r in recording.resources if r.custom)
    lines += [
        "",
        f"{custom} resources in {len(recording.resources) - custom} components.",
        "",
        "Outputs (IDs, IPs and URLs are made up by the mocks):",
    ]
    for key in sorted(recording.outputs):
        value = recording.outputs[key]
        if key in recording.secret_outputs:
            shown = "[secret]"
        elif isinstance(value, str) and "\n" in value:
            shown = "(multi-line, below)"
        else:
            shown = str(value)
        lines.append(f"  {key}: {shown}")
    for key in sorted(recording.outputs):
        value = recording.outputs[key]
        if key not in recording.secret_outputs and isinstance(value, str) and "\n" in value:
            lines += ["", f"{key}:", *("  " + line for line in value.rstrip().splitlines())]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def read_stack_file(path: Path) -> dict[str, object]:
    """The `config:` map of a stack file; encrypted (secure:) values cannot be used offline."""
    data = yaml.safe_load(path.read_text()) or {}
    config = dict(data.get("config") or {})
    for key, value in config.items():
        if isinstance(value, dict) and "secure" in value:
            raise SystemExit(f"plan: {path}: {key} is encrypted; use a stack file without secrets")
    return config


def plan(topology: str, stack_file: Path = EXAMPLE_STACK, stack: str = "dev") -> str:
    config = read_stack_file(stack_file)
    config[f"{PROJECT_NAME}:topology"] = topology
    recording = run_offline(lambda: build(load_config(), stack), config, stack=stack)
    return format_plan(recording, topology, stack)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.plan", description=__doc__)
    parser.add_argument("--topology", choices=TOPOLOGIES, required=True)
    parser.add_argument("--stack-file", type=Path, default=EXAMPLE_STACK)
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(plan(args.topology, args.stack_file, args.stack))
    except ConfigError as error:
        print(f"plan: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
