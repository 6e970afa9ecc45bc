"""The warm tier: one human-readable JSON file per collection in the storage path.

Each file is a JSON object with one record per line, keys sorted, so `agents.json` reads well
and diffs cleanly. Because every record sits on its own line, the tier remembers each record's
byte range and serves evicted records with one pread instead of parsing the whole file. The git
snapshot uses the same layout, so `render` and `parse` serve both tiers. A manifest holds a CRC
per file: a file that fails it and does not parse as JSON is moved to `quarantine/` and the
agent starts without it.

Each warm file written by a pass has a hidden sidecar, `.<file>.<crc32>.versions`: the
records' versions (their ETags) in the file's line order, named and checked by the CRC of the
file content it belongs to. A restart thus serves the same ETags as before it, and so does a
git snapshot of that same content. The new sidecar is written before its file is renamed into
place and the old one removed after, so a crash or a failed rename in between leaves the right
one for whichever file is in place. A file without a valid sidecar (written by an older agent,
or edited by hand) still loads: its records take the manifest's write time as their version,
so an older ETag gets a 412, never a wrong match.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

from ..durable import atomic_write, fsync_dir, write_durable_tmp
from ..records import Change

log = logging.getLogger("spine.files")

MANIFEST_NAME = ".warm-manifest.json"
QUARANTINE_DIR = "quarantine"
_KEY = re.compile(rb'"(?:[^"\\]|\\.)*": ')

# key, value bytes, packed location; -1 when not in our layout (rewritten next pass)
ParsedLine = tuple[str, bytes, int]
WRITE_CHUNK = 1 << 20
# The versions sidecar: magic, the CRC32 of the data file it belongs to, then one signed
# 64-bit little-endian version per line.
VERSIONS_MAGIC = b"SSKV"
VERSIONS_HEAD = 8


def versions_name(name: str, data_crc: int) -> str:
    """The hidden sidecar of one content of a warm file (hidden: `*.json` never meets it)."""
    return f".{name}.{data_crc:08x}.versions"


def encode_versions(data_crc: int, versions: list[int]) -> bytes:
    packed = array("q", versions)
    if sys.byteorder == "big":
        packed.byteswap()
    return VERSIONS_MAGIC + data_crc.to_bytes(4, "little") + packed.tobytes()


def decode_versions(blob: bytes, data_crc: int, count: int) -> list[int] | None:
    """The versions, or None unless the sidecar belongs to exactly this file content."""
    if (
        len(blob) != VERSIONS_HEAD + 8 * count
        or blob[:4] != VERSIONS_MAGIC
        or int.from_bytes(blob[4:8], "little") != data_crc
    ):
        return None
    packed = array("q")
    packed.frombytes(blob[VERSIONS_HEAD:])
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tolist()


def pack_location(offset: int, length: int) -> int:
    """A record's line in its warm file as one int: cheaper than a tuple at 100k records."""
    return (offset << 32) | length


def unpack_location(location: int) -> tuple[int, int]:
    return location >> 32, location & 0xFFFFFFFF


def render_lines(items: list[tuple[str, bytes]]) -> Iterator[bytes]:
    """The file format: a JSON object, one `"key": value` line per record, in the given
    (sorted) order. Also the git snapshot format, so one parser serves both tiers."""
    last = len(items) - 1
    dumps = orjson.dumps
    for position, (key, value) in enumerate(items):
        yield dumps(key) + b": " + value + (b"\n" if position == last else b",\n")


def render(items: Iterable[tuple[str, bytes]]) -> bytes:
    """A whole file in memory (small files and tests; the tier streams with write_file)."""
    return b"{\n" + b"".join(render_lines(sorted(items))) + b"}\n"


def parse(data: bytes) -> list[ParsedLine] | None:
    """Records of a file in our own layout, with each line's byte range; None if not ours."""
    if not data.startswith(b"{\n") or not data.endswith(b"}\n"):
        return None
    out: list[ParsedLine] = []
    offset = 2
    match_key = _KEY.match
    loads = orjson.loads
    for line in data[2:-2].split(b"\n"):
        if not line:
            continue
        match = match_key(line)
        if match is None:
            return None
        end = match.end()
        value = line[end:-1] if line.endswith(b",") else line[end:]
        out.append((loads(line[: end - 2]), value, (offset << 32) | (len(line) + 1)))
        offset += len(line) + 1
    return out


def read_value(fd: int, location: int, name: str = "") -> bytes:
    """pread one record's line from an open warm file and return its value."""
    offset, length = unpack_location(location)
    return value_of_line(os.pread(fd, length, offset), name, offset)


def value_of_line(line: bytes, name: str = "", offset: int = 0) -> bytes:
    """The value part of one `"key": value,` line (a pread of an evicted record)."""
    match = _KEY.match(line)
    if not match:
        raise OSError(f"warm file {name} changed under the agent at offset {offset}")
    return line[match.end() :].rstrip(b",\n")


@dataclass(frozen=True)
class StagedFile:
    """A warm file written beside its target, waiting to be renamed into place."""

    name: str
    tmp: Path
    path: Path
    locations: list[int]
    meta: dict[str, int]
    versions_tmp: Path | None = None


class FilesTier:
    """Atomic whole-file writes, byte-range reads and corruption quarantine.

    The storage drives it through its replica (stage/install under the memory lock); the
    contract verbs (open/read/write/publish/status/close, see bootstrap.tiers) serve restore
    tools and the contract tests. The tier keeps one mark for all its files, `written_at`: a
    change is newer than the files only if its mtime is later than that."""

    name: ClassVar[str] = "files"

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock
        self.quarantine_dir = root / QUARANTINE_DIR
        self.written_at: float | None = None
        self._manifest: dict[str, dict[str, int]] = {}
        self.lost: list[str] = []  # data files quarantined by the last load()
        self._versions: dict[str, list[int]] = {}  # from the last load(), until taken
        # The warm tier has state (a manifest or a data file), even if it holds no record:
        # "every record was deleted" must not read as "blank disk, restore from git".
        self.present = False

    @staticmethod
    def file_name(collection: str, cls_override: str | None) -> str:
        return f"{collection}.json" if cls_override is None else f"{collection}.{cls_override}.json"

    @staticmethod
    def parse_name(name: str) -> tuple[str, str | None] | None:
        if not name.endswith(".json") or name.startswith("."):
            return None
        parts = name[: -len(".json")].split(".")
        if len(parts) == 1:
            return parts[0], None
        if len(parts) == 2 and parts[1] in ("critical", "session"):
            return parts[0], parts[1]
        return None

    # -- writing --------------------------------------------------------------------------
    def write_file(self, name: str, items: list[tuple[str, bytes]]) -> list[int]:
        """Stage and install one file (views and tests; the pass installs under its lock)."""
        staged = self.stage(name, items)
        self.install(staged)
        fsync_dir(self.root)
        return staged.locations

    def stage(
        self, name: str, items: list[tuple[str, bytes]], versions: list[int] | None = None
    ) -> StagedFile:
        """Write one collection file beside its target and make it durable, streaming in chunks
        (bounded memory at 100k records). `items` must be sorted by key. Nothing readers see
        changes until `install`: the pass renames it and moves its records' byte ranges in one
        step, so an evicted read never meets the new layout with old offsets."""
        locations: list[int] = []
        state = {"crc": 0, "offset": 0}

        def chunks() -> Iterator[bytes]:
            buffer: list[bytes] = [b"{\n"]
            size, offset = 2, 2
            for line in render_lines(items):
                locations.append((offset << 32) | len(line))
                offset += len(line)
                buffer.append(line)
                size += len(line)
                if size >= WRITE_CHUNK:
                    yield b"".join(buffer)
                    buffer, size = [], 0
            buffer.append(b"}\n")
            yield b"".join(buffer)

        def counted() -> Iterator[bytes]:
            for chunk in chunks():
                state["crc"] = zlib.crc32(chunk, state["crc"])
                state["offset"] += len(chunk)
                yield chunk

        path = self.root / name
        tmp = write_durable_tmp(path, counted())
        meta = {"crc32": state["crc"], "count": len(items), "bytes": state["offset"]}
        versions_tmp = None
        if versions is not None:
            try:
                versions_tmp = write_durable_tmp(
                    self.root / versions_name(name, state["crc"]),
                    encode_versions(state["crc"], versions),
                )
            except OSError:
                tmp.unlink(missing_ok=True)
                raise
        return StagedFile(name, tmp, path, locations, meta, versions_tmp)

    def install(self, staged: StagedFile) -> None:
        """Rename a staged file into place (cheap: the caller holds its readers' lock). Its
        sidecar goes first, under its own CRC-named file; the old content's sidecar is removed
        once the new content is in place."""
        crc = staged.meta["crc32"]
        if staged.versions_tmp is not None:
            os.replace(staged.versions_tmp, self.root / versions_name(staged.name, crc))
        os.replace(staged.tmp, staged.path)
        self._manifest[staged.name] = staged.meta
        keep = versions_name(staged.name, crc)
        for old in self.root.glob(f".{glob.escape(staged.name)}.*.versions"):
            if old.name != keep:
                with contextlib.suppress(OSError):  # a leftover costs only disk
                    old.unlink()

    @staticmethod
    def discard(staged: StagedFile) -> None:
        staged.tmp.unlink(missing_ok=True)
        if staged.versions_tmp is not None:
            staged.versions_tmp.unlink(missing_ok=True)

    def sync_dir(self) -> None:
        """Make the renames durable (once per pass, after every install)."""
        fsync_dir(self.root)

    def commit_manifest(self, newest: float | None = None) -> None:
        """Record what was written; called after a batch of write_file calls. The mark is the
        time now, or the newest change written when that is later (a clock behind another)."""
        self.written_at = max(self.clock(), newest or float("-inf"))
        body = {"version": 1, "written_at": self.written_at, "files": self._manifest}
        atomic_write(self.root / MANIFEST_NAME, orjson.dumps(body, option=orjson.OPT_INDENT_2))

    # -- reading --------------------------------------------------------------------------
    def read_range(self, name: str, location: int) -> bytes:
        """The value of one evicted record: one pread of its line."""
        with open(self.root / name, "rb") as handle:
            return read_value(handle.fileno(), location, name)

    def load(self) -> Iterator[tuple[str, str | None, list[ParsedLine]]]:
        """(collection, class override, records) per warm file; corrupt files are quarantined
        and skipped."""
        self._manifest = {}
        self._versions = {}
        self.lost = []
        manifest_path = self.root / MANIFEST_NAME
        self.present = manifest_path.exists()
        recorded: dict[str, dict[str, int]] = {}
        if manifest_path.exists():
            try:
                body = orjson.loads(manifest_path.read_bytes())
                recorded = body.get("files", {})
                self.written_at = float(body.get("written_at"))
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                self._quarantine(manifest_path, "manifest is not valid JSON")
        for path in sorted(self.root.glob("*.json")):
            parsed = self.parse_name(path.name)
            if parsed is None:
                continue
            collection, cls = parsed
            self.present = True
            data = path.read_bytes()
            crc = zlib.crc32(data)
            entry = recorded.get(path.name)
            records = parse(data) if entry is not None and entry.get("crc32") == crc else None
            if records is None:
                records = self._parse_whole(data, path)
            if records is None:
                continue
            self._manifest[path.name] = {"crc32": crc, "count": len(records), "bytes": len(data)}
            versions = self._read_versions(path.name, crc, len(records))
            if versions is not None:
                self._versions[path.name] = versions
            yield collection, cls, records

    def _read_versions(self, name: str, data_crc: int, count: int) -> list[int] | None:
        try:
            blob = (self.root / versions_name(name, data_crc)).read_bytes()
        except OSError:
            return None
        return decode_versions(blob, data_crc, count)

    def versions_of_content(self, name: str, data: bytes, count: int) -> list[int] | None:
        """The versions of a warm file's content held elsewhere (a git snapshot blob), when
        this storage path still has that content's sidecar."""
        return self._read_versions(name, zlib.crc32(data), count)

    def take_versions(self, name: str) -> list[int] | None:
        """The versions of a file the last load() yielded, in line order (once: restore
        frees them as it goes), or None when it has no valid sidecar."""
        return self._versions.pop(name, None)

    def _parse_whole(self, data: bytes, path: Path) -> list[ParsedLine] | None:
        """Slow path for a file the manifest doesn't vouch for (crash between file and manifest,
        or an edit by hand): accept it if it is a JSON object, else quarantine it."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self._quarantine(path, f"not valid JSON ({exc})")
            return None
        if not isinstance(parsed, dict):
            self._quarantine(path, "not a JSON object")
            return None
        lines = parse(data)
        if lines is not None and len(lines) == len(parsed):
            return lines
        # Valid JSON in another layout: keep the values; locations are refreshed on next write.
        return [(str(k), orjson.dumps(v), -1) for k, v in parsed.items()]

    def _quarantine(self, path: Path, reason: str) -> None:
        self.quarantine_dir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S") + f".{time.time_ns() % 1_000_000_000:09d}"
        target = self.quarantine_dir / f"{path.name}.{stamp}"
        os.replace(path, target)
        if path.name != MANIFEST_NAME:
            self.lost.append(path.name)
        log.error(
            "quarantined a corrupt file",
            extra={"file": path.name, "reason": reason, "moved_to": str(target)},
        )

    # -- the tier contract ----------------------------------------------------------------
    def open(self) -> float | None:
        """The time the files were last written (their newest change), None when never."""
        try:
            body = orjson.loads((self.root / MANIFEST_NAME).read_bytes())
            self.written_at = float(body["written_at"])
        except (OSError, orjson.JSONDecodeError, TypeError, ValueError, KeyError):
            return None
        return self.written_at

    def read(self, since: float | None) -> Iterator[Change]:
        """Every record (since None), or every record when the files changed after `since`:
        files keep no per-record time. Deleted records are simply absent."""
        if since is not None and (self.written_at or 0.0) <= since:
            return
        for collection, cls, records in self.load():
            mtime = self.written_at or 0.0
            for key, value, _ in records:
                yield Change(collection, key, value, cls or "", mtime)

    def write(self, changes: Sequence[Change]) -> None:
        """Merge a batch into the files, newest wins: per key the latest change of the batch,
        and only if it is later than the files' mark (so a replayed batch is a no-op)."""
        mark = self.written_at or float("-inf")
        newest: dict[tuple[str, str], Change] = {}
        for change in changes:
            held = newest.get((change.collection, change.key))
            if change.mtime > mark and (held is None or change.mtime >= held.mtime):
                newest[(change.collection, change.key)] = change
        by_file: dict[str, dict[str, bytes | None]] = {}
        for change in newest.values():
            override = change.cls if change.cls in ("critical", "session") else None
            name = self.file_name(change.collection, override)
            by_file.setdefault(name, {})[change.key] = change.value
        for name, updates in sorted(by_file.items()):
            path = self.root / name
            lines = parse(path.read_bytes()) if path.exists() else None
            current = {k: v for k, v, _ in lines or []}
            for key, value in updates.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self.write_file(name, sorted(current.items()))
        if by_file:
            self.commit_manifest(max(c.mtime for c in newest.values()))

    def publish(self, deadline: float) -> None:
        """Written files are durable when write returns."""

    def status(self) -> dict[str, Any]:
        return {
            "files": self.file_count(),
            "bytes": self.size_bytes(),
            "last_written_at": self.written_at,
            "quarantined": self.quarantined(),
        }

    def close(self) -> None:
        """Nothing is held open between calls."""

    def quarantined(self) -> list[str]:
        if not self.quarantine_dir.exists():
            return []
        return sorted(p.name for p in self.quarantine_dir.iterdir())

    def size_bytes(self) -> int:
        return sum(int(meta.get("bytes", 0)) for meta in self._manifest.values())

    def file_count(self) -> int:
        return len(self._manifest)
