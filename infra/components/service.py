"""Cloud Run (v2 API): the app and the agent as its sidecar, Cloud SQL through the socket volume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.config import ServiceConfig

TYPE = "super-spine-kit:infra:CloudRunService"
CLOUDSQL_MOUNT = "/cloudsql"
# The agent's unix socket, on an in-memory volume both containers mount (the image's
# SUPER_SPINE_API__SOCKET default): the app finds it in SOCKET_ENV.
SOCKET_DIR = "/run/super-spine"
SOCKET_PATH = f"{SOCKET_DIR}/spine-agent.sock"
SOCKET_ENV = "SUPER_SPINE_SOCKET"
# The agent's storage path: in memory too (Cloud Run has no disk); PostgreSQL holds the data.
DATA_DIR = "/data/super-spine"
DATA_VOLUME_SIZE = "128Mi"
SOCKET_VOLUME_SIZE = "1Mi"
APP_PORT = 8080
# The agent's health-only port (api.health_port): what the startup probe asks. Only the
# ingress container's port is routed to an instance, so this one serves nobody outside.
AGENT_HEALTH_PORT = 8091
AGENT_CPU = "1"
AGENT_MEMORY = "512Mi"
# Below AGENT_MEMORY: the in-memory data volume and Python itself need the rest.
AGENT_MEMORY_LIMIT = "200MB"
# Cloud Run sends SIGTERM and waits 10 s before SIGKILL: the agent finishes within 8 s.
AGENT_STOP_BUDGET = "8s"
# Up to 2 minutes to restore and serve, probed every second.
STARTUP_PROBE_PERIOD_S = 1
STARTUP_PROBE_FAILURES = 120


@dataclass
class CloudRunServiceArgs:
    region: str
    service: ServiceConfig
    service_account_email: pulumi.Input[str]
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    sql_connection_name: pulumi.Input[str]
    database_name: pulumi.Input[str]
    # The service account's IAM database user: the agent logs in with a metadata-server token.
    database_user: pulumi.Input[str]
    labels: Mapping[str, str]
    deletion_protection: bool
    # What every child waits for: the project's APIs, and the IAM grants the revision needs at
    # deploy time (SQL client and login). Not inherited from the component's own options.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


# The sidecar agent's environment besides its DSN (tests/container's Cloud Run stand-in runs
# the image with this same environment).
AGENT_ENV: dict[str, str] = {
    "SUPER_SPINE_STORAGE_PATH": DATA_DIR,
    "SUPER_SPINE_API__SOCKET": SOCKET_PATH,
    "SUPER_SPINE_API__HEALTH_PORT": str(AGENT_HEALTH_PORT),
    "SUPER_SPINE_API__HEALTH_ADDRESS": "0.0.0.0",
    "SUPER_SPINE_MEMORY_LIMIT": AGENT_MEMORY_LIMIT,
    "SUPER_SPINE_STOP_BUDGET": AGENT_STOP_BUDGET,
    "SUPER_SPINE_PREEMPTION__WATCH": "off",
    "SUPER_SPINE_POSTGRES__AUTH": "iam",
    "SUPER_SPINE_POSTGRES__WRITE": "sync",
}
DSN_ENV = "SUPER_SPINE_POSTGRES__DSN"


def agent_dsn(socket_dir: str, database: str, user: str) -> str:
    """The agent's postgres.dsn on Cloud Run: the Cloud SQL volume's socket, no password."""
    return f"host={socket_dir} dbname={database} user={user}"


def _env(name: str, value: pulumi.Input[str]) -> gcp.cloudrunv2.ServiceTemplateContainerEnvArgs:
    return gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=name, value=value)


def _mount(name: str, path: str) -> gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs:
    return gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(name=name, mount_path=path)


def _memory_volume(name: str, size: str) -> gcp.cloudrunv2.ServiceTemplateVolumeArgs:
    return gcp.cloudrunv2.ServiceTemplateVolumeArgs(
        name=name,
        empty_dir=gcp.cloudrunv2.ServiceTemplateVolumeEmptyDirArgs(
            medium="MEMORY", size_limit=size
        ),
    )


class CloudRunService(pulumi.ComponentResource):
    """Two containers per instance: the app (ingress) and the agent (sidecar, no port).

    The app talks to the agent on its unix socket, as on a VM; the agent keeps every record
    in PostgreSQL (`sync`: acknowledged once committed), so the instance holds nothing that
    another one cannot serve. Instances share Cloud SQL through the Cloud SQL volume.
    """

    service: gcp.cloudrunv2.Service
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: CloudRunServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(TYPE, name, None, opts)
        svc = args.service
        sql_socket_dir = pulumi.Output.concat(CLOUDSQL_MOUNT, "/", args.sql_connection_name)
        dsn = pulumi.Output.all(sql_socket_dir, args.database_name, args.database_user).apply(
            lambda v: agent_dsn(v[0], v[1], v[2])
        )
        # CPU stays allocated between requests: the agent's invalidation listener and its
        # shutdown flush need it (a throttled sidecar would serve stale copies).
        app = gcp.cloudrunv2.ServiceTemplateContainerArgs(
            name="app",
            image=svc.image or "",
            ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=APP_PORT),
            envs=[_env(SOCKET_ENV, SOCKET_PATH)],
            depends_ons=["agent"],
            resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": svc.cpu, "memory": svc.memory},
                cpu_idle=False,
                startup_cpu_boost=True,
            ),
            volume_mounts=[_mount("spine-socket", SOCKET_DIR)],
        )
        agent = gcp.cloudrunv2.ServiceTemplateContainerArgs(
            name="agent",
            image=svc.agent_image or "",
            envs=[*(_env(k, v) for k, v in AGENT_ENV.items()), _env(DSN_ENV, dsn)],
            resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                limits={"cpu": AGENT_CPU, "memory": AGENT_MEMORY},
                cpu_idle=False,
                startup_cpu_boost=True,
            ),
            startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                    path="/v1/health", port=AGENT_HEALTH_PORT
                ),
                initial_delay_seconds=0,
                period_seconds=STARTUP_PROBE_PERIOD_S,
                timeout_seconds=1,
                failure_threshold=STARTUP_PROBE_FAILURES,
            ),
            volume_mounts=[
                _mount("spine-socket", SOCKET_DIR),
                _mount("spine-data", DATA_DIR),
                _mount("cloudsql", CLOUDSQL_MOUNT),
            ],
        )
        self.service = gcp.cloudrunv2.Service(
            f"{name}-run",
            location=args.region,
            ingress=svc.ingress,
            deletion_protection=args.deletion_protection,
            labels=dict(args.labels),
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                service_account=args.service_account_email,
                execution_environment="EXECUTION_ENVIRONMENT_GEN2",
                max_instance_request_concurrency=80,
                timeout="300s",
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=svc.min_instances,
                    max_instance_count=svc.max_instances,
                ),
                # Private-IP Cloud SQL needs VPC access; only private ranges go through it.
                vpc_access=gcp.cloudrunv2.ServiceTemplateVpcAccessArgs(
                    network_interfaces=[
                        gcp.cloudrunv2.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                            network=args.network_id, subnetwork=args.subnet_id
                        )
                    ],
                    egress="PRIVATE_RANGES_ONLY",
                ),
                volumes=[
                    gcp.cloudrunv2.ServiceTemplateVolumeArgs(
                        name="cloudsql",
                        cloud_sql_instance=gcp.cloudrunv2.ServiceTemplateVolumeCloudSqlInstanceArgs(
                            instances=[args.sql_connection_name]
                        ),
                    ),
                    _memory_volume("spine-socket", SOCKET_VOLUME_SIZE),
                    _memory_volume("spine-data", DATA_VOLUME_SIZE),
                ],
                containers=[app, agent],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        self.url = self.service.uri
        self.invokers = [
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{index}",
                name=self.service.name,
                location=args.region,
                role="roles/run.invoker",
                member=member,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
            )
            for index, member in enumerate(svc.invokers)
        ]
        self.register_outputs({"url": self.url, "name": self.service.name})
