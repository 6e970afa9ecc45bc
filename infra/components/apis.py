"""Enable the Google APIs a topology needs, before anything uses them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

TYPE = "super-spine-kit:infra:ProjectApis"


@dataclass
class ProjectApisArgs:
    project: str
    services: Sequence[str]


class ProjectApis(pulumi.ComponentResource):
    """`gcp.projects.Service` per API; never disabled on destroy (other stacks may use them)."""

    def __init__(
        self, name: str, args: ProjectApisArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(TYPE, name, None, opts)
        self.services = [
            gcp.projects.Service(
                f"{name}-{service.split('.')[0]}",
                project=args.project,
                service=service,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for service in args.services
        ]
        self.register_outputs({"services": [s.service for s in self.services]})
