"""Guardrails for super-spine-kit stacks (pulumi-policy); the rules live in `rules.py`."""
