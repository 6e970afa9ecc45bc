"""The write-ahead journal: what makes an acknowledged critical put survive `kill -9`.

Each put or delete of a file-bound record is appended as one JSON line. A critical put returns
only after the line is on stable storage (fdatasync). Several writers share one fdatasync
(group commit): whoever syncs takes every line appended before it, so concurrent callers wait
for the same flush instead of queueing their own. The journal is cut into numbered segments;
once the warm files hold everything a segment covers, the segment is deleted (checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import orjson

from .durable import fsync_dir
from .records import exact_bytes

log = logging.getLogger("spine.journal")

SEGMENT_PREFIX = "journal-"
SEGMENT_SUFFIX = ".jsonl"
VALUE_MARK = b',"v":'


class JournalOp(NamedTuple):
    """One replayed journal line."""

    seq: int
    collection: str
    key: str
    cls: str
    value: bytes | None  # None means delete
    ts: float


def raw_value(line: bytes) -> bytes:
    """The value exactly as it was written, not re-encoded: the line is `{...head...,"v":VALUE}`
    and no head field can hold `,"v":` (a quote inside a JSON string is always escaped)."""
    start = line.index(VALUE_MARK) + len(VALUE_MARK)
    end = line.rindex(b"}")
    if end <= start:
        raise ValueError("journal line has no value")
    return exact_bytes(line[start:end])


class JournalWriteError(OSError):
    """The journal could not take a write (disk full, I/O error): the put is refused."""


class Journal:
    """Append-only JSON lines with group-committed fdatasync."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._seq = 0
        self._synced_seq = 0
        self._segment_no = 0
        self._fd = -1
        self._broken: OSError | None = None
        self._bytes = 0  # bytes in the segments kept (replayed + appended, less dropped)

    # -- start-up -------------------------------------------------------------------------
    def open(self) -> list[JournalOp]:
        """Replay existing segments (oldest first), then start a fresh segment for new writes."""
        self.directory.mkdir(parents=True, exist_ok=True)
        ops: list[JournalOp] = []
        for number, path in self._segments():
            ops.extend(self._replay(path))
            self._segment_no = max(self._segment_no, number)
            self._bytes += path.stat().st_size
        if ops:
            self._seq = max(op.seq for op in ops)
            self._synced_seq = self._seq
        self._start_segment(self._segment_no + 1)
        return ops

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"):
            number = path.name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if number.isdigit():
                found.append((int(number), path))
        return sorted(found)

    def _replay(self, path: Path) -> Iterator[JournalOp]:
        data = path.read_bytes()
        good_end = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                rec = orjson.loads(line)
                op = JournalOp(
                    seq=int(rec["s"]),
                    collection=rec["c"],
                    key=rec["k"],
                    cls=rec["cls"],
                    value=None if rec.get("d") else raw_value(line),
                    ts=float(rec["t"]),
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                break
            good_end += len(line)
            yield op
        if good_end < len(data):
            # A torn tail is the write that was never acknowledged: keep it aside, replay the rest.
            aside = path.with_suffix(".torn")
            aside.write_bytes(data[good_end:])
            log.warning(
                "journal tail was torn; moved aside",
                extra={"segment": path.name, "bytes": len(data) - good_end, "aside": aside.name},
            )
            with open(path, "r+b") as handle:
                handle.truncate(good_end)

    def _start_segment(self, number: int) -> None:
        path = self.directory / f"{SEGMENT_PREFIX}{number:012d}{SEGMENT_SUFFIX}"
        # O_RDWR, not O_WRONLY: recovering from a failed write preads the segment's tail.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        fsync_dir(self.directory)
        old, self._fd, self._segment_no = self._fd, fd, number
        if old >= 0:
            os.close(old)

    # -- writes ---------------------------------------------------------------------------
    def append(self, collection: str, key: str, cls: str, value: bytes | None, ts: float) -> int:
        """Write one line to the OS (not yet durable) and return its sequence number."""
        head = orjson.dumps({"c": collection, "k": key, "cls": cls, "t": ts})[:-1]
        with self._lock:
            if self._broken is not None:
                raise JournalWriteError(self._broken.errno, f"journal unavailable: {self._broken}")
            seq = self._seq + 1
            tail = b',"d":true}\n' if value is None else VALUE_MARK + value + b"}\n"
            line = b'{"s":' + str(seq).encode() + b"," + head[1:] + tail
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(28, "short write to the journal (disk full?)")
            except OSError as exc:
                self._recover_after_failed_write()
                raise JournalWriteError(exc.errno, f"journal write failed: {exc.strerror}") from exc
            self._seq = seq
            self._bytes += written
            return seq

    def _recover_after_failed_write(self) -> None:
        """A partial line must not stay in front of later good ones: cut the segment back."""
        try:
            size = os.lseek(self._fd, 0, os.SEEK_END)
            data_end = self._last_newline_end(size)
            os.ftruncate(self._fd, data_end)
        except OSError as exc:  # pragma: no cover - the disk is failing under us
            self._broken = exc

    def _last_newline_end(self, size: int) -> int:
        pos = size
        while pos > 0:
            start = max(0, pos - 4096)
            chunk = os.pread(self._fd, pos - start, start)
            index = chunk.rfind(b"\n")
            if index >= 0:
                return start + index + 1
            pos = start
        return 0

    def sync(self, upto: int | None = None) -> int:
        """Make every line up to `upto` (default: all appended) durable; return the synced seq."""
        target = self._seq if upto is None else upto
        if target <= self._synced_seq:
            return self._synced_seq
        with self._sync_lock:
            if target <= self._synced_seq:
                return self._synced_seq
            with self._lock:
                seq, fd = self._seq, self._fd
            try:
                os.fdatasync(fd)
            except OSError as exc:
                raise JournalWriteError(
                    exc.errno, f"journal fdatasync failed: {exc.strerror}"
                ) from exc
            self._synced_seq = max(self._synced_seq, seq)
            return self._synced_seq

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def synced_seq(self) -> int:
        return self._synced_seq

    # -- checkpoints ----------------------------------------------------------------------
    @property
    def segment(self) -> int:
        """The number of the segment appends go to now (every earlier one is closed)."""
        return self._segment_no

    def rotate(self) -> int:
        """Start a new segment; return the number of the last closed one (for `drop_through`).

        The old segment is synced and switched under both locks: a line appended between a
        separate sync and the switch would sit unsynced in a closed segment while a later sync
        of the new one counted it durable, and a sync running meanwhile would fdatasync a
        closed (or reused) descriptor."""
        with self._sync_lock, self._lock:
            seq = self._seq
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                raise JournalWriteError(
                    exc.errno, f"journal fdatasync failed: {exc.strerror}"
                ) from exc
            closed = self._segment_no
            self._start_segment(closed + 1)
            self._synced_seq = max(self._synced_seq, seq)
        return closed

    def drop_through(self, segment_no: int) -> int:
        """Delete segments up to and including `segment_no`: the warm files now cover them."""
        dropped = 0
        for number, path in self._segments():
            if number <= segment_no:
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    with self._lock:
                        self._bytes -= size
                dropped += 1
        if dropped:
            fsync_dir(self.directory)
        return dropped

    def size_bytes(self) -> int:
        """Bytes kept in segments: what a crash now would replay (bounded by checkpoints)."""
        return max(0, self._bytes)

    def abandon(self) -> None:
        """Close without syncing: what a killed process leaves (crash tests)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = -1
