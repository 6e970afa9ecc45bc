"""Reading the config file: bounded size, no YAML anchors or aliases, bounded nesting.

A 400-byte YAML alias bomb once cost 1.7 GB and 19 s before any validation ran, and YAML nested
10,000 deep ended in a RecursionError traceback. Both are refused here while the file is being
composed, so the cost of a hostile file stays that of reading 64 KiB.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml
from yaml.composer import ComposerError
from yaml.error import Mark
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import Node

MAX_CONFIG_BYTES = 64 * 1024
MAX_DEPTH = 16  # the config needs 4: top level, section, class list, collection name
MAX_PROBLEM_CHARS = 80


class ConfigFileError(ValueError):
    """Why the file cannot be used, in a few words (config.py adds the key and path)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases, and nesting deeper than MAX_DEPTH."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        mark = cast(Mark, event.start_mark)  # the C extension's Mark is never used here
        if isinstance(event, AliasEvent) or (
            isinstance(event, NodeEvent) and event.anchor is not None
        ):
            raise ComposerError(None, None, "anchors and aliases are not allowed", mark)
        if self.depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_mapping(path: Path) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty file); ConfigFileError says what is wrong."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(f"cannot read the file ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"not UTF-8 text (byte {exc.start})") from None
    loader = StrictLoader(text)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ConfigFileError(f"not valid YAML{where}: {_short(exc.problem)}") from None
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: a constructor's own check, e.g. an integer over Python's 4,300 digits.
        raise ConfigFileError(f"not valid YAML: {_short(str(exc))}") from None
    finally:
        loader.dispose()
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigFileError("the file must hold a mapping of keys")
    return document


def _short(problem: str | None) -> str:
    text = " ".join((problem or "unreadable").split())
    if len(text) <= MAX_PROBLEM_CHARS:
        return text
    return text[: MAX_PROBLEM_CHARS - 3] + "..."
