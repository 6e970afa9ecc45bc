"""The stack configuration: read in one place, typed, validated.

Mocks (and `pulumi preview`) happily accept values that GCP rejects minutes later, such as a
`pd-sdd` disk or `POSTGRES_99`. Every key is therefore checked here, before any resource is
declared, and a bad value stops the program with one `ConfigError` that names the key, the
value and what is allowed.

The defaults below are the single source of truth; `Pulumi.yaml` repeats them for the CLI and
a test keeps the two identical.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infra.bundle import ROOT, Bundle, BundleError, inspect

PROJECT_NAME = "super-spine-kit"

TOPOLOGIES = ("cloudrun", "compute", "hybrid")
DISK_TYPES = ("pd-ssd", "pd-balanced", "hyperdisk-balanced")
# Disk types each machine family attaches (GCE's machine-family pages); the first one is the
# boot disk's. N4, C4 and their kin take Hyperdisk only; E2, N1, N2 and older ones no Hyperdisk.
_PD = ("pd-balanced", "pd-ssd")
_BOTH = ("pd-balanced", "pd-ssd", "hyperdisk-balanced")
_HYPERDISK = ("hyperdisk-balanced",)
FAMILY_DISK_TYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("e2", "n1", "n2", "n2d", "t2d", "t2a", "c2", "c2d", "m1", "m2", "a2", "g2"), _PD
    ),
    **dict.fromkeys(("c3", "c3d", "m3", "a3"), _BOTH),
    **dict.fromkeys(("n4", "n4d", "n4a", "c4", "c4a", "c4d", "h4d", "x4"), _HYPERDISK),
}
TERMINATION_ACTIONS = ("STOP", "DELETE")
SNAPSHOT_INTERVALS_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
SQL_VERSIONS = ("POSTGRES_13", "POSTGRES_14", "POSTGRES_15", "POSTGRES_16", "POSTGRES_17")
SQL_EDITIONS = ("ENTERPRISE", "ENTERPRISE_PLUS")
SERVICE_CPUS = ("1", "2", "4", "6", "8")
# Friendly names -> the Cloud Run v2 API values.
SERVICE_INGRESS = {
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
    "all": "INGRESS_TRAFFIC_ALL",
}
# The range IAP TCP forwarding connects from: the only SSH source by default.
IAP_RANGE = "35.235.240.0/20"
# GCE accepts a max run duration between 30 s and 120 days.
MAX_RUN_MIN_S = 30
MAX_RUN_MAX_S = 120 * 24 * 3600

# key -> default, in the project namespace. Only `topology` (required by every topology) has
# none: since Pulumi 3.44 the CLI requires every key that Pulumi.yaml declares without a
# default, in every stack. Optional strings default to "" (= unset). The keys in
# UNDECLARED_KEYS are not in Pulumi.yaml at all: the project schema has no object type
# (labels), and a key declared `secret` with a default fails the CLI's check for every stack
# that leaves it unset (gitToken, gitSshKey). This module validates them all the same.
DEFAULTS: dict[str, Any] = {
    "topology": None,
    "zone": "",
    "labels": {},
    "deletionProtection": True,
    "enableApis": True,
    "subnetCidr": "10.42.0.0/24",
    "sshSourceRanges": [IAP_RANGE],
    "diskSizeGb": 50,
    "diskType": "pd-ssd",
    "snapshotIntervalHours": 24,
    "snapshotStartTime": "03:00",
    "snapshotRetentionDays": 14,
    "machineType": "e2-standard-2",
    "imageFamily": "debian-12",
    "imageProject": "debian-cloud",
    "bootDiskSizeGb": 20,
    "spot": False,
    "terminationAction": "STOP",
    "maxRunDuration": "none",
    "externalIp": False,
    "sshUser": "",
    "serviceImage": "",
    "agentImage": "",
    "serviceMinInstances": 0,
    "serviceMaxInstances": 2,
    "serviceCpu": "1",
    "serviceMemory": "512Mi",
    "serviceIngress": "internal",
    "serviceInvokers": [],
    "sqlTier": "db-custom-1-3840",
    "sqlEdition": "ENTERPRISE",
    "sqlVersion": "POSTGRES_16",
    "sqlHighAvailability": True,
    "sqlDiskSizeGb": 20,
    "sqlBackupStartTime": "02:00",
    "sqlPointInTimeRecovery": True,
    "sqlPitrDays": 7,
    "sqlBackupRetentionCount": 14,
    "gitRemote": "",
    "gitToken": None,
    "gitSshKey": None,
    "agentBundle": "dist/super-spine-bundle.tar",
}
UNDECLARED_KEYS = ("labels", "gitToken", "gitSshKey")
# Keys that carry credentials: accepted only when stored with `pulumi config set --secret`.
SECRET_ONLY_KEYS = ("gitToken", "gitSshKey")


class ConfigError(ValueError):
    """One bad configuration value: the key, the value, and what would be accepted."""

    def __init__(self, key: str, value: object, allowed: str, *, secret: bool = False) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        shown = "<secret>" if secret else repr(value)
        super().__init__(f"config {key}={shown} is invalid; allowed: {allowed}")


class ConfigSource(Protocol):
    """Where raw config strings come from: the Pulumi runtime, or a dict in tests."""

    def get(self, namespace: str, key: str) -> str | None: ...

    def is_secret(self, namespace: str, key: str) -> bool: ...

    def set_keys(self) -> list[str]:
        """Every full key that is set (`namespace:key`), to catch misspelt ones."""
        ...


@dataclass(frozen=True)
class DictSource:
    """Config from a plain mapping of full keys (`super-spine-kit:topology`) to strings."""

    values: Mapping[str, object]
    secret_keys: frozenset[str] = frozenset()

    def get(self, namespace: str, key: str) -> str | None:
        value = self.values.get(f"{namespace}:{key}")
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)

    def is_secret(self, namespace: str, key: str) -> bool:
        return f"{namespace}:{key}" in self.secret_keys

    def set_keys(self) -> list[str]:
        return list(self.values)


class PulumiSource:
    """Config from the running Pulumi program (stack file, Pulumi.yaml defaults, env)."""

    def get(self, namespace: str, key: str) -> str | None:
        import pulumi

        return pulumi.Config(namespace).get(key)

    def is_secret(self, namespace: str, key: str) -> bool:
        import pulumi.runtime

        return bool(pulumi.runtime.is_config_secret(f"{namespace}:{key}"))

    def set_keys(self) -> list[str]:
        from pulumi.runtime import config

        return sorted({*config.CONFIG.get(), *config.get_config_env()})


@dataclass(frozen=True)
class Placement:
    project: str
    region: str
    zone: str


@dataclass(frozen=True)
class DiskConfig:
    size_gb: int
    type: str
    snapshot_interval_hours: int
    snapshot_start_time: str
    snapshot_retention_days: int


@dataclass(frozen=True)
class VmConfig:
    """The VM. Changing spot (hence on_host_maintenance) replaces it: see components/vm.py."""

    machine_type: str
    image_family: str
    image_project: str
    boot_disk_size_gb: int
    spot: bool
    termination_action: str
    max_run_duration_s: int | None
    external_ip: bool
    ssh_user: str | None
    boot_disk_type: str = "pd-balanced"


@dataclass(frozen=True)
class ServiceConfig:
    """The Cloud Run service: the user's app (ingress) and the agent beside it (sidecar)."""

    image: str | None
    min_instances: int
    max_instances: int
    cpu: str
    memory: str
    ingress: str
    invokers: tuple[str, ...]
    # The agent's image (`make image`, pushed to Artifact Registry): the sidecar's.
    agent_image: str | None = None


@dataclass(frozen=True)
class SqlConfig:
    tier: str
    edition: str
    version: str
    high_availability: bool
    disk_size_gb: int
    backup_start_time: str
    point_in_time_recovery: bool
    pitr_days: int
    backup_retention_count: int


@dataclass(frozen=True)
class AgentConfig:
    """What the VM's agent needs. Credentials are kept out of repr() so they never get logged."""

    git_remote: str | None
    git_remote_is_secret: bool
    git_token: str | None = field(default=None, repr=False)
    git_ssh_key: str | None = field(default=None, repr=False)
    # The bundle the VM provisions itself from (infra/bundle.py); only VM topologies read it.
    bundle: Bundle | None = None

    @property
    def has_secrets(self) -> bool:
        """True when anything the inventory carries must be a secret output."""
        return self.git_remote_is_secret or bool(self.git_token) or bool(self.git_ssh_key)


@dataclass(frozen=True)
class AccessConfig:
    ssh_source_ranges: tuple[str, ...]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class StackConfig:
    topology: str
    placement: Placement
    disk: DiskConfig
    vm: VmConfig
    service: ServiceConfig
    sql: SqlConfig
    agent: AgentConfig
    access: AccessConfig
    deletion_protection: bool
    enable_apis: bool
    subnet_cidr: str

    @property
    def has_vm(self) -> bool:
        return self.topology in ("compute", "hybrid")

    @property
    def has_database(self) -> bool:
        return self.topology in ("cloudrun", "hybrid")

    @property
    def has_service(self) -> bool:
        return self.topology == "cloudrun"


class _Reader:
    """Typed access to raw config strings; every failure becomes a ConfigError."""

    def __init__(self, source: ConfigSource) -> None:
        self.source = source

    def full(self, key: str) -> str:
        return key if ":" in key else f"{PROJECT_NAME}:{key}"

    def raw(self, key: str) -> str | None:
        namespace, _, name = self.full(key).partition(":")
        value = self.source.get(namespace, name)
        return None if value is None or value == "" else value

    def secret(self, key: str) -> bool:
        namespace, _, name = self.full(key).partition(":")
        return self.source.is_secret(namespace, name)

    def string(self, key: str) -> str | None:
        """The value, else the default; "" (Pulumi.yaml's default for optional keys) is unset."""
        value = self.raw(key)
        value = value if value is not None else DEFAULTS.get(key)
        return value or None

    def require(self, key: str, allowed: str) -> str:
        value = self.string(key)
        if value is None:
            raise ConfigError(self.full(key), None, f"{allowed} (this key is required)")
        return value

    def choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.require(key, ", ".join(choices))
        if value not in choices:
            raise ConfigError(self.full(key), value, ", ".join(choices))
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return bool(DEFAULTS[key])
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ConfigError(self.full(key), value, "true or false")

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        if value is None:
            return int(DEFAULTS[key])
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(self.full(key), value, f"an integer from {low} to {high}") from None
        if not low <= number <= high:
            raise ConfigError(self.full(key), number, f"an integer from {low} to {high}")
        return number

    def json_value(self, key: str, kind: type, allowed: str) -> Any:
        value = self.raw(key)
        if value is None:
            return DEFAULTS[key]
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(self.full(key), value, allowed) from None
        if not isinstance(parsed, kind):
            raise ConfigError(self.full(key), parsed, allowed)
        return parsed

    def string_list(self, key: str, allowed: str) -> list[str]:
        items = self.json_value(key, list, allowed)
        if not all(isinstance(item, str) for item in items):
            raise ConfigError(self.full(key), items, allowed)
        return list(items)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_MACHINE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_SQL_TIER = re.compile(r"^(db-f1-micro|db-g1-small|db-custom-\d+-\d+|db-perf-optimized-N-\d+)$")
_MEMORY = re.compile(r"^(\d+)(Mi|Gi)$")
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_IMAGE = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[\w.-]+|@sha256:[0-9a-f]{64})?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_MEMBER = re.compile(
    r"^((user|group|serviceAccount|domain|principal|principalSet):\S+|allUsers|allAuthenticatedUsers)$"
)
_GIT_SCHEMES = ("file://", "git://", "ssh://", "https://")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(key: str, value: str) -> int | None:
    """`30m`, `4h`, `2d` -> seconds; `none` or `0` -> no limit."""
    if value.lower() in ("none", "off", "0"):
        return None
    match = _DURATION.match(value)
    allowed = "a duration such as 30m, 4h or 2d, from 30s to 120d, or none"
    if not match:
        raise ConfigError(key, value, allowed)
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not MAX_RUN_MIN_S <= seconds <= MAX_RUN_MAX_S:
        raise ConfigError(key, value, allowed)
    return seconds


def _placement(r: _Reader) -> Placement:
    project = r.require("gcp:project", "your GCP project id (pulumi config set gcp:project ID)")
    if not _PROJECT.match(project):
        raise ConfigError("gcp:project", project, "a GCP project id: 6-30 of a-z, 0-9 and -")
    region = r.require("gcp:region", "a GCP region such as europe-west1")
    if not _REGION.match(region):
        raise ConfigError("gcp:region", region, "a GCP region such as europe-west1 or us-central1")
    # Every region has a "-b" zone (not every region has "-a").
    zone = r.string("zone") or f"{region}-b"
    if not re.fullmatch(re.escape(region) + r"-[a-z]", zone):
        raise ConfigError(
            r.full("zone"), zone, f"a zone inside gcp:region {region}, e.g. {region}-b"
        )
    return Placement(project=project, region=region, zone=zone)


def _hour_start(r: _Reader, key: str) -> str:
    value = r.require(key, "HH:00")
    match = _HHMM.match(value)
    if not match or match.group(2) != "00":
        raise ConfigError(r.full(key), value, "a UTC start time on the hour, HH:00 (e.g. 03:00)")
    return value


def _disk(r: _Reader) -> DiskConfig:
    interval = r.integer("snapshotIntervalHours", 1, 24)
    if interval not in SNAPSHOT_INTERVALS_HOURS:
        allowed = ", ".join(str(h) for h in SNAPSHOT_INTERVALS_HOURS)
        raise ConfigError(r.full("snapshotIntervalHours"), interval, allowed)
    return DiskConfig(
        size_gb=r.integer("diskSizeGb", 10, 65536),
        type=r.choice("diskType", DISK_TYPES),
        snapshot_interval_hours=interval,
        snapshot_start_time=_hour_start(r, "snapshotStartTime"),
        snapshot_retention_days=r.integer("snapshotRetentionDays", 1, 3650),
    )


def _vm(r: _Reader, topology: str) -> VmConfig:
    machine_type = r.require("machineType", "a machine type such as e2-standard-2")
    if not _MACHINE.match(machine_type):
        raise ConfigError(
            r.full("machineType"), machine_type, "a machine type such as e2-standard-2"
        )
    image_family = r.require("imageFamily", "an image family such as debian-12")
    image_project = r.require("imageProject", "an image project such as debian-cloud")
    for key, value in (("imageFamily", image_family), ("imageProject", image_project)):
        if not _NAME.match(value):
            raise ConfigError(r.full(key), value, "lower-case letters, digits and -")
    spot = r.boolean("spot")
    action = r.choice("terminationAction", TERMINATION_ACTIONS)
    max_run = parse_duration(r.full("maxRunDuration"), r.require("maxRunDuration", "a duration"))
    if action == "DELETE" and not spot and max_run is None:
        raise ConfigError(
            r.full("terminationAction"),
            action,
            "STOP; DELETE applies only to spot VMs or with a maxRunDuration",
        )
    family = machine_type.split("-", 1)[0]
    if family not in FAMILY_DISK_TYPES:
        raise ConfigError(
            r.full("machineType"),
            machine_type,
            f"a machine type of a known family ({', '.join(sorted(FAMILY_DISK_TYPES))})",
        )
    ssh_user = r.string("sshUser")
    if topology in ("compute", "hybrid"):
        if ssh_user is None:
            raise ConfigError(
                r.full("sshUser"),
                None,
                "your OS Login POSIX user name, required for the compute and hybrid "
                "topologies (gcloud compute os-login describe-profile "
                "--format='value(posixAccounts[0].username)')",
            )
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", ssh_user):
            raise ConfigError(
                r.full("sshUser"), ssh_user, "a POSIX user name such as alice_example_com"
            )
    return VmConfig(
        machine_type=machine_type,
        image_family=image_family,
        image_project=image_project,
        boot_disk_size_gb=r.integer("bootDiskSizeGb", 10, 2000),
        spot=spot,
        termination_action=action,
        max_run_duration_s=max_run,
        external_ip=r.boolean("externalIp"),
        ssh_user=ssh_user,
        boot_disk_type=FAMILY_DISK_TYPES[family][0],
    )


def _check_disk_fits_family(r: _Reader, vm: VmConfig, disk: DiskConfig) -> None:
    """pd-* on an N4 or C4 (or Hyperdisk on an E2) is refused by GCE at create time."""
    family = vm.machine_type.split("-", 1)[0]
    allowed = FAMILY_DISK_TYPES[family]
    if disk.type not in allowed:
        raise ConfigError(
            r.full("diskType"),
            disk.type,
            f"{', '.join(allowed)} (what machineType {vm.machine_type}'s family attaches)",
        )


def _image(r: _Reader, key: str, example: str, topology: str) -> str | None:
    """A container image reference, required for the cloudrun topology."""
    image = r.string(key)
    if topology == "cloudrun":
        if image is None:
            raise ConfigError(
                r.full(key),
                None,
                f"a container image, e.g. {example} (required for the cloudrun topology)",
            )
        if not _IMAGE.match(image):
            raise ConfigError(
                r.full(key), image, "a container image reference host/path[:tag|@sha256:digest]"
            )
    return image


def _service(r: _Reader, topology: str) -> ServiceConfig:
    image = _image(
        r, "serviceImage", "europe-docker.pkg.dev/PROJECT/REPO/super-spine:1.0", topology
    )
    agent_image = _image(
        r,
        "agentImage",
        "europe-docker.pkg.dev/PROJECT/REPO/super-spine-agent:TAG (make image)",
        topology,
    )
    low = r.integer("serviceMinInstances", 0, 1000)
    high = r.integer("serviceMaxInstances", 1, 1000)
    if low > high:
        raise ConfigError(
            r.full("serviceMinInstances"), low, f"at most serviceMaxInstances ({high})"
        )
    memory = r.require("serviceMemory", "512Mi to 32Gi")
    match = _MEMORY.match(memory)
    mib = int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1) if match else 0
    if not 512 <= mib <= 32768:
        raise ConfigError(
            r.full("serviceMemory"), memory, "512Mi to 32Gi, written like 512Mi or 2Gi"
        )
    invokers = r.string_list(
        "serviceInvokers", 'a JSON list of IAM members, e.g. ["user:a@example.com"]'
    )
    for member in invokers:
        if not _MEMBER.match(member):
            raise ConfigError(
                r.full("serviceInvokers"),
                member,
                "IAM members: user:, group:, serviceAccount:, domain:, principal:, allUsers",
            )
    return ServiceConfig(
        image=image,
        min_instances=low,
        max_instances=high,
        cpu=r.choice("serviceCpu", SERVICE_CPUS),
        memory=memory,
        ingress=SERVICE_INGRESS[r.choice("serviceIngress", tuple(SERVICE_INGRESS))],
        invokers=tuple(invokers),
        agent_image=agent_image,
    )


def _sql(r: _Reader) -> SqlConfig:
    edition = r.choice("sqlEdition", SQL_EDITIONS)
    tier = r.require("sqlTier", "a Cloud SQL tier")
    if not _SQL_TIER.match(tier):
        raise ConfigError(
            r.full("sqlTier"),
            tier,
            "db-custom-CPU-MEMORY_MB, db-f1-micro, db-g1-small or db-perf-optimized-N-CPU",
        )
    if (edition == "ENTERPRISE_PLUS") != tier.startswith("db-perf-optimized-"):
        raise ConfigError(
            r.full("sqlTier"),
            tier,
            "db-perf-optimized-N-* tiers with sqlEdition ENTERPRISE_PLUS; db-custom-*, "
            "db-f1-micro or db-g1-small with ENTERPRISE",
        )
    start = r.require("sqlBackupStartTime", "HH:MM")
    if not _HHMM.match(start):
        raise ConfigError(r.full("sqlBackupStartTime"), start, "a UTC time HH:MM, e.g. 02:00")
    pitr_max = 35 if edition == "ENTERPRISE_PLUS" else 7
    pitr = r.boolean("sqlPointInTimeRecovery")
    pitr_days = r.integer("sqlPitrDays", 1, pitr_max)
    retained = r.integer("sqlBackupRetentionCount", 1, 365)
    # Cloud SQL refuses transaction logs kept as long as (or longer than) the backups they
    # replay from: transactionLogRetentionDays must be below retainedBackups.
    if pitr and pitr_days >= retained:
        raise ConfigError(
            r.full("sqlPitrDays"),
            pitr_days,
            f"fewer days than sqlBackupRetentionCount ({retained}) backups are kept",
        )
    return SqlConfig(
        tier=tier,
        edition=edition,
        version=r.choice("sqlVersion", SQL_VERSIONS),
        high_availability=r.boolean("sqlHighAvailability"),
        disk_size_gb=r.integer("sqlDiskSizeGb", 10, 65536),
        backup_start_time=start,
        point_in_time_recovery=pitr,
        pitr_days=pitr_days,
        backup_retention_count=retained,
    )


def _bundle(r: _Reader) -> Bundle:
    """The bundle file must exist and be one: checked now, not when the VM first boots."""
    value = r.require("agentBundle", "the path of the bundle `make bundle` builds")
    path = Path(value)
    try:
        return inspect(path if path.is_absolute() else ROOT / path)
    except BundleError as error:
        allowed = f"a bundle from `make bundle`; {error}"
        raise ConfigError(r.full("agentBundle"), value, allowed) from None


def _agent(r: _Reader, topology: str) -> AgentConfig:
    remote = r.string("gitRemote")
    if remote is not None:
        secret = r.secret("gitRemote")
        # It lands in agent.yaml (a quoted YAML string) and in shell scripts: keep it plain.
        if not remote.startswith(_GIT_SCHEMES) or not re.fullmatch(r"[^\s\"'\\`$]+", remote):
            raise ConfigError(
                r.full("gitRemote"),
                remote,
                "a file://, git://, ssh:// or https:// URL without spaces, quotes, ` or $",
                secret=secret,
            )
        # The agent reads credentials from files (docs/contracts.md), never from the URL.
        if re.match(r"^https://[^/@]+:[^/@]*@", remote) or re.match(r"^https://[^/@]+@", remote):
            raise ConfigError(
                r.full("gitRemote"),
                remote,
                "a URL without credentials; put a token in gitToken (pulumi config set --secret)",
                secret=True,
            )
    for key in SECRET_ONLY_KEYS:
        if r.raw(key) is not None and not r.secret(key):
            raise ConfigError(
                r.full(key),
                "<plaintext>",
                f"a secret: pulumi config set --secret {key} ...",
                secret=True,
            )
    return AgentConfig(
        git_remote=remote,
        git_remote_is_secret=remote is not None and r.secret("gitRemote"),
        git_token=r.raw("gitToken"),
        git_ssh_key=r.raw("gitSshKey"),
        bundle=_bundle(r) if topology in ("compute", "hybrid") else None,
    )


def _access(r: _Reader) -> AccessConfig:
    ranges = r.string_list("sshSourceRanges", "a JSON list of CIDR ranges")
    for cidr in ranges:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ConfigError(
                r.full("sshSourceRanges"), cidr, "CIDR ranges such as 35.235.240.0/20"
            ) from None
        if network.prefixlen == 0:
            raise ConfigError(
                r.full("sshSourceRanges"),
                cidr,
                f"specific ranges only, never the whole internet; IAP's range is {IAP_RANGE}",
            )
    labels = r.json_value("labels", dict, "a JSON object of GCP labels")
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ConfigError(
                r.full("labels"),
                {key: value},
                "keys [a-z][a-z0-9_-]{0,62}, values [a-z0-9_-]{0,63} (GCP label rules)",
            )
    return AccessConfig(ssh_source_ranges=tuple(ranges), labels=dict(labels))


# Cloud Run's Direct VPC egress needs a /26 or larger subnet; one rule for every topology.
SUBNET_MAX_PREFIX = 26


def _subnet(r: _Reader) -> str:
    cidr = r.require("subnetCidr", "a private IPv4 range")
    allowed = (
        f"a private IPv4 range from /8 to /{SUBNET_MAX_PREFIX} (Cloud Run's Direct VPC egress "
        "needs /26 or larger), e.g. 10.42.0.0/24"
    )
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        raise ConfigError(r.full("subnetCidr"), cidr, allowed) from None
    if not (
        network.version == 4 and network.is_private and 8 <= network.prefixlen <= SUBNET_MAX_PREFIX
    ):
        raise ConfigError(r.full("subnetCidr"), cidr, allowed)
    return cidr


def _known_keys(r: _Reader) -> None:
    """A misspelt key would silently fall back to its default: refuse it instead."""
    prefix = f"{PROJECT_NAME}:"
    for full in r.source.set_keys():
        name = full.removeprefix(prefix)
        if full.startswith(prefix) and name not in DEFAULTS:
            close = difflib.get_close_matches(name, DEFAULTS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                full,
                "<set>",
                f"{hint}the keys of Pulumi.yaml and README.md ({', '.join(DEFAULTS)})",
                secret=True,
            )


def load_config(source: ConfigSource | None = None) -> StackConfig:
    """Read and validate the whole stack config; raise ConfigError on the first bad value."""
    r = _Reader(source if source is not None else PulumiSource())
    _known_keys(r)
    topology = r.choice("topology", TOPOLOGIES)
    disk, vm = _disk(r), _vm(r, topology)
    if topology in ("compute", "hybrid"):
        _check_disk_fits_family(r, vm, disk)
    return StackConfig(
        topology=topology,
        placement=_placement(r),
        disk=disk,
        vm=vm,
        service=_service(r, topology),
        sql=_sql(r),
        agent=_agent(r, topology),
        access=_access(r),
        deletion_protection=r.boolean("deletionProtection"),
        enable_apis=r.boolean("enableApis"),
        subnet_cidr=_subnet(r),
    )
