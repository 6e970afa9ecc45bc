"""Routes: which tiers each persistence class travels to, from config, one bit per tier.

Each bad route is its own case: one line naming the key, the value and what to do. The
storage is held to the routes it is given: a class routed nowhere is never journaled or
written, a class routed to files only never reaches git, and the pending bits an entry
carries are those of its route.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bootstrap.config import DEFAULTS, ConfigError, config_from_mapping, load_config
from bootstrap.policy import Routes
from bootstrap.records import PersistenceClass
from bootstrap.storage import HybridStorage


def error_for(routes: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"routes": routes})
    return str(info.value)


def test_the_default_routes_are_todays_behaviour() -> None:
    routes = config_from_mapping({}).routes
    assert routes == {"critical": ("files", "git"), "session": ("files",), "cache": ()}
    assert DEFAULTS["routes.critical"] == "files, git"


def test_an_unknown_tier_is_named() -> None:
    message = error_for({"critical": ["files", "s3"]})
    assert message.startswith("config error: routes.critical=")
    assert "unknown tier 's3' (known: files, git" in message


def test_a_tier_listed_twice_is_refused() -> None:
    assert "tier 'files' is listed twice" in error_for({"session": "files, files"})


def test_git_before_files_is_refused() -> None:
    message = error_for({"critical": ["git", "files"]})
    assert "git backs up files: list files before git" in message


def test_git_without_files_is_refused() -> None:
    assert "list files before git" in error_for({"critical": ["git"]})


def test_cache_routed_to_a_durable_tier_is_refused() -> None:
    message = error_for({"cache": ["files"]})
    assert message.startswith("config error: routes.cache=") and "memory only" in message


def test_a_route_that_is_not_a_list_is_refused() -> None:
    assert "expected a list of tiers" in error_for({"session": 5})


def test_an_unknown_class_under_routes_is_refused() -> None:
    message = error_for({"archive": ["files"]})
    assert message.startswith("config error: routes.archive=") and "unknown key" in message


def test_a_route_string_has_a_limit() -> None:
    assert "longer than 256" in error_for({"session": "files," * 100})


def test_routes_come_from_the_environment_too() -> None:
    config = load_config(None, env={"SUPER_SPINE_ROUTES__CRITICAL": "files"})
    assert config.routes["critical"] == ("files",)
    with pytest.raises(ConfigError, match=r"routes\.session='nope'"):
        load_config(None, env={"SUPER_SPINE_ROUTES__SESSION": "nope"})


def test_one_bit_per_configured_tier() -> None:
    routes = Routes(
        {PersistenceClass.CRITICAL: ("files", "git"), PersistenceClass.SESSION: ("files",)}
    )
    assert routes.tiers == ("files", "git")
    assert routes.mask(PersistenceClass.CRITICAL) == 0b11
    assert routes.mask(PersistenceClass.SESSION) == 0b01
    assert routes.mask(PersistenceClass.CACHE) == 0
    assert routes.owed_after_restore(PersistenceClass.CRITICAL, "git") == 0b01
    assert routes.owed_after_restore(PersistenceClass.CRITICAL, "files") == 0
    assert not routes.journaled(PersistenceClass.CACHE)


def test_a_critical_class_routed_to_files_only_never_reaches_git(
    make_storage: Callable[..., HybridStorage], tmp_path: Path
) -> None:
    storage = make_storage(routes={"critical": ["files"]})
    storage.put("agents", "a1", {"n": 1})
    storage.tier()
    storage.backup()
    status = storage.status()
    assert "git" not in status["tiers"] and "backup" not in status
    assert status["dirty"] == {"files": 0, "unevictable_over_limit": False}
    assert (tmp_path / "storage" / "agents.json").exists()
    assert not (tmp_path / "storage" / ".backup.git").exists()
    storage.close(backup=False)
    again = make_storage(routes={"critical": ["files"]})
    assert again.get("agents", "a1") == {"n": 1}


def test_a_class_routed_nowhere_is_memory_only(
    make_storage: Callable[..., HybridStorage], tmp_path: Path
) -> None:
    storage = make_storage(routes={"critical": "none", "session": "none"})
    storage.put("agents", "a1", {"n": 1})
    storage.put("stats", "s1", {"n": 2})
    assert storage.status()["journal"]["bytes"] == 0, "nothing routed anywhere is journaled"
    storage.tier()
    assert not list((tmp_path / "storage").glob("*.json"))
    storage.close(backup=False)
    assert make_storage(routes={"critical": "none", "session": "none"}).get("agents", "a1") is None


def test_pending_bits_follow_the_route(make_storage: Callable[..., HybridStorage]) -> None:
    storage = make_storage()
    storage.put("agents", "a1", {"n": 1})
    storage.put("stats", "s1", {"n": 2})
    assert storage.status()["dirty"] == {"files": 2, "git": 1, "unevictable_over_limit": False}
    storage.tier_files_only()
    assert storage.status()["dirty"] == {"files": 0, "git": 1, "unevictable_over_limit": False}
    storage.backup(push=False)
    assert storage.status()["dirty"] == {"files": 0, "git": 0, "unevictable_over_limit": False}
