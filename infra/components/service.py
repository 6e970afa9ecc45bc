"""Cloud Run (v2 API) in front of Cloud SQL: socket volume, secrets from Secret Manager."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.config import ServiceConfig

TYPE = "super-spine-kit:infra:CloudRunService"
CLOUDSQL_MOUNT = "/cloudsql"


@dataclass
class CloudRunServiceArgs:
    region: str
    service: ServiceConfig
    service_account_email: pulumi.Input[str]
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    sql_connection_name: pulumi.Input[str]
    database_name: pulumi.Input[str]
    database_user: pulumi.Input[str]
    password_secret_id: pulumi.Input[str]
    labels: Mapping[str, str]
    deletion_protection: bool
    # What every child waits for: the project's APIs, and the IAM grants the revision needs at
    # deploy time (secret access, SQL client). Not inherited from the component's own options.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class CloudRunService(pulumi.ComponentResource):
    """Stateless: every instance shares Cloud SQL, reached over private IP via Direct VPC egress."""

    service: gcp.cloudrunv2.Service
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: CloudRunServiceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(TYPE, name, None, opts)
        svc = args.service
        sql_socket_dir = pulumi.Output.concat(CLOUDSQL_MOUNT, "/", args.sql_connection_name)
        env = gcp.cloudrunv2.ServiceTemplateContainerEnvArgs
        # libpq's standard variables: any PostgreSQL client in the image picks them up.
        envs = [
            env(name="PGHOST", value=sql_socket_dir),
            env(name="PGDATABASE", value=args.database_name),
            env(name="PGUSER", value=args.database_user),
            env(
                name="PGPASSWORD",
                value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=args.password_secret_id, version="latest"
                    )
                ),
            ),
        ]
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
                    )
                ],
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=svc.image or "",
                        envs=envs,
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": svc.cpu, "memory": svc.memory},
                            cpu_idle=True,
                            startup_cpu_boost=True,
                        ),
                        volume_mounts=[
                            gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(
                                name="cloudsql", mount_path=CLOUDSQL_MOUNT
                            )
                        ],
                    )
                ],
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
