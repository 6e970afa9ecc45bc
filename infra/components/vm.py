"""A shielded OS Login VM and its persistent data disk, which outlives any VM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra import scripts
from infra.components.network import SSH_TAG
from infra.config import DiskConfig, VmConfig

TYPE = "super-spine-kit:infra:SpineVm"
LOGGING_SCOPES = (
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring.write",
)
# Secret Manager and the Cloud SQL Admin API have no narrower OAuth scope; access is then
# limited by the service account's IAM roles alone, as Google recommends.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class SpineVmArgs:
    region: str
    zone: str
    subnet_id: pulumi.Input[str]
    service_account_email: pulumi.Input[str]
    scopes: Sequence[str]
    vm: VmConfig
    disk: DiskConfig
    labels: Mapping[str, str]
    deletion_protection: bool
    startup_script: str
    shutdown_script: str
    # Resources every child waits for (the project's APIs): a component's own depends_on
    # is not inherited by its children.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


def scheduling(vm: VmConfig) -> gcp.compute.InstanceSchedulingArgs:
    """Spot or standard, with GCE's rules applied here rather than left to an API error."""
    max_run = (
        gcp.compute.InstanceSchedulingMaxRunDurationArgs(seconds=vm.max_run_duration_s)
        if vm.max_run_duration_s
        else None
    )
    needs_action = vm.spot or max_run is not None
    return gcp.compute.InstanceSchedulingArgs(
        provisioning_model="SPOT" if vm.spot else "STANDARD",
        preemptible=vm.spot,
        # A Spot VM can neither restart automatically nor live-migrate.
        automatic_restart=not vm.spot,
        on_host_maintenance="TERMINATE" if vm.spot else "MIGRATE",
        instance_termination_action=vm.termination_action if needs_action else None,
        max_run_duration=max_run,
    )


def _nat_ip(nics: Sequence[gcp.compute.outputs.InstanceNetworkInterface]) -> str:
    configs = nics[0].access_configs or []
    return (configs[0].nat_ip or "") if configs else ""


class SpineVm(pulumi.ComponentResource):
    """VM + data disk (device name super-spine-disk) + snapshot schedule."""

    instance: gcp.compute.Instance
    disk: gcp.compute.Disk
    internal_ip: pulumi.Output[str]
    external_ip: pulumi.Output[str] | None

    def __init__(self, name: str, args: SpineVmArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        deps = list(args.depends_on)
        child = pulumi.ResourceOptions(parent=self, depends_on=deps)
        labels = dict(args.labels)

        # The data disk: its own resource, attached (never auto-deleted with the VM),
        # protected in Pulumi, and snapshotted once more if it is ever destroyed.
        self.disk = gcp.compute.Disk(
            f"{name}-data",
            zone=args.zone,
            type=args.disk.type,
            size=args.disk.size_gb,
            labels={**labels, "super-spine-role": "data"},
            create_snapshot_before_destroy=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.deletion_protection,
                retain_on_delete=args.deletion_protection,
                depends_on=deps,
            ),
        )
        d = args.disk
        if d.snapshot_interval_hours == 24:
            schedule = gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleArgs(
                daily_schedule=gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleDailyScheduleArgs(
                    days_in_cycle=1, start_time=d.snapshot_start_time
                )
            )
        else:
            schedule = gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleArgs(
                hourly_schedule=gcp.compute.ResourcePolicySnapshotSchedulePolicyScheduleHourlyScheduleArgs(
                    hours_in_cycle=d.snapshot_interval_hours, start_time=d.snapshot_start_time
                )
            )
        self.snapshot_policy = gcp.compute.ResourcePolicy(
            f"{name}-snapshots",
            region=args.region,
            description="super-spine-kit data disk snapshots",
            snapshot_schedule_policy=gcp.compute.ResourcePolicySnapshotSchedulePolicyArgs(
                schedule=schedule,
                retention_policy=gcp.compute.ResourcePolicySnapshotSchedulePolicyRetentionPolicyArgs(
                    max_retention_days=d.snapshot_retention_days,
                    # Snapshots are the last copy when the disk is gone: keep them.
                    on_source_disk_delete="KEEP_AUTO_SNAPSHOTS",
                ),
                snapshot_properties=gcp.compute.ResourcePolicySnapshotSchedulePolicySnapshotPropertiesArgs(
                    labels={**labels, "super-spine-role": "data"},
                    storage_locations=args.region,
                    guest_flush=False,
                ),
            ),
            opts=child,
        )
        self.snapshot_attachment = gcp.compute.DiskResourcePolicyAttachment(
            f"{name}-data-snapshots",
            disk=self.disk.name,
            zone=args.zone,
            name=self.snapshot_policy.name,
            opts=child,
        )

        vm = args.vm
        access = (
            [gcp.compute.InstanceNetworkInterfaceAccessConfigArgs()] if vm.external_ip else None
        )
        self.instance = gcp.compute.Instance(
            f"{name}-vm",
            zone=args.zone,
            machine_type=vm.machine_type,
            boot_disk=gcp.compute.InstanceBootDiskArgs(
                auto_delete=True,
                initialize_params=gcp.compute.InstanceBootDiskInitializeParamsArgs(
                    image=f"projects/{vm.image_project}/global/images/family/{vm.image_family}",
                    size=vm.boot_disk_size_gb,
                    type="pd-balanced",
                ),
            ),
            attached_disks=[
                gcp.compute.InstanceAttachedDiskArgs(
                    source=self.disk.self_link,
                    device_name=scripts.DISK_DEVICE_NAME,
                    mode="READ_WRITE",
                )
            ],
            network_interfaces=[
                gcp.compute.InstanceNetworkInterfaceArgs(
                    subnetwork=args.subnet_id, access_configs=access
                )
            ],
            service_account=gcp.compute.InstanceServiceAccountArgs(
                email=args.service_account_email, scopes=list(args.scopes)
            ),
            shielded_instance_config=gcp.compute.InstanceShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata={
                "enable-oslogin": "TRUE",
                "block-project-ssh-keys": "TRUE",
                "serial-port-enable": "FALSE",
                "startup-script": args.startup_script,
                "shutdown-script": args.shutdown_script,
            },
            scheduling=scheduling(vm),
            tags=[SSH_TAG],
            labels=labels,
            allow_stopping_for_update=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                # The data disk is attached read-write to one VM at a time: the old VM must be
                # gone before its replacement can attach it.
                delete_before_replace=True,
                depends_on=[*deps, self.snapshot_attachment],
            ),
        )
        nics = self.instance.network_interfaces
        self.internal_ip = nics.apply(lambda n: n[0].network_ip or "")
        self.external_ip = nics.apply(_nat_ip) if vm.external_ip else None
        self.register_outputs(
            {
                "instanceName": self.instance.name,
                "internalIp": self.internal_ip,
                "diskName": self.disk.name,
                "snapshotPolicy": self.snapshot_policy.name,
            }
        )
