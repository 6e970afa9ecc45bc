"""One service account per workload, holding only the roles it needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

TYPE = "super-spine-kit:infra:ServiceIdentity"


@dataclass
class ServiceIdentityArgs:
    project: str
    account_id: str
    display_name: str
    project_roles: Sequence[str] = field(default_factory=list)
    # Resources every child waits for (the project's APIs): a component's own depends_on
    # is not inherited by its children.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class ServiceIdentity(pulumi.ComponentResource):
    """A dedicated service account: the workload never runs as the default compute SA."""

    account: gcp.serviceaccount.Account
    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(
        self, name: str, args: ServiceIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=args.account_id,
            display_name=args.display_name,
            project=args.project,
            opts=child,
        )
        self.email = self.account.email
        self.member = self.account.email.apply(lambda email: f"serviceAccount:{email}")
        self.bindings = [
            gcp.projects.IAMMember(
                f"{name}-{role.split('/')[-1].replace('.', '-').lower()}",
                project=args.project,
                role=role,
                member=self.member,
                opts=child,
            )
            for role in args.project_roles
        ]
        self.register_outputs({"email": self.email})
