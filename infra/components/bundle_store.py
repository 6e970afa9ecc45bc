"""The bucket the VM provisions itself from: one private object, the bundle, readable by the VM.

The object's name carries the bundle's digest (infra/bundle.py): a new bundle is a new
object and a new instance template, so the group rolls the VM onto it. The bucket holds
nothing that cannot be rebuilt with `make bundle`, so `pulumi destroy` may empty it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.bundle import Bundle

TYPE = "super-spine-kit:infra:BundleStore"


@dataclass
class BundleStoreArgs:
    location: str
    bundle: Bundle
    reader: pulumi.Input[str]
    labels: Mapping[str, str]
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class BundleStore(pulumi.ComponentResource):
    """Bucket (uniform access, no public access) + the bundle object + one reader."""

    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: BundleStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            location=args.location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=True,
            labels=dict(args.labels),
            opts=child,
        )
        self.object = gcp.storage.BucketObject(
            f"{name}-object",
            bucket=self.bucket.name,
            name=args.bundle.object_name,
            source=pulumi.FileAsset(str(args.bundle.path)),
            content_type="application/x-tar",
            opts=child,
        )
        self.reader = gcp.storage.BucketIAMMember(
            f"{name}-reader",
            bucket=self.bucket.name,
            role="roles/storage.objectViewer",
            member=args.reader,
            opts=child,
        )
        # The JSON API's download URL: what the startup script fetches with the VM's token.
        self.url = pulumi.Output.concat(
            "https://storage.googleapis.com/storage/v1/b/",
            self.bucket.name,
            "/o/",
            self.object.name,
            "?alt=media",
        )
        self.register_outputs({"bucket": self.bucket.name, "url": self.url})
