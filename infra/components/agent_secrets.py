"""Secret role variables (git token, deploy key, a private remote) for a VM that provisions
itself: each in Secret Manager, readable by the VM's service account and nobody else.

The VM's metadata carries only the access URLs; the startup script reads the values with the
VM's token and hands them to the roles for the length of the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

TYPE = "super-spine-kit:infra:AgentSecrets"


@dataclass
class AgentSecretsArgs:
    project: str
    # role variable -> (secret id, value)
    values: Mapping[str, tuple[str, str]]
    accessor: pulumi.Input[str]
    labels: Mapping[str, str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class AgentSecrets(pulumi.ComponentResource):
    """One secret per variable; `access_urls` maps each variable to its access URL."""

    access_urls: dict[str, pulumi.Output[str]]
    versions: list[gcp.secretmanager.SecretVersion]

    def __init__(
        self, name: str, args: AgentSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.access_urls = {}
        self.versions = []
        for variable, (secret_id, value) in sorted(args.values.items()):
            short = variable.removeprefix("spine_").replace("_", "-")
            secret = gcp.secretmanager.Secret(
                f"{name}-{short}",
                secret_id=secret_id,
                project=args.project,
                replication=gcp.secretmanager.SecretReplicationArgs(
                    auto=gcp.secretmanager.SecretReplicationAutoArgs()
                ),
                labels=dict(args.labels),
                opts=child,
            )
            self.versions.append(
                gcp.secretmanager.SecretVersion(
                    f"{name}-{short}-v",
                    secret=secret.id,
                    secret_data=pulumi.Output.secret(value),
                    opts=child,
                )
            )
            gcp.secretmanager.SecretIamMember(
                f"{name}-{short}-reader",
                project=args.project,
                secret_id=secret.id,
                role="roles/secretmanager.secretAccessor",
                member=args.accessor,
                opts=child,
            )
            self.access_urls[variable] = pulumi.Output.concat(
                "https://secretmanager.googleapis.com/v1/", secret.id, "/versions/latest:access"
            )
        self.register_outputs({"variables": sorted(self.access_urls)})
