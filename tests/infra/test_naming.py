"""Every name the program derives from the stack fits its GCP limit, checked before any
resource is declared (issue 10, defect 9)."""

from __future__ import annotations

import pytest

from infra.config import ConfigError
from infra.naming import AUTONAME_SUFFIX, GCE_LIMIT, MIG_SUFFIX, max_stack_length
from infra.offline import Recording
from tests.infra.conftest import BASE_CONFIG, record

PROJECT = str(BASE_CONFIG["gcp:project"])
LONGEST = max_stack_length(PROJECT)
# Inputs that name a resource explicitly (not auto-named from the logical name).
EXPLICIT = ("name", "accountId", "secretId")


def limit_of(type_: str) -> int | None:
    if type_ == "gcp:cloudrunv2/service:Service":
        return 49
    if type_ == "gcp:sql/databaseInstance:DatabaseInstance":
        return 98 - len(PROJECT) - 1  # <project>:<instance>
    if type_.startswith("gcp:compute/") or type_ == "gcp:storage/bucket:Bucket":
        return GCE_LIMIT
    return None


def derived_names(recording: Recording) -> list[tuple[str, str, int]]:
    """(name GCP would get, type, limit) for every auto-named resource, and the group's VM."""
    names = []
    for resource in recording.resources:
        limit = limit_of(resource.type)
        if not resource.custom or limit is None:
            continue
        if not any(resource.inputs.get(key) for key in EXPLICIT):
            names.append((resource.name + "x" * AUTONAME_SUFFIX, resource.type, limit))
        if "baseInstanceName" in resource.inputs:
            vm = resource.inputs["baseInstanceName"] + "x" * MIG_SUFFIX
            names.append((vm, "the group's VM", GCE_LIMIT))
    return names


@pytest.mark.parametrize("topology", ["cloudrun", "compute", "hybrid"])
def test_the_longest_accepted_stack_name_fits_every_limit(topology: str) -> None:
    recording = record(topology, stack="s" * LONGEST)
    names = derived_names(recording)
    assert names
    for name, type_, limit in names:
        assert len(name) <= limit, f"{type_}: {name} ({len(name)} > {limit})"


def test_the_limit_is_tight() -> None:
    """One character more and some name would not fit: the table is not over-cautious."""
    longest = max(
        len(name) - limit
        for topology in ("cloudrun", "compute", "hybrid")
        for name, _, limit in derived_names(record(topology, stack="s" * LONGEST))
    )
    assert longest == 0


def test_a_longer_stack_name_stops_the_program_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        record("compute", stack="s" * (LONGEST + 1))
    message = str(caught.value)
    assert message.startswith(f"config stack='{'s' * (LONGEST + 1)}' is invalid")
    assert f"at most {LONGEST} characters" in message and "\n" not in message
