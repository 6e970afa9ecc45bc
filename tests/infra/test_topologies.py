"""The recorded resource graph of each topology, under Pulumi's mocks."""

from __future__ import annotations

import json

import pytest
import yaml

from infra import scripts
from infra.config import IAP_RANGE, PROJECT_NAME
from infra.offline import Recording
from tests.infra.conftest import COMPUTE_VARIANT, SECRET_KEYS, SECRET_VARIANT, find, record

TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
GROUP = "gcp:compute/instanceGroupManager:InstanceGroupManager"
HEALTH = "gcp:compute/healthCheck:HealthCheck"
BUCKET = "gcp:storage/bucket:Bucket"
OBJECT = "gcp:storage/bucketObject:BucketObject"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
CONNECTION = "gcp:servicenetworking/connection:Connection"
DISK = "gcp:compute/disk:Disk"
SQL = "gcp:sql/databaseInstance:DatabaseInstance"
RUN = "gcp:cloudrunv2/service:Service"
FIREWALL = "gcp:compute/firewall:Firewall"
IAM = "gcp:projects/iAMMember:IAMMember"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
ACCOUNT = "gcp:serviceaccount/account:Account"
COMPONENT_PREFIX = f"{PROJECT_NAME}:infra:"
MOCK_PASSWORD = "offline-mock-password-not-real"

EXPECTED_TYPES = {
    "cloudrun": {
        "gcp:compute/network:Network",
        "gcp:compute/subnetwork:Subnetwork",
        "gcp:compute/globalAddress:GlobalAddress",
        "gcp:servicenetworking/connection:Connection",
        ACCOUNT,
        IAM,
        SQL,
        "gcp:sql/database:Database",
        "gcp:sql/user:User",
        "random:index/randomPassword:RandomPassword",
        "gcp:secretmanager/secret:Secret",
        "gcp:secretmanager/secretVersion:SecretVersion",
        RUN,
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
        "gcp:projects/service:Service",
    },
    "compute": {
        "gcp:compute/network:Network",
        "gcp:compute/subnetwork:Subnetwork",
        FIREWALL,
        "gcp:compute/router:Router",
        "gcp:compute/routerNat:RouterNat",
        ACCOUNT,
        IAM,
        DISK,
        "gcp:compute/resourcePolicy:ResourcePolicy",
        "gcp:compute/diskResourcePolicyAttachment:DiskResourcePolicyAttachment",
        TEMPLATE,
        GROUP,
        HEALTH,
        BUCKET,
        OBJECT,
        BUCKET_IAM,
        "gcp:projects/service:Service",
    },
}
EXPECTED_TYPES["hybrid"] = (EXPECTED_TYPES["compute"] | EXPECTED_TYPES["cloudrun"]) - {
    RUN,
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
}
EXPECTED_COMPONENTS = {
    "cloudrun": {"ProjectApis", "Network", "ServiceIdentity", "Database", "CloudRunService"},
    "compute": {"ProjectApis", "Network", "ServiceIdentity", "BundleStore", "SpineVm"},
    "hybrid": {"ProjectApis", "Network", "ServiceIdentity", "Database", "BundleStore", "SpineVm"},
}
EXPECTED_OUTPUTS = {
    "cloudrun": {"serviceUrl", "sqlConnectionName", "sqlInstanceName", "sqlPrivateIp"},
    "compute": {"instanceGroup", "zone", "healthCheck", "diskName", "ansibleInventory"},
    "hybrid": {
        "instanceGroup",
        "zone",
        "healthCheck",
        "diskName",
        "ansibleInventory",
        "sqlConnectionName",
        "sqlInstanceName",
        "sqlPrivateIp",
        "dbPasswordSecretId",
    },
}


def _custom(recording: Recording) -> list:
    return [r for r in recording.resources if r.custom]


def _components(recording: Recording) -> list:
    return [r for r in recording.resources if not r.custom]


# --- Whole graph ---------------------------------------------------------------------------


def test_topology_declares_exactly_its_resource_types(any_topology: tuple[str, Recording]) -> None:
    topology, recording = any_topology
    assert {r.type for r in _custom(recording)} == EXPECTED_TYPES[topology]


def test_topology_is_built_from_its_components(any_topology: tuple[str, Recording]) -> None:
    topology, recording = any_topology
    kinds = {r.type.removeprefix(COMPONENT_PREFIX) for r in _components(recording)}
    assert kinds == EXPECTED_COMPONENTS[topology]


def test_every_resource_is_a_child_of_a_component(any_topology: tuple[str, Recording]) -> None:
    _, recording = any_topology
    component_urns = {c.urn for c in _components(recording)}
    for resource in _custom(recording):
        assert resource.parent in component_urns, resource.name
    for component in _components(recording):
        assert component.parent.split("::")[2] == "pulumi:pulumi:Stack"


def test_every_component_registers_outputs(any_topology: tuple[str, Recording]) -> None:
    _, recording = any_topology
    for component in _components(recording):
        assert component.registered_outputs, component.name


def test_every_name_comes_from_the_naming_helper(any_topology: tuple[str, Recording]) -> None:
    _, recording = any_topology
    assert all(r.name.startswith("ssk-dev-") for r in recording.resources)
    assert len({r.urn for r in recording.resources}) == len(recording.resources)


def test_two_stacks_do_not_collide_in_one_project() -> None:
    dev, prod = record("hybrid"), record("hybrid", stack="prod")
    explicit = [(ACCOUNT, "accountId"), ("gcp:secretmanager/secret:Secret", "secretId")]
    for type_, key in explicit:
        dev_names = {r.inputs[key] for r in dev.of_type(type_)}
        prod_names = {r.inputs[key] for r in prod.of_type(type_)}
        assert dev_names and not dev_names & prod_names
    assert not {r.name for r in dev.resources} & {r.name for r in prod.resources}


def test_outputs_per_topology(any_topology: tuple[str, Recording]) -> None:
    topology, recording = any_topology
    assert EXPECTED_OUTPUTS[topology] <= set(recording.outputs)
    assert recording.outputs["topology"] == topology


def test_no_output_ever_holds_the_database_password(any_topology: tuple[str, Recording]) -> None:
    _, recording = any_topology
    assert MOCK_PASSWORD not in json.dumps(recording.outputs)
    for component in _components(recording):
        assert MOCK_PASSWORD not in json.dumps(component.registered_outputs)


def test_every_resource_waits_for_the_project_apis(any_topology: tuple[str, Recording]) -> None:
    """A component's depends_on is not inherited, so each child must carry it itself."""
    _, recording = any_topology
    services = {s.urn for s in recording.of_type("gcp:projects/service:Service")}
    assert services
    for resource in _custom(recording):
        if resource.type not in ("gcp:projects/service:Service",):
            assert services <= set(resource.dependencies), resource.name


def test_labels_mark_owner_and_stack(any_topology: tuple[str, Recording]) -> None:
    _, recording = any_topology
    for resource in recording.of_type(DISK) + recording.of_type(TEMPLATE):
        assert resource.inputs["labels"]["managed-by"] == "super-spine-kit"
        assert resource.inputs["labels"]["team"] == "platform"
        assert resource.inputs["labels"]["super-spine-stack"] == "dev"


def test_stack_label_is_a_valid_gcp_label() -> None:
    recording = record("compute", stack="Acme/Spine/Prod.EU")
    assert recording.one(DISK).inputs["labels"]["super-spine-stack"] == "acme-spine-prod-eu"


# --- Network ------------------------------------------------------------------------------


def test_network_is_custom_mode_with_private_google_access(
    any_topology: tuple[str, Recording],
) -> None:
    _, recording = any_topology
    assert recording.one("gcp:compute/network:Network").inputs["autoCreateSubnetworks"] is False
    subnet = recording.one("gcp:compute/subnetwork:Subnetwork").inputs
    assert subnet["privateIpGoogleAccess"] is True and subnet["region"] == "europe-west1"


def test_ssh_is_open_only_to_iap_by_default() -> None:
    recording = record("compute")
    assert len(recording.of_type(FIREWALL)) == 2
    rule = find(recording, FIREWALL, "allow-ssh").inputs
    assert rule["sourceRanges"] == [IAP_RANGE]
    assert rule["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
    assert rule["targetTags"] == ["super-spine-vm"]


def test_only_googles_health_checkers_reach_the_health_port() -> None:
    rule = find(record("compute"), FIREWALL, "allow-health").inputs
    assert sorted(rule["sourceRanges"]) == ["130.211.0.0/22", "35.191.0.0/16"]
    assert rule["allows"] == [{"protocol": "tcp", "ports": [str(scripts.HEALTH_PORT)]}]
    assert rule["targetTags"] == ["super-spine-vm"]


def test_ssh_ranges_come_from_config() -> None:
    rule = find(record("compute", **COMPUTE_VARIANT), FIREWALL, "allow-ssh").inputs
    assert rule["sourceRanges"] == ["198.51.100.0/24"]


def test_no_ssh_or_nat_without_a_vm() -> None:
    recording = record("cloudrun")
    assert not recording.of_type(FIREWALL) and not recording.of_type(
        "gcp:compute/routerNat:RouterNat"
    )


def test_private_service_access_for_cloud_sql(any_topology: tuple[str, Recording]) -> None:
    topology, recording = any_topology
    connections = recording.of_type(CONNECTION)
    if topology == "compute":
        assert not connections
        return
    address = recording.one("gcp:compute/globalAddress:GlobalAddress").inputs
    assert address["purpose"] == "VPC_PEERING" and address["addressType"] == "INTERNAL"
    assert connections[0].inputs["service"] == "servicenetworking.googleapis.com"
    sql = recording.one(SQL)
    assert connections[0].urn in sql.dependencies


def test_destroy_removes_the_private_services_peering(any_topology: tuple[str, Recording]) -> None:
    """ABANDON would leave the peering, which then blocks deleting the network (issue 10, 4)."""
    _, recording = any_topology
    for connection in recording.of_type(CONNECTION):
        assert connection.inputs.get("deletionPolicy", "DELETE") == "DELETE"
        assert not connection.retain_on_delete


def test_cloud_run_stacks_keep_subnet_and_network_on_destroy() -> None:
    """Direct VPC egress holds subnet addresses for a while after the service is deleted."""
    recording = record("cloudrun")
    for type_ in ("gcp:compute/subnetwork:Subnetwork", "gcp:compute/network:Network"):
        assert recording.one(type_).retain_on_delete, type_
    assert not record("hybrid").one("gcp:compute/subnetwork:Subnetwork").retain_on_delete

# --- Service accounts ---------------------------------------------------------------------

BROAD_ROLES = {"roles/owner", "roles/editor", "roles/viewer", "roles/iam.serviceAccountUser"}


def test_one_service_account_per_workload(any_topology: tuple[str, Recording]) -> None:
    topology, recording = any_topology
    accounts = [a.inputs["accountId"] for a in recording.of_type(ACCOUNT)]
    assert accounts == ["ssk-dev-run"] if topology == "cloudrun" else accounts == ["ssk-dev-vm"]


def test_no_broad_roles_and_sql_client_only_for_this_instance(
    any_topology: tuple[str, Recording],
) -> None:
    _, recording = any_topology
    for binding in recording.of_type(IAM):
        assert binding.inputs["role"] not in BROAD_ROLES
        if binding.inputs["role"] == "roles/cloudsql.client":
            expression = binding.inputs["condition"]["expression"]
            assert "projects/acme-spine-1/instances/ssk-dev-sql-pg-" in expression


def test_no_workload_can_read_the_database_password(any_topology: tuple[str, Recording]) -> None:
    """The agents log in as their service accounts (IAM database authentication): the
    built-in user's password is for operators only, and no workload is granted it."""
    _, recording = any_topology
    assert not recording.of_type(SECRET_IAM)
    assert not any(
        b.inputs["role"] == "roles/secretmanager.secretAccessor" for b in recording.of_type(IAM)
    )


USER = "gcp:sql/user:User"


@pytest.mark.parametrize(("topology", "workload"), [("cloudrun", "run"), ("hybrid", "vm")])
def test_the_workload_logs_in_to_cloud_sql_as_its_service_account(
    topology: str, workload: str
) -> None:
    recording = record(topology)
    sql = recording.one(SQL).inputs
    flags = {f["name"]: f["value"] for f in sql["settings"]["databaseFlags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    iam_user = find(recording, USER, "iam").inputs
    # Cloud SQL's PostgreSQL user for a service account: its email less .gserviceaccount.com
    assert iam_user["name"] == f"ssk-dev-{workload}@acme-spine-1.iam"
    assert iam_user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    # It creates the agent's schema and runs its migrations, as the built-in user could.
    assert iam_user["databaseRoles"] == ["cloudsqlsuperuser"]
    assert recording.outputs["databaseIamUser"] == iam_user["name"]
    login = find(recording, IAM, "login").inputs
    assert login["role"] == "roles/cloudsql.instanceUser"
    email = f"ssk-dev-{workload}@acme-spine-1.iam.gserviceaccount.com"
    assert login["member"] == f"serviceAccount:{email}"
    assert "projects/acme-spine-1/instances/ssk-dev-sql-pg-" in login["condition"]["expression"]


# --- Database -----------------------------------------------------------------------------


@pytest.mark.parametrize("topology", ["cloudrun", "hybrid"])
def test_sql_is_private_encrypted_backed_up_and_protected(topology: str) -> None:
    sql = record(topology).one(SQL)
    settings = sql.inputs["settings"]
    assert sql.inputs["databaseVersion"] == "POSTGRES_16"
    assert settings["ipConfiguration"]["ipv4Enabled"] is False
    assert settings["ipConfiguration"]["privateNetwork"].endswith(
        "/global/networks/ssk-dev-net-vpc-0a1b2c3"
    )
    assert settings["ipConfiguration"]["sslMode"] == "ENCRYPTED_ONLY"
    backup = settings["backupConfiguration"]
    assert backup["enabled"] is True and backup["pointInTimeRecoveryEnabled"] is True
    assert backup["transactionLogRetentionDays"] == 7
    # autoresize grows the disk: diskSize is ignored after creation, or an update would
    # try to replace the instance after a refresh (issue 10, defect 3)
    assert settings["diskAutoresize"] is True and "settings.diskSize" in sql.ignore_changes
    assert backup["backupRetentionSettings"] == {"retainedBackups": 14, "retentionUnit": "COUNT"}
    assert settings["retainBackupsOnDelete"] is True
    assert settings["availabilityType"] == "REGIONAL" and settings["edition"] == "ENTERPRISE"
    # Deletion protection at the API level, in the provider, and in Pulumi itself.
    assert (
        settings["deletionProtectionEnabled"] is True and sql.inputs["deletionProtection"] is True
    )
    assert sql.protect and sql.retain_on_delete


def test_database_password_is_generated_and_kept_secret() -> None:
    recording = record("cloudrun")
    assert recording.one("random:index/randomPassword:RandomPassword").inputs["length"] >= 32
    user = find(recording, USER, "user")
    version = recording.one("gcp:secretmanager/secretVersion:SecretVersion")
    assert "password" in user.secret_paths and user.inputs["password"] == MOCK_PASSWORD
    assert "secretData" in version.secret_paths


def test_without_deletion_protection_nothing_is_protected() -> None:
    recording = record("hybrid", deletionProtection="false", maxRunDuration="none")
    assert not any(r.protect or r.retain_on_delete for r in recording.resources)
    sql = recording.one(SQL)
    assert sql.inputs["settings"]["deletionProtectionEnabled"] is False


# --- Cloud Run ----------------------------------------------------------------------------


def test_cloud_run_uses_the_v2_api_with_its_own_service_account() -> None:
    recording = record("cloudrun")
    assert not [r for r in recording.resources if r.type.startswith("gcp:cloudrun/")]
    template = recording.one(RUN).inputs["template"]
    assert template["serviceAccount"] == "ssk-dev-run@acme-spine-1.iam.gserviceaccount.com"


def _containers(recording: Recording) -> dict[str, dict]:
    return {c["name"]: c for c in recording.one(RUN).inputs["template"]["containers"]}


def _envs(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("envs", [])}


def test_cloud_run_runs_the_app_and_the_agent_as_its_sidecar() -> None:
    recording = record("cloudrun")
    containers = _containers(recording)
    assert list(containers) == ["app", "agent"]
    app, agent = containers["app"], containers["agent"]
    assert app["image"] == "europe-docker.pkg.dev/acme-spine-1/spine/super-spine:1.0.0"
    assert agent["image"] == (
        "europe-docker.pkg.dev/acme-spine-1/spine/super-spine-agent:0.1.0-0123456789abcdef"
    )
    # The app is the ingress container; the agent has no port.
    assert app["ports"] == {"containerPort": 8080}
    assert "ports" not in agent
    # The app starts once the agent passes its startup probe on its health-only port.
    assert app["dependsOns"] == ["agent"]
    probe = agent["startupProbe"]
    assert probe["httpGet"] == {"path": "/v1/health", "port": 8091}
    assert _envs(agent)["SUPER_SPINE_API__HEALTH_PORT"] == "8091"


def test_cloud_run_shares_the_agents_socket_on_an_in_memory_volume() -> None:
    recording = record("cloudrun")
    template = recording.one(RUN).inputs["template"]
    volumes = {v["name"]: v for v in template["volumes"]}
    assert volumes["spine-socket"]["emptyDir"]["medium"] == "MEMORY"
    assert volumes["spine-data"]["emptyDir"]["medium"] == "MEMORY"
    app, agent = _containers(recording)["app"], _containers(recording)["agent"]
    mounts = {c: {m["name"]: m["mountPath"] for m in x["volumeMounts"]} for c, x in
              (("app", app), ("agent", agent))}
    assert mounts["app"] == {"spine-socket": "/run/super-spine"}
    assert mounts["agent"]["spine-socket"] == "/run/super-spine"
    socket = "/run/super-spine/spine-agent.sock"
    assert _envs(app) == {"SUPER_SPINE_SOCKET": socket}
    assert _envs(agent)["SUPER_SPINE_API__SOCKET"] == socket


def test_cloud_run_agent_writes_to_cloud_sql_synchronously_within_the_grace() -> None:
    recording = record("cloudrun")
    template = recording.one(RUN).inputs["template"]
    connection = recording.outputs["sqlConnectionName"]
    assert {"name": "cloudsql", "cloudSqlInstance": {"instances": [connection]}} in template[
        "volumes"
    ]
    agent = _containers(recording)["agent"]
    assert {"name": "cloudsql", "mountPath": "/cloudsql"} in agent["volumeMounts"]
    envs = _envs(agent)
    user = recording.outputs["databaseIamUser"]
    assert envs["SUPER_SPINE_POSTGRES__DSN"] == (
        f"host=/cloudsql/{connection} dbname=superspine user={user}"
    )
    assert envs["SUPER_SPINE_POSTGRES__AUTH"] == "iam"
    assert envs["SUPER_SPINE_POSTGRES__WRITE"] == "sync"
    # Cloud Run sends SIGTERM and SIGKILLs 10 s later.
    assert envs["SUPER_SPINE_STOP_BUDGET"] == "8s"
    # No password anywhere: not in an env, not as a secret reference.
    for container in _containers(recording).values():
        for env in container.get("envs", []):
            assert "valueSource" not in env and "PASSWORD" not in env["name"]
    assert template["vpcAccess"]["egress"] == "PRIVATE_RANGES_ONLY"
    # The agent's listener must not be throttled between requests.
    assert all(c["resources"]["cpuIdle"] is False for c in _containers(recording).values())


def test_cloud_run_scaling_ingress_and_invokers_follow_config() -> None:
    recording = record(
        "cloudrun",
        serviceMinInstances="1",
        serviceMaxInstances="5",
        serviceIngress="internal-and-cloud-load-balancing",
        serviceInvokers=[
            "user:a@example.com",
            "serviceAccount:b@acme-spine-1.iam.gserviceaccount.com",
        ],
    )
    run = recording.one(RUN)
    assert run.inputs["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 5}
    assert run.inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    invokers = recording.of_type("gcp:cloudrunv2/serviceIamMember:ServiceIamMember")
    assert sorted(i.inputs["member"] for i in invokers) == [
        "serviceAccount:b@acme-spine-1.iam.gserviceaccount.com",
        "user:a@example.com",
    ]
    assert all(i.inputs["role"] == "roles/run.invoker" for i in invokers)


def test_cloud_run_is_deployed_after_its_grants() -> None:
    recording = record("cloudrun")
    run = recording.one(RUN)
    for grant in [
        find(recording, IAM, "client"),
        find(recording, IAM, "login"),
        find(recording, USER, "iam"),
    ]:
        assert grant.urn in run.dependencies


def test_cloud_run_is_internal_only_by_default() -> None:
    assert record("cloudrun").one(RUN).inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"


# --- VM and disk --------------------------------------------------------------------------


@pytest.mark.parametrize("topology", ["compute", "hybrid"])
def test_data_disk_is_separate_protected_and_attached_by_device_name(topology: str) -> None:
    recording = record(topology)
    disk = recording.one(DISK)
    assert disk.inputs["type"] == "pd-ssd" and disk.inputs["size"] == 50
    assert disk.inputs["zone"] == "europe-west1-c"
    assert disk.protect and disk.retain_on_delete
    assert disk.inputs["createSnapshotBeforeDestroy"] is True
    boot, data = recording.one(TEMPLATE).inputs["disks"]
    assert boot["boot"] is True and boot["autoDelete"] is True  # the boot disk only
    assert data["deviceName"] == "super-spine-disk" and data["mode"] == "READ_WRITE"
    assert data["source"] == recording.outputs["diskName"]  # the separate resource, by name
    assert data["autoDelete"] is False


@pytest.mark.parametrize("topology", ["compute", "hybrid"])
def test_the_group_keeps_one_vm_with_the_stateful_disk_and_heals_it(topology: str) -> None:
    recording = record(topology)
    group = recording.one(GROUP).inputs
    assert group["targetSize"] == 1 and group["zone"] == "europe-west1-c"
    assert group["statefulDisks"] == [{"deviceName": "super-spine-disk", "deleteRule": "NEVER"}]
    template = recording.one(TEMPLATE).name
    assert f"/global/instanceTemplates/{template}-" in group["versions"][0]["instanceTemplate"]
    health = recording.outputs["healthCheck"]
    assert group["autoHealingPolicies"]["healthCheck"].endswith(f"/healthchecks/{health}")
    assert group["autoHealingPolicies"]["initialDelaySec"] >= 600
    assert group["instanceLifecyclePolicy"] == {
        "defaultActionOnFailure": "REPAIR",
        "forceUpdateOnRepair": "YES",
    }
    update = group["updatePolicy"]
    # One read-write disk: replace in place, never a second VM at once.
    assert (update["replacementMethod"], update["maxSurgeFixed"]) == ("RECREATE", 0)
    assert update["minimalAction"] == "REPLACE" and update["maxUnavailableFixed"] == 1
    assert group["baseInstanceName"] == "ssk-dev-vm"


def test_health_check_reads_the_agents_health_port() -> None:
    check = record("compute").one(HEALTH).inputs
    assert check["tcpHealthCheck"] == {"port": scripts.HEALTH_PORT, "response": "healthy"}


def test_bundle_is_private_and_readable_by_the_vm_only() -> None:
    recording = record("compute")
    bucket = recording.one(BUCKET).inputs
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    obj = recording.one(OBJECT).inputs
    assert obj["name"].startswith("super-spine-bundle-") and obj["name"].endswith(".tar")
    (reader,) = recording.of_type(BUCKET_IAM)
    assert reader.inputs["role"] == "roles/storage.objectViewer"
    assert reader.inputs["member"] == (
        "serviceAccount:ssk-dev-vm@acme-spine-1.iam.gserviceaccount.com"
    )
    group = recording.one(GROUP)
    assert {recording.one(OBJECT).urn, reader.urn} <= set(group.dependencies)


def test_disk_type_and_size_follow_config() -> None:
    disk = record("compute", **COMPUTE_VARIANT).one(DISK)
    assert (disk.inputs["type"], disk.inputs["size"]) == ("pd-balanced", 200)


def test_snapshot_schedule_is_attached_to_the_data_disk() -> None:
    recording = record("compute")
    policy = recording.one("gcp:compute/resourcePolicy:ResourcePolicy").inputs
    snapshot = policy["snapshotSchedulePolicy"]
    assert snapshot["schedule"] == {"dailySchedule": {"daysInCycle": 1, "startTime": "03:00"}}
    assert snapshot["retentionPolicy"] == {
        "maxRetentionDays": 14,
        "onSourceDiskDelete": "KEEP_AUTO_SNAPSHOTS",
    }
    attachment = recording.one(
        "gcp:compute/diskResourcePolicyAttachment:DiskResourcePolicyAttachment"
    )
    assert attachment.inputs["disk"] == recording.outputs["diskName"]
    assert attachment.inputs["name"] == recording.outputs["snapshotPolicy"]


def test_hourly_snapshots() -> None:
    recording = record("compute", **COMPUTE_VARIANT)
    policy = recording.one("gcp:compute/resourcePolicy:ResourcePolicy")
    schedule = policy.inputs["snapshotSchedulePolicy"]["schedule"]
    assert schedule == {"hourlySchedule": {"hoursInCycle": 6, "startTime": "03:00"}}


def test_vm_is_shielded_with_os_login_and_its_own_service_account() -> None:
    vm = record("compute").one(TEMPLATE).inputs
    assert vm["shieldedInstanceConfig"] == {
        "enableSecureBoot": True,
        "enableVtpm": True,
        "enableIntegrityMonitoring": True,
    }
    assert vm["metadata"]["enable-oslogin"] == "TRUE"
    assert vm["metadata"]["block-project-ssh-keys"] == "TRUE"
    assert vm["serviceAccount"]["email"] == "ssk-dev-vm@acme-spine-1.iam.gserviceaccount.com"
    assert "https://www.googleapis.com/auth/cloud-platform" not in vm["serviceAccount"]["scopes"]
    assert "https://www.googleapis.com/auth/devstorage.read_only" in vm["serviceAccount"]["scopes"]
    assert "accessConfigs" not in vm["networkInterfaces"][0]
    assert vm["tags"] == ["super-spine-vm"]
    boot = vm["disks"][0]
    assert boot["sourceImage"] == "projects/debian-cloud/global/images/family/debian-12"
    assert boot["diskType"] == "pd-balanced"


def _metadata(recording: Recording) -> dict:
    return recording.one(TEMPLATE).inputs["metadata"]


def test_vm_metadata_is_the_startup_script_and_what_it_reads() -> None:
    recording = record("compute")
    metadata = _metadata(recording)
    assert metadata["startup-script"] == scripts.startup_script()
    obj = recording.one(OBJECT).inputs["name"]
    assert metadata[scripts.BUNDLE_URL_KEY].endswith(f"/o/{obj}?alt=media")
    assert obj == f"super-spine-bundle-{metadata[scripts.BUNDLE_SHA_KEY][:16]}.tar"
    variables = json.loads(metadata[scripts.VARS_KEY])
    assert variables == scripts.role_vars("https://github.com/acme/spine-state.git")
    assert json.loads(metadata[scripts.SECRETS_KEY]) == {}


def test_no_shutdown_script_races_the_agents_own_flush() -> None:
    """The agent flushes on SIGTERM within TimeoutStopSec; a shutdown-script flush would run
    at the same time inside GCE's 30 s (issue 10, defect 10)."""
    assert "shutdown-script" not in _metadata(record("compute"))


def test_secret_git_settings_go_to_secret_manager_not_metadata() -> None:
    recording = record("compute", secret_keys=SECRET_KEYS, **SECRET_VARIANT)
    metadata = _metadata(recording)
    assert "spine-state" not in json.dumps(metadata)
    assert SECRET_VARIANT["gitToken"] not in json.dumps(metadata)
    secrets = json.loads(metadata[scripts.SECRETS_KEY])
    assert sorted(secrets) == ["spine_git_remote", "spine_git_token"]
    assert all(
        url.startswith("https://secretmanager.googleapis.com/v1/projects/acme-spine-1/secrets/")
        and url.endswith("/versions/latest:access")
        for url in secrets.values()
    )
    versions = recording.of_type("gcp:secretmanager/secretVersion:SecretVersion")
    assert all("secretData" in v.secret_paths for v in versions) and len(versions) == 2
    readers = recording.of_type(SECRET_IAM)
    assert {r.inputs["member"] for r in readers} == {
        "serviceAccount:ssk-dev-vm@acme-spine-1.iam.gserviceaccount.com"
    }
    scopes = recording.one(TEMPLATE).inputs["serviceAccount"]["scopes"]
    assert "https://www.googleapis.com/auth/cloud-platform" in scopes


def test_standard_vm_runs_without_a_time_limit() -> None:
    """No maxRunDuration by default: a standard VM is not stopped every 4 h (defect 8)."""
    scheduling = record("compute").one(TEMPLATE).inputs["scheduling"]
    assert scheduling["provisioningModel"] == "STANDARD"
    assert scheduling["automaticRestart"] is True and scheduling["onHostMaintenance"] == "MIGRATE"
    assert "maxRunDuration" not in scheduling and "instanceTerminationAction" not in scheduling


def test_spot_vm_never_restarts_automatically() -> None:
    scheduling = record("compute", **COMPUTE_VARIANT).one(TEMPLATE).inputs["scheduling"]
    assert scheduling["provisioningModel"] == "SPOT" and scheduling["preemptible"] is True
    assert scheduling["automaticRestart"] is False
    assert scheduling["onHostMaintenance"] == "TERMINATE"
    assert scheduling["instanceTerminationAction"] == "DELETE"
    assert scheduling["maxRunDuration"] == {"seconds": 1800}


def test_toggling_spot_is_a_new_template_that_the_group_rolls_out() -> None:
    """on_host_maintenance cannot change in place (defect 7): the change is a new template,
    and the group replaces the VM (same name, same disk)."""
    standard, spot = record("compute"), record("compute", **COMPUTE_VARIANT)
    before = standard.one(TEMPLATE).inputs["scheduling"]["onHostMaintenance"]
    after = spot.one(TEMPLATE).inputs["scheduling"]["onHostMaintenance"]
    assert (before, after) == ("MIGRATE", "TERMINATE")
    assert not standard.one(TEMPLATE).inputs.get("name"), "a fixed name blocks create-then-replace"
    assert standard.one(GROUP).inputs["updatePolicy"]["minimalAction"] == "REPLACE"


def test_boot_disk_type_follows_the_machine_family() -> None:
    template = record("compute", machineType="n4-standard-2", diskType="hyperdisk-balanced")
    assert template.one(TEMPLATE).inputs["disks"][0]["diskType"] == "hyperdisk-balanced"


def test_external_ip_when_asked() -> None:
    nic = record("compute", **COMPUTE_VARIANT).one(TEMPLATE).inputs["networkInterfaces"][0]
    assert nic["accessConfigs"] == [{}]


def test_apis_can_be_left_alone() -> None:
    recording = record("compute", **COMPUTE_VARIANT)
    assert not recording.of_type("gcp:projects/service:Service")
    services = {
        s.inputs["service"] for s in record("hybrid").of_type("gcp:projects/service:Service")
    }
    assert {
        "sqladmin.googleapis.com",
        "servicenetworking.googleapis.com",
        "iap.googleapis.com",
    } <= services
    assert all(
        s.inputs["disableOnDestroy"] is False
        for s in record("hybrid").of_type("gcp:projects/service:Service")
    )


# --- Hybrid -------------------------------------------------------------------------------


def test_hybrid_vm_reaches_the_database_over_private_ip_with_no_sql_client_role() -> None:
    """Private-IP TCP with IAM login needs roles/cloudsql.instanceUser, not
    roles/cloudsql.client (that is for the connectors Cloud Run uses): defect 12."""
    recording = record("hybrid")
    vm = recording.one(TEMPLATE).inputs
    assert not [b for b in recording.of_type(IAM) if b.inputs["role"] == "roles/cloudsql.client"]
    assert {b.inputs["role"] for b in recording.of_type(IAM)} == {
        "roles/logging.logWriter",
        "roles/monitoring.metricWriter",
        "roles/cloudsql.instanceUser",
    }
    # The metadata server's token must carry a scope Cloud SQL's login accepts.
    assert "https://www.googleapis.com/auth/cloud-platform" in vm["serviceAccount"]["scopes"]
    assert (
        recording.one(SQL).inputs["settings"]["ipConfiguration"]["privateNetwork"]
        == (recording.one("gcp:compute/subnetwork:Subnetwork").inputs["network"])
    )


def test_hybrid_vm_provisions_itself_with_the_postgres_variables() -> None:
    """The startup script's variables (metadata) and the inventory's are the same."""
    recording = record("hybrid")
    metadata = recording.one(TEMPLATE).inputs["metadata"]
    variables = json.loads(metadata[scripts.VARS_KEY])
    hv = _inventory_hosts(recording)[recording.outputs["instanceGroup"]]
    postgres = {k: v for k, v in hv.items() if k.startswith("spine_postgres_")}
    assert postgres and {k: variables[k] for k in postgres} == postgres
    assert postgres["spine_postgres_write"] == "async"


def test_cloud_run_keeps_its_sql_client_role_for_the_connector() -> None:
    client = find(record("cloudrun"), IAM, "client").inputs
    assert client["role"] == "roles/cloudsql.client"
    assert client["member"] == "serviceAccount:ssk-dev-run@acme-spine-1.iam.gserviceaccount.com"


# --- Inventory output -----------------------------------------------------------------------


def _inventory_hosts(recording: Recording) -> dict:
    inventory = yaml.safe_load(recording.outputs["ansibleInventory"])
    return inventory["all"]["children"]["super_spine"]["hosts"]


def test_inventory_has_the_contract_host_vars() -> None:
    recording = record("compute")
    hosts = _inventory_hosts(recording)
    hv = hosts[recording.outputs["instanceGroup"]]
    assert hv["ansible_host"] == recording.outputs["instanceGroup"]
    assert hv["ansible_user"] == "alice_example_com"
    assert hv["ansible_python_interpreter"] == "/usr/bin/python3"
    assert "gcloud compute start-iap-tunnel" in hv["ansible_ssh_common_args"]
    assert hv["spine_disk_device"] == "/dev/disk/by-id/google-super-spine-disk"
    assert hv["spine_mount_point"] == "/data/super-spine"
    assert hv["spine_git_remote"] == "https://github.com/acme/spine-state.git"
    assert not any(k.startswith("spine_postgres_") for k in hv)
    assert "ansibleInventory" not in recording.secret_outputs


def test_hybrid_inventory_carries_postgres_vars_but_no_password() -> None:
    recording = record("hybrid")
    hv = _inventory_hosts(recording)[recording.outputs["instanceGroup"]]
    assert hv["spine_postgres_connection_name"] == recording.outputs["sqlConnectionName"]
    assert hv["spine_postgres_host"] == recording.outputs["sqlPrivateIp"]
    assert hv["spine_postgres_port"] == 5432
    assert hv["spine_postgres_database"] == "superspine"
    assert hv["spine_postgres_user"] == recording.outputs["databaseIamUser"]
    assert hv["spine_postgres_auth"] == "iam"
    assert hv["spine_postgres_sslmode"] == "verify-ca"
    assert hv["spine_postgres_ca_cert"] == recording.outputs["sqlServerCaCert"]
    assert hv["spine_postgres_ca_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert MOCK_PASSWORD not in recording.outputs["ansibleInventory"]
    assert not [k for k in hv if "password" in k]
    assert "ansibleInventory" not in recording.secret_outputs


def test_inventory_is_a_secret_output_when_it_carries_a_secret() -> None:
    recording = record("compute", secret_keys=SECRET_KEYS, **SECRET_VARIANT)
    assert "ansibleInventory" in recording.secret_outputs
    hv = _inventory_hosts(recording)[recording.outputs["instanceGroup"]]
    assert hv["spine_git_token"] == SECRET_VARIANT["gitToken"]
    assert hv["spine_git_remote"] == "https://github.com/acme/spine-state.git"


def test_inventory_reaches_the_groups_current_vm_through_iap_even_with_an_external_ip() -> None:
    """A recreated VM has a new name suffix, new host keys and maybe a reused internal IP:
    the inventory names the group and pins no host key (defect 11)."""
    recording = record("compute", **COMPUTE_VARIANT)
    group = recording.outputs["instanceGroup"]
    args = _inventory_hosts(recording)[group]["ansible_ssh_common_args"]
    assert f"list-instances {group}" in args and "start-iap-tunnel" in args
    assert "StrictHostKeyChecking=no" in args and "UserKnownHostsFile=/dev/null" in args
