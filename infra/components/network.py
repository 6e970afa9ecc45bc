"""The stack's own VPC: subnet, SSH only from allowed ranges, NAT, and Private Service Access."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

TYPE = "super-spine-kit:infra:Network"
SSH_TAG = "super-spine-ssh"
# Prefix of the range Google's service producers (Cloud SQL) take addresses from.
PRIVATE_SERVICE_PREFIX = 20


@dataclass
class NetworkArgs:
    region: str
    subnet_cidr: str
    ssh_source_ranges: Sequence[str]
    with_vm: bool
    with_private_services: bool
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

        self.network = gcp.compute.Network(
            f"{name}-vpc",
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            description="super-spine-kit: one VPC per stack",
            opts=child,
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
            opts=child,
        )

        self.ssh_firewall: gcp.compute.Firewall | None = None
        self.nat: gcp.compute.RouterNat | None = None
        if args.with_vm:
            self.ssh_firewall = gcp.compute.Firewall(
                f"{name}-allow-ssh",
                network=self.network.id,
                direction="INGRESS",
                priority=1000,
                allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
                source_ranges=list(args.ssh_source_ranges),
                target_tags=[SSH_TAG],
                log_config=gcp.compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA"),
                description="SSH to super-spine VMs from the allowed ranges only (IAP by default)",
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
                # Google refuses to delete the peering while SQL still uses it; abandon it
                # instead of failing `pulumi destroy`.
                deletion_policy="ABANDON",
                opts=child,
            )

        self.register_outputs(
            {
                "network": self.network.id,
                "subnet": self.subnet.id,
                "privateServices": self.private_services.id if self.private_services else None,
            }
        )
