"""Policy pack entry point (`pulumi up --policy-pack infra/policy`).

Pulumi runs this with infra/policy/ as the working directory; the repository root goes on
sys.path so the rules import as `infra.policy.rules`, exactly as the tests import them.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import EnforcementLevel, PolicyPack

from infra.policy.rules import ALL_POLICIES

PolicyPack(
    name="super-spine-kit-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=ALL_POLICIES,
)
