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
    AgentSecrets,
    AgentSecretsArgs,
    BundleStore,
    BundleStoreArgs,
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
from infra.components.vm import CLOUD_PLATFORM_SCOPE, LOGGING_SCOPES, STORAGE_READ_SCOPE
from infra.config import ConfigError, StackConfig
from infra.naming import Namer, NameTooLong, check_stack_name, slug

Outputs = dict[str, Any]

VM_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter")
# cloudresourcemanager: the project-level IAM bindings go through it.
APIS_BASE = (
    "compute.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com",
)
APIS_VM = (
    "iap.googleapis.com",
    "oslogin.googleapis.com",
    "storage.googleapis.com",
    "secretmanager.googleapis.com",
)
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
    # Topologies share some APIs (Secret Manager): each one is enabled once.
    args = ProjectApisArgs(project=cfg.placement.project, services=list(dict.fromkeys(services)))
    return [ProjectApis(names.logical("apis"), args)]


def _network(cfg: StackConfig, names: Namer, deps: list[pulumi.Resource]) -> Network:
    args = NetworkArgs(
        region=cfg.placement.region,
        subnet_cidr=cfg.subnet_cidr,
        ssh_source_ranges=cfg.access.ssh_source_ranges,
        with_vm=cfg.has_vm,
        with_private_services=cfg.has_database,
        retain_on_delete=cfg.has_service,
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
    *,
    via_connector: bool,
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
        iam_logins=[accessor.email],
        connector_clients=[accessor.member] if via_connector else [],
        private_services=net.private_services,
        depends_on=deps,
    )
    return Database(names.logical("sql"), args)


def _agent_secrets(
    cfg: StackConfig, names: Namer, identity: ServiceIdentity, stack: str, deps: list[Any]
) -> AgentSecrets | None:
    """The role variables that must not sit in metadata, in Secret Manager."""
    agent = cfg.agent
    values: dict[str, tuple[str, str]] = {}
    if agent.git_remote and agent.git_remote_is_secret:
        values["spine_git_remote"] = (names.physical("git-remote", 255), agent.git_remote)
    if agent.git_token:
        values["spine_git_token"] = (names.physical("git-token", 255), agent.git_token)
    if agent.git_ssh_key:
        values["spine_git_ssh_key"] = (names.physical("git-ssh-key", 255), agent.git_ssh_key)
    if not values:
        return None
    args = AgentSecretsArgs(
        project=cfg.placement.project,
        values=values,
        accessor=identity.member,
        labels=_labels(cfg, stack),
        depends_on=deps,
    )
    return AgentSecrets(names.logical("agent-secrets"), args)


def _postgres_vars(db: Database | None) -> pulumi.Output[dict[str, Any] | None]:
    """The hybrid VM's spine_postgres_* variables (None without a database)."""
    if db is None:
        return pulumi.Output.from_input(None)
    assert db.iam_users, "the VM's service account logs in as itself"
    return pulumi.Output.all(
        db.private_ip,
        db.database.name,
        db.iam_users[0].name,
        db.server_ca_cert,
        db.connection_name,
    ).apply(
        lambda v: scripts.postgres_vars(
            host=v[0], database=v[1], user=v[2], ca_cert=v[3], connection_name=v[4]
        )
    )


def _vm(
    cfg: StackConfig,
    names: Namer,
    net: Network,
    identity: ServiceIdentity,
    stack: str,
    deps: list[pulumi.Resource],
    db: Database | None = None,
) -> SpineVm:
    """The self-healing VM, its bundle and its secrets (see components/vm.py)."""
    assert cfg.agent.bundle is not None  # config requires it for VM topologies
    store = BundleStore(
        names.logical("bundle"),
        BundleStoreArgs(
            location=cfg.placement.region,
            bundle=cfg.agent.bundle,
            reader=identity.member,
            labels=_labels(cfg, stack),
            depends_on=deps,
        ),
    )
    secrets = _agent_secrets(cfg, names, identity, stack, deps)
    secret_urls: dict[str, pulumi.Output[str]] = secrets.access_urls if secrets else {}
    plain_remote = None if cfg.agent.git_remote_is_secret else cfg.agent.git_remote
    bundle_sha = cfg.agent.bundle.sha256
    metadata = pulumi.Output.all(
        store.url, pulumi.Output.all(**secret_urls), _postgres_vars(db)
    ).apply(
        lambda values: scripts.vm_metadata(
            startup=scripts.startup_script(),
            bundle_url=values[0],
            bundle_sha256=bundle_sha,
            variables=scripts.role_vars(plain_remote, values[2]),
            secret_urls=values[1],
        )
    )
    # Reading the bucket, writing logs; Secret Manager has no narrower scope than
    # cloud-platform, so a VM gets it only when it has secrets to read (IAM then limits it
    # to those secrets: one accessor binding each).
    scopes: tuple[str, ...] = (*LOGGING_SCOPES, STORAGE_READ_SCOPE)
    if secrets is not None or cfg.has_database:
        scopes = (*scopes, CLOUD_PLATFORM_SCOPE)
    waits: list[pulumi.Resource] = [*deps, store.object, store.reader]
    if secrets is not None:
        waits += secrets.versions
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
        metadata=metadata,
        instance_name=names.logical("vm"),
        depends_on=waits,
    )
    return SpineVm(names.logical("vm"), args)


def _inventory(cfg: StackConfig, vm: SpineVm, db: Database | None) -> pulumi.Output[str]:
    """YAML inventory; a secret output whenever it carries a secret (remote, token, key)."""

    def render(values: list[Any]) -> str:
        host = inventory.HostSpec(
            group=values[0],
            project=cfg.placement.project,
            zone=cfg.placement.zone,
            ssh_user=cfg.vm.ssh_user or "",
            git_remote=cfg.agent.git_remote,
            git_token=cfg.agent.git_token,
            git_ssh_key=cfg.agent.git_ssh_key,
            postgres=values[1],
        )
        return inventory.render_inventory([host])

    rendered = pulumi.Output.all(vm.group.name, _postgres_vars(db)).apply(render)
    return pulumi.Output.secret(rendered) if cfg.agent.has_secrets else rendered


def _vm_outputs(cfg: StackConfig, vm: SpineVm, identity: ServiceIdentity) -> Outputs:
    group = vm.group.name
    project, zone = cfg.placement.project, cfg.placement.zone
    return {
        "instanceGroup": group,
        "zone": cfg.placement.zone,
        "diskName": vm.disk.name,
        "snapshotPolicy": vm.snapshot_policy.name,
        "healthCheck": vm.health_check.name,
        "vmServiceAccount": identity.email,
        "sshCommand": group.apply(
            lambda g: (
                f'gcloud compute ssh "$({inventory.current_instance_command(g, project, zone)})" '
                f"--zone={zone} --project={project} --tunnel-through-iap"
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
        "databaseIamUser": db.iam_users[0].name,
        "sqlServerCaCert": db.server_ca_cert,
    }


def build_cloudrun(cfg: StackConfig, names: Namer, stack: str) -> Outputs:
    apis = _apis(cfg, names)
    net = _network(cfg, names, apis)
    identity = _identity(cfg, names, "run", (), apis)
    db = _database(cfg, names, net, identity, stack, apis, via_connector=True)
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
            database_user=db.iam_users[0].name,
            labels=_labels(cfg, stack),
            deletion_protection=cfg.deletion_protection,
            depends_on=[*apis, *db.grants],
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
    vm = _vm(cfg, names, net, identity, stack, apis)
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
    # The agent reaches PostgreSQL over private IP, TLS verified against the instance's CA,
    # logging in as the VM's service account with a metadata-server token: it needs
    # roles/cloudsql.instanceUser, no Cloud SQL client role (no connector, no proxy) and no
    # password.
    db = _database(cfg, names, net, identity, stack, apis, via_connector=False)
    vm = _vm(cfg, names, net, identity, stack, [*apis, *db.grants], db)
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
    try:
        check_stack_name(stack, cfg.placement.project)
    except NameTooLong as error:
        raise ConfigError("stack", stack, str(error)) from None
    return BUILDERS[cfg.topology](cfg, Namer(stack), stack)
