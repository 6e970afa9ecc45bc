from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bootstrap.journal import Journal


def test_replay_returns_every_line_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append("agents", "a", "critical", b'{"v":1}', 1.0)
    journal.append("agents", "a", "critical", None, 2.0)
    journal.append("stats", "s", "session", b"[1,2]", 3.0)
    journal.sync()
    journal.close()
    ops = Journal(tmp_path).open()
    assert [(o.seq, o.collection, o.key, o.value) for o in ops] == [
        (1, "agents", "a", b'{"v":1}'),
        (2, "agents", "a", None),
        (3, "stats", "s", b"[1,2]"),
    ]


def test_torn_tail_is_set_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append("agents", "a", "critical", b"1", 1.0)
    journal.close()
    segment = next(tmp_path.glob("journal-*.jsonl"))
    with open(segment, "ab") as handle:
        handle.write(b'{"s":2,"c":"agents","k":"b","cls":"crit')  # a write cut by a crash
    ops = Journal(tmp_path).open()
    assert [o.key for o in ops] == ["a"]
    assert segment.read_bytes().endswith(b"\n")
    assert list(tmp_path.glob("*.torn"))


def test_sequence_continues_after_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append("agents", "a", "critical", b"1", 1.0)
    journal.close()
    again = Journal(tmp_path)
    again.open()
    assert again.append("agents", "b", "critical", b"2", 2.0) == 2


def test_rotate_and_drop_keep_only_uncovered_segments(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append("agents", "a", "critical", b"1", 1.0)
    closed = journal.rotate()
    journal.append("agents", "b", "critical", b"2", 2.0)
    assert journal.drop_through(closed) == 1
    journal.close()
    assert [o.key for o in Journal(tmp_path).open()] == ["b"]


def test_group_sync_covers_everything_appended_before_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    seqs = [journal.append("agents", str(i), "critical", b"1", 1.0) for i in range(5)]
    assert journal.synced_seq == 0
    assert journal.sync(seqs[0]) == seqs[-1]  # one fdatasync made all five durable
    assert journal.sync(seqs[3]) == seqs[-1]


def test_a_line_appended_while_rotating_is_synced_wherever_it_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer racing a rotation: every segment's bytes are covered by an fdatasync once the
    journal says they are synced (the old rotate synced, then switched; a line in between was
    left unsynced in the closed segment). fdatasync is observed, not replaced."""
    journal = Journal(tmp_path)
    journal.open()
    journal.append("agents", "a", "critical", b"1", 1.0)
    synced: dict[int, int] = {}  # inode -> largest size an fdatasync covered
    real_fdatasync = os.fdatasync
    racer: list[threading.Thread] = []

    def observing_fdatasync(fd: int) -> None:
        info = os.fstat(fd)
        real_fdatasync(fd)
        synced[info.st_ino] = max(synced.get(info.st_ino, 0), info.st_size)
        if not racer:  # the rotation's sync just returned: a writer arrives right now
            racer.append(
                threading.Thread(
                    target=lambda: journal.append("agents", "b", "critical", b"2", 2.0)
                )
            )
            racer[0].start()
            racer[0].join(0.2)

    monkeypatch.setattr(os, "fdatasync", observing_fdatasync)
    journal.rotate()
    racer[0].join()
    assert journal.sync() == journal.seq == 2
    for segment in tmp_path.glob("journal-*.jsonl"):
        info = segment.stat()
        assert synced.get(info.st_ino, 0) >= info.st_size, segment.name
    journal.close()
    assert [o.key for o in Journal(tmp_path).open()] == ["a", "b"]
