"""Shared fixtures for unit tests: a controllable clock and storage on a real temp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrap.config import config_from_mapping
from bootstrap.storage import HybridStorage


class FakeClock:
    """Wall-clock stand-in the tests move by hand, so age rules are tested without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_storage(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., HybridStorage]]:
    opened: list[HybridStorage] = []

    def factory(**raw: Any) -> HybridStorage:
        raw.setdefault("storage_path", str(tmp_path / "storage"))
        storage = HybridStorage(config_from_mapping(raw), clock=clock)
        storage.initialize()
        opened.append(storage)
        return storage

    yield factory
    for storage in opened:
        if storage.is_open:
            storage.close(backup=False)
