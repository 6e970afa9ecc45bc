"""A self-healing VM: a managed instance group of one, its stateful data disk, a health check.

Why a zonal MIG of one (and not a bare instance): whatever GCE does to the VM (a Spot
preemption, a host failure, a deletion by hand), the group recreates it, by itself, with
the same name and the same data disk (a stateful disk, delete rule NEVER), and the startup
script provisions the new boot disk with the Ansible roles from the stack's bundle. A bare
instance stays stopped after a preemption, and a deleted one leaves Pulumi's state stale.
Zonal, because a persistent disk lives in one zone; regional MIGs would need regional disks
(twice the price) for a group that holds one VM. The health check reads the agent's health
through spine-health.socket, so a VM whose agent stays down is recreated too.

Changing anything in the template (machine type, spot, image...) creates a new template
and the group REPLACES the VM (RECREATE: same name, same disk; never two VMs at once, since
the disk attaches read-write to one). Toggling `spot` flips on_host_maintenance, which GCE
cannot change in place: this replacement is how it is applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra import scripts
from infra.components.network import VM_TAG
from infra.config import DiskConfig, VmConfig

TYPE = "super-spine-kit:infra:SpineVm"
LOGGING_SCOPES = (
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring.write",
)
# Reading the bundle from the stack's bucket.
STORAGE_READ_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# Secret Manager has no narrower OAuth scope; access is then limited by IAM (one secret each).
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Seconds the group waits before a health check may recreate a new VM: the first boot installs
# the agent (the startup script runs the roles), which takes a few minutes.
HEALING_DELAY_S = 900


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
    # The startup script and what it reads (infra/scripts.vm_metadata).
    metadata: pulumi.Input[Mapping[str, str]]
    # The group's instance name (and prefix of nothing else): fits GCE's 63 characters.
    instance_name: str
    # Resources every child waits for (the project's APIs, the bundle, the secrets): a
    # component's own depends_on is not inherited by its children.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


def scheduling(vm: VmConfig) -> gcp.compute.InstanceTemplateSchedulingArgs:
    """Spot or standard, with GCE's rules applied here rather than left to an API error."""
    max_run = (
        gcp.compute.InstanceTemplateSchedulingMaxRunDurationArgs(seconds=vm.max_run_duration_s)
        if vm.max_run_duration_s
        else None
    )
    needs_action = vm.spot or max_run is not None
    return gcp.compute.InstanceTemplateSchedulingArgs(
        provisioning_model="SPOT" if vm.spot else "STANDARD",
        preemptible=vm.spot,
        # A Spot VM can neither restart automatically nor live-migrate.
        automatic_restart=not vm.spot,
        on_host_maintenance="TERMINATE" if vm.spot else "MIGRATE",
        instance_termination_action=vm.termination_action if needs_action else None,
        max_run_duration=max_run,
    )


class SpineVm(pulumi.ComponentResource):
    """Data disk (device name super-spine-disk) + snapshot schedule + template + group."""

    template: gcp.compute.InstanceTemplate
    group: gcp.compute.InstanceGroupManager
    health_check: gcp.compute.HealthCheck
    disk: gcp.compute.Disk

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
                # The runbook restores a snapshot into a disk of the same name: keep it.
                ignore_changes=["snapshot", "image"],
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
            [gcp.compute.InstanceTemplateNetworkInterfaceAccessConfigArgs()]
            if vm.external_ip
            else None
        )
        self.template = gcp.compute.InstanceTemplate(
            f"{name}-template",
            region=args.region,
            machine_type=vm.machine_type,
            disks=[
                gcp.compute.InstanceTemplateDiskArgs(
                    boot=True,
                    auto_delete=True,
                    source_image=f"projects/{vm.image_project}/global/images/family/{vm.image_family}",
                    disk_size_gb=vm.boot_disk_size_gb,
                    disk_type=vm.boot_disk_type,
                ),
                # The data disk itself (by name), stateful in the group: never auto-deleted.
                gcp.compute.InstanceTemplateDiskArgs(
                    source=self.disk.name,
                    device_name=scripts.DISK_DEVICE_NAME,
                    mode="READ_WRITE",
                    auto_delete=False,
                ),
            ],
            network_interfaces=[
                gcp.compute.InstanceTemplateNetworkInterfaceArgs(
                    subnetwork=args.subnet_id, access_configs=access
                )
            ],
            service_account=gcp.compute.InstanceTemplateServiceAccountArgs(
                email=args.service_account_email, scopes=list(args.scopes)
            ),
            shielded_instance_config=gcp.compute.InstanceTemplateShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
            ),
            metadata=pulumi.Output.from_input(args.metadata).apply(
                lambda items: {
                    "enable-oslogin": "TRUE",
                    "block-project-ssh-keys": "TRUE",
                    "serial-port-enable": "FALSE",
                    **items,
                }
            ),
            scheduling=scheduling(vm),
            tags=[VM_TAG],
            labels=labels,
            # Templates are immutable: a change makes a new one, which the group then rolls to.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*deps, self.snapshot_attachment]),
        )
        self.health_check = gcp.compute.HealthCheck(
            f"{name}-health",
            check_interval_sec=30,
            timeout_sec=10,
            healthy_threshold=1,
            unhealthy_threshold=3,
            tcp_health_check=gcp.compute.HealthCheckTcpHealthCheckArgs(
                port=scripts.HEALTH_PORT, response="healthy"
            ),
            log_config=gcp.compute.HealthCheckLogConfigArgs(enable=True),
            opts=child,
        )
        self.group = gcp.compute.InstanceGroupManager(
            f"{name}-group",
            zone=args.zone,
            base_instance_name=args.instance_name,
            target_size=1,
            versions=[
                gcp.compute.InstanceGroupManagerVersionArgs(
                    instance_template=self.template.self_link_unique
                )
            ],
            stateful_disks=[
                gcp.compute.InstanceGroupManagerStatefulDiskArgs(
                    device_name=scripts.DISK_DEVICE_NAME, delete_rule="NEVER"
                )
            ],
            auto_healing_policies=gcp.compute.InstanceGroupManagerAutoHealingPoliciesArgs(
                health_check=self.health_check.id, initial_delay_sec=HEALING_DELAY_S
            ),
            instance_lifecycle_policy=gcp.compute.InstanceGroupManagerInstanceLifecyclePolicyArgs(
                default_action_on_failure="REPAIR", force_update_on_repair="YES"
            ),
            # One VM and a read-write disk: replace in place (same name), never surge a second.
            update_policy=gcp.compute.InstanceGroupManagerUpdatePolicyArgs(
                type="PROACTIVE",
                minimal_action="REPLACE",
                most_disruptive_allowed_action="REPLACE",
                replacement_method="RECREATE",
                max_surge_fixed=0,
                max_unavailable_fixed=1,
            ),
            wait_for_instances=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps),
        )
        self.instance_group_name = self.group.name
        self.register_outputs(
            {
                "instanceGroup": self.group.name,
                "template": self.template.self_link_unique,
                "healthCheck": self.health_check.id,
                "diskName": self.disk.name,
                "snapshotPolicy": self.snapshot_policy.name,
            }
        )
