"""Cloud SQL for PostgreSQL: private IP only, SSL enforced, backups with PITR, protected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from infra.config import SqlConfig

TYPE = "super-spine-kit:infra:Database"
DATABASE_NAME = "superspine"
USER_NAME = "superspine"
# Cloud SQL names a service account's PostgreSQL user after its email, less this suffix.
SA_EMAIL_SUFFIX = ".gserviceaccount.com"
IAM_AUTH_FLAG = "cloudsql.iam_authentication"
# The agent creates its own schema and runs its migrations: the role a built-in user gets.
AGENT_DATABASE_ROLES = ("cloudsqlsuperuser",)


def iam_user_name(email: str) -> str:
    """The PostgreSQL user of a service account under IAM database authentication."""
    return email.removesuffix(SA_EMAIL_SUFFIX)


@dataclass
class DatabaseArgs:
    project: str
    region: str
    zone: str
    network_id: pulumi.Input[str]
    sql: SqlConfig
    secret_id: str
    labels: Mapping[str, str]
    deletion_protection: bool
    # Service account emails that log in as themselves (IAM database authentication: an
    # OAuth token from the metadata server is the password). Each gets a CLOUD_IAM user and
    # roles/cloudsql.instanceUser on this instance only. No workload reads the password.
    iam_logins: Sequence[pulumi.Input[str]] = field(default_factory=list)
    # Members that connect through Cloud SQL's connectors (Cloud Run's socket volume), which
    # need roles/cloudsql.client. Direct private-IP TCP (the hybrid VM) does not: it is not
    # listed here.
    connector_clients: Sequence[pulumi.Input[str]] = field(default_factory=list)
    # The peering the instance's private IP comes from.
    private_services: pulumi.Resource | None = None
    # Resources every child waits for (the project's APIs): a component's own depends_on
    # is not inherited by its children.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class Database(pulumi.ComponentResource):
    """The instance, one database, the workloads' IAM users, and one built-in user whose
    password lives only in Secret Manager (the operators' break-glass login: no workload
    reads it)."""

    instance: gcp.sql.DatabaseInstance
    connection_name: pulumi.Output[str]
    private_ip: pulumi.Output[str]
    password_secret: gcp.secretmanager.Secret

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        sql = args.sql

        self.instance = gcp.sql.DatabaseInstance(
            f"{name}-pg",
            region=args.region,
            database_version=sql.version,
            # Provider-level guard; settings.deletion_protection_enabled is the API-level one.
            deletion_protection=args.deletion_protection,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=sql.tier,
                edition=sql.edition,
                availability_type="REGIONAL" if sql.high_availability else "ZONAL",
                location_preference=gcp.sql.DatabaseInstanceSettingsLocationPreferenceArgs(
                    zone=args.zone
                ),
                disk_type="PD_SSD",
                disk_size=sql.disk_size_gb,
                disk_autoresize=True,
                deletion_protection_enabled=args.deletion_protection,
                # Backups survive the instance: a mistaken delete is recoverable.
                retain_backups_on_delete=True,
                backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                    enabled=True,
                    start_time=sql.backup_start_time,
                    point_in_time_recovery_enabled=sql.point_in_time_recovery,
                    transaction_log_retention_days=(
                        sql.pitr_days if sql.point_in_time_recovery else None
                    ),
                    backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                        retained_backups=sql.backup_retention_count,
                        retention_unit="COUNT",
                    ),
                ),
                ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                    ipv4_enabled=False,
                    private_network=args.network_id,
                    ssl_mode="ENCRYPTED_ONLY",
                ),
                maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
                    day=7, hour=3, update_track="stable"
                ),
                insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(
                    query_insights_enabled=True
                ),
                database_flags=[
                    gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(
                        name=IAM_AUTH_FLAG, value="on"
                    ),
                    gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(
                        name="log_connections", value="on"
                    ),
                    gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(
                        name="log_disconnections", value="on"
                    ),
                ],
                user_labels=dict(args.labels),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
                depends_on=[*args.depends_on, *filter(None, [args.private_services])],
                # disk_autoresize grows the disk; without this a refresh sees the grown size
                # differ from disk_size and the next update tries to REPLACE the instance
                # (pulumi-gcp's docstring for disk_size). disk_size is the initial size only.
                ignore_changes=["settings.diskSize"],
            ),
        )
        self.connection_name = self.instance.connection_name
        self.private_ip = self.instance.private_ip_address
        # The instance's server CAs (public; two during a CA rotation): clients verify the
        # server with them (verify-ca), so all of them go into the one PEM bundle.
        self.server_ca_cert: pulumi.Output[str] = self.instance.server_ca_certs.apply(
            lambda certs: "".join(
                str(cert.cert).strip() + "\n" for cert in certs or [] if cert.cert
            )
        )

        self.database = gcp.sql.Database(
            f"{name}-db",
            instance=self.instance.name,
            name=DATABASE_NAME,
            # PostgreSQL refuses to drop a database with open connections; leave it to the instance.
            deletion_policy="ABANDON",
            opts=child,
        )

        password = random.RandomPassword(
            f"{name}-password",
            length=32,
            special=True,
            override_special="-_.~",  # URL-safe: the password can go into a connection URI
            min_lower=2,
            min_upper=2,
            min_numeric=2,
            opts=child,
        )
        secret_value: pulumi.Output[str] = pulumi.Output.secret(password.result)
        self.user = gcp.sql.User(
            f"{name}-user",
            instance=self.instance.name,
            name=USER_NAME,
            password=secret_value,
            # The role may own objects; dropping it would fail. The instance takes it along.
            deletion_policy="ABANDON",
            opts=child,
        )

        self.password_secret = gcp.secretmanager.Secret(
            f"{name}-password-secret",
            secret_id=args.secret_id,
            project=args.project,
            replication=gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs()
            ),
            labels=dict(args.labels),
            deletion_protection=args.deletion_protection,
            opts=child,
        )
        self.password_version = gcp.secretmanager.SecretVersion(
            f"{name}-password-v",
            secret=self.password_secret.id,
            secret_data=secret_value,
            opts=child,
        )

        # Access for each workload: connect to this instance only (IAM condition), read this
        # one secret only.
        condition_expr = self.instance.name.apply(
            lambda instance: (
                f"resource.name == 'projects/{args.project}/instances/{instance}' "
                "&& resource.type == 'sqladmin.googleapis.com/Instance'"
            )
        )
        self.grants: list[pulumi.CustomResource] = []
        for index, member in enumerate(args.connector_clients):
            self.grants.append(
                gcp.projects.IAMMember(
                    f"{name}-client-{index}",
                    project=args.project,
                    role="roles/cloudsql.client",
                    member=member,
                    condition=gcp.projects.IAMMemberConditionArgs(
                        title="super-spine-sql-instance-only",
                        description="Connect to this stack's Cloud SQL instance only",
                        expression=condition_expr,
                    ),
                    opts=child,
                )
            )
        self.iam_users: list[gcp.sql.User] = []
        for index, email in enumerate(args.iam_logins):
            member = pulumi.Output.concat("serviceAccount:", email)
            user = gcp.sql.User(
                f"{name}-iam-{index}",
                instance=self.instance.name,
                name=pulumi.Output.from_input(email).apply(iam_user_name),
                type="CLOUD_IAM_SERVICE_ACCOUNT",
                database_roles=list(AGENT_DATABASE_ROLES),
                deletion_policy="ABANDON",
                opts=child,
            )
            self.iam_users.append(user)
            self.grants.append(user)
            self.grants.append(
                gcp.projects.IAMMember(
                    f"{name}-login-{index}",
                    project=args.project,
                    role="roles/cloudsql.instanceUser",
                    member=member,
                    condition=gcp.projects.IAMMemberConditionArgs(
                        title="super-spine-sql-login-instance-only",
                        description="Log in to this stack's Cloud SQL instance only",
                        expression=condition_expr,
                    ),
                    opts=child,
                )
            )

        self.register_outputs(
            {
                "connectionName": self.connection_name,
                "privateIp": self.private_ip,
                "instanceName": self.instance.name,
                "database": self.database.name,
                "user": self.user.name,
                "passwordSecret": self.password_secret.id,
                "iamUsers": [user.name for user in self.iam_users],
            }
        )
