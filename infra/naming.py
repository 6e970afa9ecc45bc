"""One naming helper, so two stacks in one GCP project never collide.

Logical names carry the stack (`ssk-prod-vm`): Pulumi derives auto-generated physical names
from them, so a glance at the console tells which stack owns a resource. Physical names that
must be given explicitly (service-account ids, secret ids) go through `physical()`, which
respects GCP's length limits by shortening with a stable hash instead of truncating blindly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX = "ssk"


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes: safe in every GCP name."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "stack"


@dataclass(frozen=True)
class Namer:
    stack: str

    @property
    def base(self) -> str:
        return f"{PREFIX}-{slug(self.stack)}"

    def logical(self, part: str) -> str:
        """The Pulumi resource name for `part` in this stack."""
        return f"{self.base}-{slug(part)}"

    def physical(self, part: str, max_len: int = 63) -> str:
        """A GCP name for `part`: starts with a letter, at most `max_len` characters."""
        name = self.logical(part)
        if len(name) <= max_len:
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:6]
        return f"{name[: max_len - 7].rstrip('-')}-{digest}"
