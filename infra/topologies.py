"""The three topologies, each a composition of components; returns the stack outputs.

cloudrun = Network + Database + Service
compute  = Network + VM and disk
hybrid   = Network + VM and disk + Database (reached from the VM over private IP)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi

from infra import inventory, scripts
from infra.components import (
    CloudRunService,
    CloudRunServiceArgs,
    Database,
    DatabaseArgs,
    Network,
    NetworkArgs,
    ProjectApis,
    ProjectApisArgs,
    ServiceIdentity,
    ServiceIdentityArgs,
    SpineVm,
    SpineVmArgs,
)
from infra.components.vm import CLOUD_PLATFORM_SCOPE, LOGGING_SCOPES
from infra.config import StackConfig
from infra.naming import Namer, slug

Outputs = dict[str, Any]

VM_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
# cloudresourcemanager: the project-level IAM bindings go through it.
APIS_BASE = (
    "compute.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com",
)
APIS_VM = ("iap.googleapis.com", "oslogin.googleapis.com")
APIS_SQL = (
    "sqladmin.googleapis.com",
    "servicenetworking.googleapis.com",
    "secretmanager.googleapis.com",
)
APIS_RUN = ("run.googleapis.com",)


def _labels(cfg: StackConfig, stack: str) -> dict[str, str]:
    """User labels plus the two that tell who owns a resource."""
    # Stack names may hold capitals, dots or slashes (org/project/stack); label values may not.
    stack_label = slug(stack)[:63]
    return {**cfg.access.labels, "managed-by": "super-spine-kit", "super-spine-stack": stack_label}


def _apis(cfg: StackConfig, names: Namer) -> list[pulumi.Resource]:
    if not cfg.enable_apis:
        return []
    services = list(APIS_BASE)
    if cfg.has_vm:
        services += APIS_VM
    if cfg.has_database:
        services += APIS_SQL
    if cfg.has_service:
        services += APIS_RUN
    args = ProjectApisArgs(project=cfg.placement.project, services=services)
    return [ProjectApis(names.logical("apis"), args)]


def _network(cfg: StackConfig, names: Namer, deps: list[pulumi.Resource]) -> Network:
    args = NetworkArgs(
        region=cfg.placement.region,
        subnet_cidr=cfg.subnet_cidr,
        ssh_source_ranges=cfg.access.ssh_source_ranges,
        with_vm=cfg.has_vm,
        with_private_services=cfg.has_database,
        depends_on=deps,
    )
    return Network(names.logical("net"), args)


def _identity(
    cfg: StackConfig,
    names: Namer,
    workload: str,
    roles: tuple[str, ...],
    deps: list[pulumi.Resource],
) -> ServiceIdentity:
    args = ServiceIdentityArgs(
        project=cfg.placement.project,
        account_id=names.physical(workload, max_len=30),
        display_name=f"super-spine-kit {workload} ({names.stack})",
        project_roles=roles,
        depends_on=deps,
    )
    return ServiceIdentity(names.logical(workload), args)


def _database(
    cfg: StackConfig,
    names: Namer,
    net: Network,
    accessor: ServiceIdentity,
    stack: str,
    deps: list[pulumi.Resource],
) -> Database:
    assert net.private_services is not None
    args = DatabaseArgs(
        project=cfg.placement.project,
        region=cfg.placement.region,
        zone=cfg.placement.zone,
        network_id=net.network.id,
        sql=cfg.sql,
        secret_id=names.physical("db-password", max_len=255),
        labels=_labels(cfg, stack),
        deletion_protection=cfg.deletion_protection,
        accessors=[accessor.member],
        private_services=net.private_services,
        depends_on=deps,
    )
    return Database(names.logical("sql"), args)


def _vm(
    cfg: StackConfig,
    names: Namer,
    net: Network,
    identity: ServiceIdentity,
    stack: str,
    scopes: tuple[str, ...],
    deps: list[pulumi.Resource],
) -> SpineVm:
    remote = None if cfg.agent.git_remote_is_secret else cfg.agent.git_remote
    args = SpineVmArgs(
        region=cfg.placement.region,
        zone=cfg.placement.zone,
        subnet_id=net.subnet.id,
        service_account_email=identity.email,
        scopes=scopes,
        vm=cfg.vm,
        disk=cfg.disk,
        labels=_labels(cfg, stack),
        deletion_protection=cfg.deletion_protection,
        startup_script=scripts.startup_script(remote),
        shutdown_script=scripts.shutdown_script(),
        depends_on=deps,
    )
    return SpineVm(names.logical("vm"), args)


def _inventory(cfg: StackConfig, vm: SpineVm, db: Database | None) -> pulumi.Output[str]:
    """YAML inventory; a secret output whenever it carries a secret (remote, token, key)."""
    parts: list[pulumi.Input[Any]] = [vm.instance.name, vm.internal_ip, vm.external_ip or ""]
    if db is not None:
        parts += [
            db.connection_name,
            db.private_ip,
            db.database.name,
            db.user.name,
            db.password_secret.id,
        ]

    def render(values: list[Any]) -> str:
        name, internal_ip, external_ip = values[0], values[1], values[2]
        postgres = None
        if db is not None:
            postgres = {
                "connection_name": values[3],
                "host": values[4],
                "port": 5432,
                "database": values[5],
                "user": values[6],
                "password_secret": values[7],
                "sslmode": "require",
            }
        host = inventory.HostSpec(
            name=name,
            project=cfg.placement.project,
            zone=cfg.placement.zone,
            internal_ip=internal_ip,
            external_ip=external_ip or None,
            ssh_user=cfg.vm.ssh_user or "",
            git_remote=cfg.agent.git_remote,
            git_token=cfg.agent.git_token,
            git_ssh_key=cfg.agent.git_ssh_key,
            postgres=postgres,
        )
        return inventory.render_inventory([host])

    rendered = pulumi.Output.all(*parts).apply(render)
    return pulumi.Output.secret(rendered) if cfg.agent.has_secrets else rendered


def _vm_outputs(cfg: StackConfig, vm: SpineVm, identity: ServiceIdentity) -> Outputs:
    name = vm.instance.name
    return {
        "instanceName": name,
        "zone": cfg.placement.zone,
        "internalIp": vm.internal_ip,
        "externalIp": vm.external_ip,
        "diskName": vm.disk.name,
        "snapshotPolicy": vm.snapshot_policy.name,
        "vmServiceAccount": identity.email,
        "sshCommand": name.apply(
            lambda n: (
                f"gcloud compute ssh {n} --zone={cfg.placement.zone} "
                f"--project={cfg.placement.project} --tunnel-through-iap"
            )
        ),
    }


def _db_outputs(db: Database) -> Outputs:
    return {
        "sqlConnectionName": db.connection_name,
        "sqlInstanceName": db.instance.name,
        "sqlPrivateIp": db.private_ip,
        "databaseName": db.database.name,
        "databaseUser": db.user.name,
        "dbPasswordSecretId": db.password_secret.id,
    }


def build_cloudrun(cfg: StackConfig, names: Namer, stack: str) -> Outputs:
    apis = _apis(cfg, names)
    net = _network(cfg, names, apis)
    identity = _identity(cfg, names, "run", (), apis)
    db = _database(cfg, names, net, identity, stack, apis)
    service = CloudRunService(
        names.logical("svc"),
        CloudRunServiceArgs(
            region=cfg.placement.region,
            service=cfg.service,
            service_account_email=identity.email,
            network_id=net.network.id,
            subnet_id=net.subnet.id,
            sql_connection_name=db.connection_name,
            database_name=db.database.name,
            database_user=db.user.name,
            password_secret_id=db.password_secret.id,
            labels=_labels(cfg, stack),
            deletion_protection=cfg.deletion_protection,
            depends_on=[*apis, *db.grants, db.password_version],
        ),
    )
    return {
        "topology": cfg.topology,
        "serviceUrl": service.url,
        "serviceAccount": identity.email,
        "network": net.network.name,
        **_db_outputs(db),
    }


def build_compute(cfg: StackConfig, names: Namer, stack: str) -> Outputs:
    apis = _apis(cfg, names)
    net = _network(cfg, names, apis)
    identity = _identity(cfg, names, "vm", VM_ROLES, apis)
    vm = _vm(cfg, names, net, identity, stack, LOGGING_SCOPES, apis)
    return {
        "topology": cfg.topology,
        "network": net.network.name,
        **_vm_outputs(cfg, vm, identity),
        "ansibleInventory": _inventory(cfg, vm, None),
    }


def build_hybrid(cfg: StackConfig, names: Namer, stack: str) -> Outputs:
    apis = _apis(cfg, names)
    net = _network(cfg, names, apis)
    identity = _identity(cfg, names, "vm", VM_ROLES, apis)
    db = _database(cfg, names, net, identity, stack, apis)
    vm = _vm(cfg, names, net, identity, stack, (CLOUD_PLATFORM_SCOPE,), apis)
    return {
        "topology": cfg.topology,
        "network": net.network.name,
        **_vm_outputs(cfg, vm, identity),
        **_db_outputs(db),
        "ansibleInventory": _inventory(cfg, vm, db),
    }


BUILDERS: dict[str, Callable[[StackConfig, Namer, str], Outputs]] = {
    "cloudrun": build_cloudrun,
    "compute": build_compute,
    "hybrid": build_hybrid,
}


def build(cfg: StackConfig, stack: str) -> Outputs:
    """Declare the chosen topology's resources; return its stack outputs."""
    return BUILDERS[cfg.topology](cfg, Namer(stack), stack)
