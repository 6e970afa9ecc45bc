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


# Pulumi auto-names a resource `<logical name>-<7 hex>`: 8 characters more than the logical name.
AUTONAME_SUFFIX = 8
# A MIG names its VM `<base_instance_name>-<4 chars>`.
MIG_SUFFIX = 5
GCE_LIMIT = 63
# For each kind of name the program derives from the stack: its limit and the longest tail
# the program appends to `ssk-<stack>` (tests/infra/test_naming.py checks every recorded
# resource against this table, so a new resource with a longer name cannot slip past it).
NAME_TAILS: dict[str, tuple[int, str]] = {
    "GCE resources (VPC, subnet, firewall, router, NAT, disk, template, group, health check)": (
        GCE_LIMIT,
        "-net-allow-health" + "x" * AUTONAME_SUFFIX,
    ),
    "the instance group's VM": (GCE_LIMIT, "-vm" + "x" * MIG_SUFFIX),
    "snapshot schedules and the disk's policy attachment": (
        GCE_LIMIT,
        "-vm-data-snapshots" + "x" * AUTONAME_SUFFIX,
    ),
    "the bundle bucket": (GCE_LIMIT, "-bundle-bucket" + "x" * AUTONAME_SUFFIX),
    # Cloud Run service names: at most 49 characters.
    "the Cloud Run service": (49, "-svc-run" + "x" * AUTONAME_SUFFIX),
}
# Cloud SQL: `<project>:<instance>` at most 98 characters.
SQL_CONNECTION_LIMIT = 98
SQL_TAIL = "-sql-pg" + "x" * AUTONAME_SUFFIX


class NameTooLong(ValueError):
    """A stack name that would make a GCP name longer than its limit."""


def _limits(project: str) -> list[tuple[str, int, str]]:
    limits = [(what, limit, tail) for what, (limit, tail) in NAME_TAILS.items()]
    limits.append(("the Cloud SQL instance", SQL_CONNECTION_LIMIT - len(project) - 1, SQL_TAIL))
    return limits


def max_stack_length(project: str) -> int:
    """The longest stack name (after slug()) whose every derived name fits its limit."""
    return min(limit - len(tail) for _, limit, tail in _limits(project)) - len(PREFIX) - 1


def check_stack_name(stack: str, project: str) -> None:
    """Refuse, before any resource is declared, a stack whose names GCP would refuse."""
    base = Namer(stack).base
    for what, limit, tail in _limits(project):
        if len(base) + len(tail) > limit:
            raise NameTooLong(
                f"stack {stack!r} makes names of {what} {len(base) + len(tail)} characters "
                f"long, over GCP's {limit}; use a stack name of at most "
                f"{max_stack_length(project)} characters (after lower-casing and replacing "
                "other characters with -)"
            )
