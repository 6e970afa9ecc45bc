"""The stack's own VPC: subnet, SSH only from allowed ranges, NAT, and Private Service Access."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra import scripts

TYPE = "super-spine-kit:infra:Network"
# The network tag of the stack's VM: SSH and the health check are opened to it only.
VM_TAG = "super-spine-vm"
# Where GCE's health check probes come from (Google's documented ranges).
HEALTH_CHECK_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
# Prefix of the range Google's service producers (Cloud SQL) take addresses from.
PRIVATE_SERVICE_PREFIX = 20


@dataclass
class NetworkArgs:
    region: str
    subnet_cidr: str
    ssh_source_ranges: Sequence[str]
    with_vm: bool
    with_private_services: bool
    # Cloud Run's Direct VPC egress keeps addresses in the subnet for a while (1-2 hours)
    # after its service is deleted, so deleting the subnet (and its network) then fails.
    # With a Cloud Run service both are retained on `pulumi destroy` (free; the runbook
    # deletes them later) so that destroy succeeds.
    retain_on_delete: bool = False
    # Resources every child waits for (the project's APIs): a component's own depends_on
    # is not inherited by its children.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class Network(pulumi.ComponentResource):
    """Custom-mode VPC; no default firewall rules, so ingress is denied unless opened here."""

    network: gcp.compute.Network
    subnet: gcp.compute.Subnetwork
    private_services: gcp.servicenetworking.Connection | None

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        kept = pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(retain_on_delete=args.retain_on_delete)
        )

        self.network = gcp.compute.Network(
            f"{name}-vpc",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            description="super-spine-kit: one VPC per stack",
            opts=kept,
        )
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-subnet",
            network=self.network.id,
            region=args.region,
            ip_cidr_range=args.subnet_cidr,
            # VMs without external IPs still reach Google APIs (Secret Manager, SQL Admin).
            private_ip_google_access=True,
            log_config=gcp.compute.SubnetworkLogConfigArgs(
                aggregation_interval="INTERVAL_5_SEC",
                flow_sampling=0.5,
                metadata="INCLUDE_ALL_METADATA",
            ),
            opts=kept,
        )

        self.ssh_firewall: gcp.compute.Firewall | None = None
        self.nat: gcp.compute.RouterNat | None = None
        self.health_firewall: gcp.compute.Firewall | None = None
        if args.with_vm:
            self.ssh_firewall = gcp.compute.Firewall(
                f"{name}-allow-ssh",
                network=self.network.id,
                direction="INGRESS",
                priority=1000,
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
                source_ranges=list(args.ssh_source_ranges),
                target_tags=[VM_TAG],
                log_config=gcp.compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA"),
                description="SSH to super-spine VMs from the allowed ranges only (IAP by default)",
                opts=child,
            )
            # The instance group's health check reads spine-health.socket.
            self.health_firewall = gcp.compute.Firewall(
                f"{name}-allow-health",
                network=self.network.id,
                direction="INGRESS",
                priority=1000,
                allows=[
                    gcp.compute.FirewallAllowArgs(
                        protocol="tcp", ports=[str(scripts.HEALTH_PORT)]
                    )
                ],
                source_ranges=list(HEALTH_CHECK_RANGES),
                target_tags=[VM_TAG],
                description="GCE health checks to the super-spine agent's health port",
                opts=child,
            )
            # Outbound internet without external IPs: the agent pushes to its git remote and
            # the role installs packages.
            router = gcp.compute.Router(
                f"{name}-router", network=self.network.id, region=args.region, opts=child
            )
            self.nat = gcp.compute.RouterNat(
                f"{name}-nat",
                router=router.name,
                region=args.region,
                nat_ip_allocate_option="AUTO_ONLY",
                source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
                opts=child,
            )

        self.private_services = None
        if args.with_private_services:
            # Private Service Access: Cloud SQL gets a private IP inside this VPC's peering.
            psa_range = gcp.compute.GlobalAddress(
                f"{name}-psa-range",
                purpose="VPC_PEERING",
                address_type="INTERNAL",
                prefix_length=PRIVATE_SERVICE_PREFIX,
                network=self.network.id,
                opts=child,
            )
            self.private_services = gcp.servicenetworking.Connection(
                f"{name}-psa",
                network=self.network.id,
                service="servicenetworking.googleapis.com",
                reserved_peering_ranges=[psa_range.name],
                # Deleted on destroy (after the SQL instance, which depends on it): with
                # ABANDON the peering would stay and block deleting the network.
                opts=child,
            )

        self.register_outputs(
            {
                "network": self.network.id,
                "subnet": self.subnet.id,
                "privateServices": self.private_services.id if self.private_services else None,
            }
        )
