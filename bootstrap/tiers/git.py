"""The cold tier: critical records backed up to git, pushed to a per-host branch of a remote.

Layout of every commit's tree (a bare repository; no work tree, no index):

    MANIFEST.json              host, time, the snapshot and the list of change segments
    snapshot/<file>.jsonl      every critical record at the last snapshot, sorted by key
    changes/<n>.jsonl          what one backup changed: one line per put or delete

A backup writes one segment blob and three small trees straight into the object database, so
its cost follows the number of changed records, not the total (an index-based commit rehashes
every file). Restore reads a few large blobs in one `git cat-file --batch` run. When segments
grow past a threshold the next backup writes a fresh snapshot and drops them (compaction), and
history older than `history_max_age` is squashed into one root commit (bounded growth).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import ClassVar, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import git
import orjson
from git.db import GitCmdObjectDB
from git.objects.commit import Commit
from git.objects.fun import tree_to_stream
from git.objects.tree import Tree
from git.refs import SymbolicReference
from gitdb import IStream, LooseObjectDB

from ..records import Change, exact_bytes
from .files import parse as _parse_lines

log = logging.getLogger("spine.git")

MANIFEST = "MANIFEST.json"
REMOTE_TIP_FILE = "spine-remote-tip"
FOREIGN_REF = "refs/spine/foreign"
SEGMENTS_BEFORE_SNAPSHOT = 64
SEGMENT_BYTES_RATIO = 0.5
GIT_TIMEOUT = 60.0
BLOB_MODE = 0o100644
TREE_MODE = 0o040000


class GitRecord(NamedTuple):
    """A critical record change on its way to or from git. value None means deleted."""

    file: str
    key: str
    mtime: float
    value: bytes | None


@dataclass
class GitState:
    """What the branch tip holds, kept in memory so a commit never reads trees back."""

    snapshot: dict[str, bytes] = field(default_factory=dict)  # file name -> blob sha
    snapshot_bytes: int = 0
    snapshot_at: float = 0.0
    segments: list[tuple[str, bytes, int]] = field(default_factory=list)  # name, sha, bytes
    next_segment: int = 1
    written_at: float = 0.0
    head: bytes | None = None


class _InProcessWrites(GitCmdObjectDB):
    """GitPython's default database, except that objects are written in-process as loose
    objects: its own store() runs one `git hash-object` process per object (six per backup)."""

    # gitdb makes new objects 0444 (readable by everyone); the backup is owner and group only.
    new_objects_mode = 0o440

    def store(self, istream: IStream) -> IStream:
        return LooseObjectDB.store(self, istream)


class GitUnavailable(RuntimeError):
    """The remote could not be reached; the agent keeps serving and retries."""


class RemoteMoved(GitUnavailable):
    """The remote branch holds commits this host has not merged: fetch and merge, then push."""


class GitTier:
    """Bare repository, index-free commits, push to `branch` on `remote`.

    The storage drives it through its replica (segments from pending records, snapshots from
    the warm files); the contract verbs below (read/write/publish/status, see bootstrap.tiers)
    serve tools and the contract tests."""

    name: ClassVar[str] = "git"

    def __init__(
        self,
        path: Path,
        branch: str,
        remote: str | None = None,
        ssh_key_file: Path | None = None,
        token_file: Path | None = None,
        history_max_age: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.branch = branch
        self.remote = remote
        self.ssh_key_file = ssh_key_file
        self.token_file = token_file
        self.history_max_age = history_max_age
        self.clock = clock
        self.state = GitState()
        self._repo: git.Repo | None = None

    # -- repository -----------------------------------------------------------------------
    @property
    def ref(self) -> str:
        return f"refs/heads/{self.branch}"

    def open(self) -> float | None:
        """Create or open the bare repository and read the branch tip's manifest; the time the
        tip was written (its newest change), None without one."""
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            git.Repo.init(self.path, bare=True)
        # Objects are written in-process (loose objects, no index). Reads go through GitPython's
        # persistent `git cat-file` processes, which leak in long-running programs: the few
        # reads happen at start and in squash_history, and each ends with _release_readers().
        self._repo = git.Repo(self.path, odbt=_InProcessWrites)
        with self._repo.config_writer() as cfg:
            cfg.set_value("user", "name", "spine-agent")
            cfg.set_value("user", "email", "spine-agent@localhost")
            cfg.set_value("gc", "auto", "0")
            # Snapshot blobs are megabytes of JSON: delta-searching them made a push of 100k
            # records take 15 s (measured); stored whole it took 2.7 s. Fetched packs are kept
            # as packs, not exploded into loose objects.
            cfg.set_value("core", "bigFileThreshold", "512k")
            cfg.set_value("fetch", "unpackLimit", "1")
        self._tighten_permissions()
        self._load_state()
        return self.state.written_at if self.state.head is not None else None

    def _tighten_permissions(self) -> None:
        """Take away others' access to anything in the backup repository (files written by
        gitdb before it was told otherwise, or a repository copied in)."""
        for root, dirs, files in os.walk(self.path):
            for name in dirs + files:
                path = os.path.join(root, name)
                mode = os.lstat(path).st_mode
                if mode & 0o007 and not stat.S_ISLNK(mode):
                    os.chmod(path, stat.S_IMODE(mode) & ~0o007)

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            raise RuntimeError("GitTier.open() was not called")
        return self._repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def _tip(self) -> bytes | None:
        ref_file = self.path / self.ref
        if ref_file.exists():
            return bytes.fromhex(ref_file.read_text().strip())
        packed = self.path / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == self.ref:
                    return bytes.fromhex(parts[0])
        return None

    def _load_state(self) -> None:
        tip = self._tip()
        self.state = self._state_at(tip) if tip is not None else GitState()

    def _state_at(self, commit: bytes) -> GitState:
        """What a commit holds, from its MANIFEST.json."""
        manifest = self._read_blobs([self._path_sha(commit, MANIFEST)])[0]
        self._release_readers()
        body = orjson.loads(manifest)
        return GitState(
            snapshot={name: bytes.fromhex(sha) for name, sha in body["snapshot"].items()},
            snapshot_bytes=int(body.get("snapshot_bytes", 0)),
            snapshot_at=float(body.get("snapshot_at", 0.0)),
            segments=[
                (s["name"], bytes.fromhex(s["sha"]), int(s["bytes"])) for s in body["segments"]
            ],
            next_segment=int(body["next_segment"]),
            written_at=float(body["written_at"]),
            head=commit,
        )

    def _release_readers(self) -> None:
        """End GitPython's cached `git cat-file --batch` children (the known leak)."""
        if self._repo is not None:
            self._repo.git.clear_cache()

    def _path_sha(self, commit_sha: bytes, path: str) -> bytes:
        tree = Commit(self.repo, commit_sha).tree
        return tree[path].binsha

    # -- objects --------------------------------------------------------------------------
    def _blob(self, data: bytes) -> bytes:
        return self.repo.odb.store(IStream(b"blob", len(data), BytesIO(data))).binsha

    def _tree(self, entries: Iterable[tuple[bytes, int, str]]) -> bytes:
        # git orders tree entries by name, with directories compared as "name/".
        ordered = sorted(entries, key=lambda e: e[2] + ("/" if e[1] == TREE_MODE else ""))
        buf = BytesIO()
        tree_to_stream(ordered, buf.write)
        data = buf.getvalue()
        return self.repo.odb.store(IStream(b"tree", len(data), BytesIO(data))).binsha

    def _commit(self, tree_sha: bytes, parents: list[bytes], message: str, when: float) -> bytes:
        moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
        commit = Commit.create_from_tree(
            self.repo,
            Tree(self.repo, tree_sha),
            message,
            parent_commits=[Commit(self.repo, p) for p in parents],
            author_date=moment,
            commit_date=moment,
        )
        return commit.binsha

    def _set_tip(self, sha: bytes) -> None:
        # A Commit object, not a hex string: from a string GitPython looks the sha up through a
        # `git cat-file --batch-check` child that it keeps alive (a leaked child per agent).
        SymbolicReference.create(self.repo, self.ref, Commit(self.repo, sha), force=True)
        # gitdb's lock file leaves refs 0644 whatever the umask: owner and group only here.
        (self.path / self.ref).chmod(0o640)
        self.state.head = sha
        self._release_readers()  # no-op unless something above started a reader anyway

    def _read_blobs(self, shas: list[bytes]) -> list[bytes]:
        """One `git cat-file --batch` run for many blobs: fast, and the process ends with it."""
        if not shas:
            return []
        request = b"".join(s.hex().encode() + b"\n" for s in shas)
        proc = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "--batch"],
            input=request,
            capture_output=True,
            check=True,
            timeout=GIT_TIMEOUT,
        )
        out, pos, blobs = proc.stdout, 0, []
        for _ in shas:
            header_end = out.index(b"\n", pos)
            header = out[pos:header_end].split()
            if len(header) < 3 or header[1] == b"missing":
                raise OSError(f"git object {header[0].decode()} is missing from {self.path}")
            size = int(header[2])
            blobs.append(out[header_end + 1 : header_end + 1 + size])
            pos = header_end + 1 + size + 1
        return blobs

    # -- backup ---------------------------------------------------------------------------
    def needs_snapshot(self) -> bool:
        segment_bytes = sum(s[2] for s in self.state.segments)
        return (
            self.state.head is None
            or len(self.state.segments) >= SEGMENTS_BEFORE_SNAPSHOT
            or (segment_bytes > max(1_000_000, SEGMENT_BYTES_RATIO * self.state.snapshot_bytes))
        )

    def commit_changes(self, changes: list[GitRecord], host: str) -> bytes | None:
        """Append one segment with these changes and commit it. None when there is nothing."""
        if not changes:
            return None
        lines = []
        for rec in changes:
            head = orjson.dumps({"f": rec.file, "k": rec.key, "t": rec.mtime})[:-1]
            lines.append(
                head + (b',"d":true}\n' if rec.value is None else b',"v":' + rec.value + b"}\n")
            )
        data = b"".join(lines)
        name = f"{self.state.next_segment:012d}.jsonl"
        sha = self._blob(data)
        self.state.segments.append((name, sha, len(data)))
        self.state.next_segment += 1
        return self._write_commit(host, f"backup: {len(changes)} change(s)")

    def commit_snapshot(self, files: Mapping[str, Path], host: str) -> bytes:
        """Write every critical record as the new snapshot (one blob per warm file, streamed
        from the file, in the warm files' own layout) and drop the change segments."""
        snapshot, total = {}, 0
        for name, path in files.items():
            size = path.stat().st_size
            with open(path, "rb") as stream:
                snapshot[name] = self.repo.odb.store(IStream(b"blob", size, stream)).binsha
            total += size
        self.state.snapshot, self.state.snapshot_bytes = snapshot, total
        self.state.snapshot_at, self.state.segments = self.clock(), []
        sha = self._write_commit(host, f"snapshot: {len(snapshot)} file(s), {total} bytes")
        self.squash_history()
        return sha

    def _write_commit(self, host: str, message: str) -> bytes:
        now = self.clock()
        self.state.written_at = now
        manifest = orjson.dumps(
            {
                "version": 1,
                "host": host,
                "written_at": now,
                "snapshot": {n: s.hex() for n, s in self.state.snapshot.items()},
                "snapshot_bytes": self.state.snapshot_bytes,
                "snapshot_at": self.state.snapshot_at,
                "segments": [
                    {"name": n, "sha": s.hex(), "bytes": b} for n, s, b in self.state.segments
                ],
                "next_segment": self.state.next_segment,
            },
            option=orjson.OPT_INDENT_2,
        )
        snap_tree = self._tree((sha, BLOB_MODE, n) for n, sha in self.state.snapshot.items())
        seg_tree = self._tree((sha, BLOB_MODE, n) for n, sha, _ in self.state.segments)
        root = self._tree(
            [
                (self._blob(manifest), BLOB_MODE, MANIFEST),
                (snap_tree, TREE_MODE, "snapshot"),
                (seg_tree, TREE_MODE, "changes"),
            ]
        )
        parents = [self.state.head] if self.state.head else []
        sha = self._commit(root, parents, f"{message}\n\nhost: {host}", now)
        self._set_tip(sha)
        return sha

    # -- restore --------------------------------------------------------------------------
    def read_tip(self, state: GitState | None = None) -> tuple[dict[str, bytes], list[GitRecord]]:
        """The snapshot blobs by warm-file name, and the segments' changes in order (of this
        branch's tip, or of another state such as a foreign remote tip)."""
        state = state or self.state
        names = list(state.snapshot)
        shas = [state.snapshot[n] for n in names] + [s[1] for s in state.segments]
        blobs = self._read_blobs(shas)
        changes: list[GitRecord] = []
        for blob in blobs[len(names) :]:
            for line in blob.splitlines():
                rec = orjson.loads(line)
                value = None if rec.get("d") else exact_bytes(orjson.dumps(rec["v"]))
                changes.append(GitRecord(rec["f"], rec["k"], float(rec["t"]), value))
        return dict(zip(names, blobs[: len(names)], strict=True)), changes

    # -- history --------------------------------------------------------------------------
    # -- the tier contract ----------------------------------------------------------------
    def read(self, since: float | None) -> Iterator[Change]:
        """The tip's records in order (a later change of a key replaces an earlier one): the
        snapshot when it is newer than `since`, then every change segment line after it."""
        if self.state.head is None:
            return
        snapshot, changes = self.read_tip()
        at = self.state.snapshot_at
        if since is None or at > since:
            for name, blob in sorted(snapshot.items()):
                collection, cls = _names(name)
                for key, value, _ in _parse_lines(blob) or []:
                    yield Change(collection, key, value, cls, at)
        for rec in changes:
            if since is None or rec.mtime > since:
                collection, cls = _names(rec.file)
                yield Change(collection, rec.key, rec.value, cls, rec.mtime)

    def write(self, changes: Sequence[Change], host: str = "") -> bytes | None:
        """Commit a batch as one change segment, newest wins: a change not later than what the
        tip holds for its key is left out (so a replayed batch commits nothing)."""
        held: dict[tuple[str, str], float] = {}
        for change in self.read(None):
            held[(change.collection, change.key)] = change.mtime
        newest: dict[tuple[str, str], Change] = {}
        for change in changes:
            ident = (change.collection, change.key)
            kept = newest.get(ident)
            if change.mtime > held.get(ident, float("-inf")) and (
                kept is None or change.mtime >= kept.mtime
            ):
                newest[ident] = change
        records = [
            GitRecord(_file_of(c.collection, c.cls), c.key, c.mtime, c.value)
            for c in newest.values()
        ]
        return self.commit_changes(records, host or "spine-agent") if records else None

    def publish(self, deadline: float) -> None:
        """Push the tip before `deadline` (time.monotonic); GitUnavailable when it cannot."""
        if self.remote and self.state.head is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GitUnavailable("no time left to push")
            self.push(self.known_remote_tip(), timeout=remaining)

    def status(self) -> dict[str, object]:
        return {
            "branch": self.branch,
            "remote": redact(self.remote) if self.remote else None,
            "head": self.state.head.hex() if self.state.head else None,
            "segments": len(self.state.segments),
        }

    def commit_count(self) -> int:
        count, sha = 0, self.state.head
        while sha is not None:
            count += 1
            parents = Commit(self.repo, sha).parents
            sha = parents[0].binsha if parents else None
        self._release_readers()
        return count

    def squash_history(self) -> int:
        """Fold commits older than history_max_age into one root commit. Returns commits removed."""
        cutoff = self.clock() - self.history_max_age
        chain: list[Commit] = []
        sha = self.state.head
        while sha is not None:
            commit = Commit(self.repo, sha)
            chain.append(commit)
            sha = commit.parents[0].binsha if commit.parents else None
        chain.reverse()  # oldest first
        old = [c for c in chain if c.committed_date < cutoff]
        if len(old) <= 1:
            self._release_readers()
            return 0
        newest_old = old[-1]
        when = float(newest_old.committed_date)
        new_sha = self._commit(
            newest_old.tree.binsha,
            [],
            f"squashed {len(old)} commit(s) older than "
            f"{dt.datetime.fromtimestamp(cutoff, tz=dt.UTC):%Y-%m-%d %H:%M}Z",
            when,
        )
        for commit in chain[len(old) :]:
            message = commit.message if isinstance(commit.message, str) else commit.message.decode()
            new_sha = self._commit(
                commit.tree.binsha, [new_sha], message, float(commit.committed_date)
            )
        self._set_tip(new_sha)
        self._release_readers()
        self._gc()
        return len(old) - 1

    def _gc(self) -> None:
        self._git("reflog", "expire", "--expire=now", "--all")
        self._git("gc", "--prune=now", "--quiet")

    # -- remote ---------------------------------------------------------------------------
    # The branch is this host's, and squashing rewrites it, so pushes replace it. They are
    # protected by a lease on the last remote tip this repository knows it has merged: a tip it
    # has not seen (another VM's backup, written while this one started without the remote) is
    # never overwritten; it is fetched and merged first.
    @property
    def _tip_file(self) -> Path:
        return self.path / REMOTE_TIP_FILE

    def known_remote_tip(self) -> bytes | None:
        """The remote tip recorded after the last push, fetch or merge (None: none known)."""
        try:
            text = self._tip_file.read_text().strip()
        except OSError:
            return None
        return bytes.fromhex(text) if text else None

    def record_remote_tip(self, sha: bytes | None) -> None:
        self._tip_file.write_text(sha.hex() if sha else "")

    def remote_tip(self, timeout: float = GIT_TIMEOUT) -> bytes | None:
        """The branch's tip on the remote now (None when the branch does not exist there)."""
        if not self.remote:
            return None
        listing = self._git(
            "ls-remote", "--heads", self.remote, self.ref, remote=True, timeout=timeout
        )
        return bytes.fromhex(listing.split()[0]) if listing.strip() else None

    def is_merged(self, sha: bytes) -> bool:
        """True when this repository already holds everything that remote tip holds."""
        if sha == self.known_remote_tip() or sha == self.state.head:
            return True
        if self.state.head is None:
            return False
        probe = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.path),
                "merge-base",
                "--is-ancestor",
                sha.hex(),
                self.state.head.hex(),
            ],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
        return probe.returncode == 0

    def fetch_foreign(self, timeout: float = GIT_TIMEOUT) -> GitState | None:
        """Fetch the remote branch aside (not over ours) and return what its tip holds."""
        if not self.remote:
            return None
        self._git(
            "fetch",
            *self._fetch_options(),
            self.remote,
            f"+{self.ref}:{FOREIGN_REF}",
            remote=True,
            timeout=timeout,
        )
        tip = bytes.fromhex((self.path / FOREIGN_REF).read_text().strip())
        return self._state_at(tip)

    def _fetch_options(self) -> list[str]:
        """On file:// and ssh remotes git runs upload-pack for us, so it can be told not to
        delta-search the megabyte snapshot blobs (a 100k-record clone: 9.8 s, most of it
        that search). Other transports use the server's own settings; see the README."""
        options = ["--quiet", "--no-tags"]
        scheme = self.remote.split("://", 1)[0] if self.remote and "://" in self.remote else ""
        if scheme in ("file", "ssh") or (self.remote and "://" not in self.remote):
            options.append("--upload-pack=git -c core.bigFileThreshold=512k upload-pack")
        return options

    def push(self, expected: bytes | None, timeout: float = GIT_TIMEOUT) -> None:
        """Replace the remote branch with ours, only if it still is at `expected`."""
        if not self.remote or self.state.head is None:
            return
        lease = f"--force-with-lease={self.ref}:{expected.hex() if expected else ''}"
        try:
            self._git(
                "push",
                "--quiet",
                lease,
                self.remote,
                f"{self.ref}:{self.ref}",
                remote=True,
                timeout=timeout,
            )
        except GitUnavailable as exc:
            if "stale info" in str(exc) or "rejected" in str(exc):
                raise RemoteMoved(f"remote branch {self.branch} moved; merging it first") from None
            raise
        self.record_remote_tip(self.state.head)

    def fetch(self, timeout: float = GIT_TIMEOUT) -> bool:
        """Bring the remote branch in (restore on a new VM). False when the remote lacks it."""
        if not self.remote:
            return False
        tip = self.remote_tip(timeout)
        if tip is None:
            self.record_remote_tip(None)
            return False
        self._git(
            "fetch",
            *self._fetch_options(),
            self.remote,
            f"+{self.ref}:{self.ref}",
            remote=True,
            timeout=timeout,
        )
        self._load_state()
        self.record_remote_tip(self.state.head)
        return True

    def _git(self, *args: str, remote: bool = False, timeout: float = GIT_TIMEOUT) -> str:
        """Run git to completion (no lingering children), credentials via env, never argv."""
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_DIR=str(self.path))
        extra: list[str] = []
        with tempfile.TemporaryDirectory(prefix="spine-git-") as tmp:
            if remote and self.ssh_key_file:
                env["GIT_SSH_COMMAND"] = (
                    f"ssh -i {shlex.quote(str(self.ssh_key_file))} -o IdentitiesOnly=yes "
                    "-o BatchMode=yes -o StrictHostKeyChecking=accept-new"
                )
            if remote and self.token_file:
                helper = Path(tmp) / "askpass"
                helper.write_text(
                    '#!/bin/sh\ncase "$1" in Username*) echo x-access-token;; '
                    f"*) cat {shlex.quote(str(self.token_file))};; esac\n"
                )
                helper.chmod(0o700)
                env["GIT_ASKPASS"] = str(helper)
                # An empty helper clears the host's list: a `credential.helper = store` in
                # ~/.gitconfig or /etc/gitconfig would otherwise save the token in clear text.
                extra += ["-c", "credential.helper="]
            try:
                proc = subprocess.run(
                    ["git", *extra, *args],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise GitUnavailable(f"git {args[0]} timed out after {timeout:g}s") from None
        if proc.returncode != 0:
            if args[0] == "push" and ("stale info" in proc.stderr or "[rejected]" in proc.stderr):
                raise RemoteMoved(f"remote branch moved since this host last saw it ({self.ref})")
            message = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            error = GitUnavailable if remote else OSError
            raise error(f"git {args[0]} failed: {redact(message)}")
        return proc.stdout


def redact(text: str) -> str:
    """Strip user:password@ from any URL in a message before it reaches a log or status."""
    words = []
    for word in text.split():
        if "://" in word and "@" in word:
            parts = urlsplit(word)
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            word = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
        words.append(word)
    return " ".join(words)


def _names(file: str) -> tuple[str, str]:
    """(collection, class) of a backup file name: `agents.json`, `agents.session.json`."""
    stem = file[: -len(".json")] if file.endswith(".json") else file
    collection, _, cls = stem.partition(".")
    return collection, cls


def _file_of(collection: str, cls: str) -> str:
    return f"{collection}.{cls}.json" if cls in ("session",) else f"{collection}.json"
