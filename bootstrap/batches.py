"""Batches: bulk writes and transactions applied as one step for this agent. Apart from the
facade because a batch has its own path: each operation planned under one hold of the lock
(conditions decided here, or left to the tier that decides them: PostgreSQL), the tiers that
must hold it reached once, then one journal group and one fdatasync. bootstrap.batch
validates the operations; this module applies them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import conditions
from .batch import BatchOp, OpResult
from .conditions import check_precondition, check_ttl
from .config import AgentConfig
from .errors import BadRequest, PreconditionFailed, StorageFull, TransactionFailed
from .expiry import Expiry
from .journal import GroupItem, Journal, JournalWriteError
from .memory import MemoryStore
from .policy import Routes
from .records import Change, Entry, Guarded, PersistenceClass, version_of
from .replicas import Replica
from .routing import TierRouting
from .write_clock import WriteClock

if TYPE_CHECKING:
    from .storage import Counters


@dataclass
class BatchOutcome:
    """A batch's results in the order of its operations; `sync_seq` is the journal sequence
    number to sync before the ack (0: nothing to wait for)."""

    results: list[OpResult]
    sync_seq: int


@dataclass(slots=True)
class _Planned:
    """One operation of a batch on its way to the tiers: `routed` to the tier that decides its
    condition; `skip` once that tier refused it (412); `old` the entry held before."""

    index: int
    op: BatchOp
    cls: PersistenceClass
    old: Entry | None
    change: Change
    routed: bool = False
    skip: bool = False


class BatchWriter:
    """Applies a batch to memory, the journal and the tiers that must hold it before the ack."""

    def __init__(
        self,
        config: AgentConfig,
        clock: Callable[[], float],
        memory: MemoryStore,
        journal: Journal,
        routes: Routes,
        replicas: Sequence[Replica],
        routing: TierRouting,
        write_clock: WriteClock,
        expiry: Expiry,
        counters: Counters,
        resolve_class: Callable[[str, str | PersistenceClass | None], PersistenceClass],
        journal_full: Callable[[], bool],
        sync: Callable[[int | None], None],
    ) -> None:
        self.config = config
        self.clock = clock
        self.memory = memory
        self.journal = journal
        self.routes = routes
        self.replicas = replicas
        self.routing = routing
        self.write_clock = write_clock
        self.expiry = expiry
        self.counters = counters
        self.resolve_class = resolve_class
        self.journal_full = journal_full
        self.sync = sync

    def live(self, entry: Entry | None) -> Entry | None:
        """The entry, or None once its time to live has passed."""
        return conditions.live(entry, self.clock)

    def write_batch(self, ops: Sequence[BatchOp], atomic: bool, wait: bool = True) -> BatchOutcome:
        """Apply validated operations under one hold of the lock, with one journal write (its
        lines marked as one group: a crash keeps all or none of them) and one fdatasync when
        any is critical. `atomic` (a transaction): the first failed condition raises
        TransactionFailed and nothing is written; else a failed condition is that operation's
        412 and the rest go ahead. With wait=False the caller syncs through `sync_seq`.

        Conditions on records of a class routed to a tier that decides them (PostgreSQL) are
        decided there, with every operation of the batch routed to it, in one transaction
        (503, nothing written, when it is away); the others under the lock, against memory.
        PostgreSQL's round trip happens under the lock: the batch is one step for this agent."""
        classes = [self._batch_class(index, op) for index, op in enumerate(ops)]
        arbiter = self._arbiter_of_batch(ops, classes)
        if arbiter is not None:
            arbiter.settle_backlog([(op.collection, op.key) for op in ops])  # not under the lock
        memory = self.memory
        with memory.lock:
            results: list[OpResult | None] = [None] * len(ops)
            plan = self._plan_batch(ops, classes, arbiter, atomic, results)
            settled, taken = self._batch_to_tiers(plan, arbiter, atomic, results)
            seq, durable = self._apply_batch(plan, settled, taken, results)
        sync_seq = seq if durable else 0
        if wait and sync_seq:
            self.sync(sync_seq)
            sync_seq = 0
        return BatchOutcome([r for r in results if r is not None], sync_seq)

    def _arbiter_of_batch(
        self, ops: Sequence[BatchOp], classes: Sequence[PersistenceClass | None]
    ) -> Replica | None:
        """The tier that decides this batch's conditions (PostgreSQL), when one of them is on a
        record of a class routed to it; None: every condition is decided here."""
        for op, pclass in zip(ops, classes, strict=True):
            if op.conditional:
                arbiter = self.routing.arbiter(pclass or self._class_held(op.collection, op.key))
                if arbiter is not None:
                    return arbiter
        return None

    def _class_held(self, collection: str, key: str) -> PersistenceClass:
        """The class of the record held, else the collection's (a delete or check)."""
        entry = self.live(self.memory.entry(collection, key))
        return entry.cls if entry is not None else self.config.class_of(collection)

    def _plan_batch(
        self,
        ops: Sequence[BatchOp],
        classes: Sequence[PersistenceClass | None],
        arbiter: Replica | None,
        atomic: bool,
        results: list[OpResult | None],
    ) -> list[_Planned]:
        """What each operation will do (caller holds the lock); the conditions decided here are
        decided now (TransactionFailed), the arbiter's are left to it."""
        memory = self.memory
        plan: list[_Planned] = []
        for index, (op, pclass) in enumerate(zip(ops, classes, strict=True)):
            c, k = op.collection, op.key
            old = memory.entry(c, k)
            live = self.live(old)
            cls = pclass or (live.cls if live is not None else self.config.class_of(c))
            routed = arbiter is not None and bool(self.routes.mask(cls) & arbiter.bit)
            if op.conditional and not routed:
                try:
                    check_precondition(c, k, live, op.if_match, op.if_absent)
                except PreconditionFailed as exc:
                    if atomic:
                        raise TransactionFailed(
                            index, c, k, exc.current_version, str(exc)
                        ) from None
                    results[index] = OpResult(op.op, c, k, 412, None, exc.current_version)
                    continue
            if op.op == "check":
                results[index] = OpResult(
                    "check", c, k, 200, None if live is None else live.version
                )
                if routed:
                    change = Change(c, k, None, cls.value, self.clock())  # the clock: TTLs
                    plan.append(_Planned(index, op, cls, live, change, routed=True))
                continue
            if op.op == "delete" and live is None and not (routed and op.conditional):
                results[index] = OpResult("delete", c, k, 404, None)
                continue
            now = self.write_clock.next(old) / 1_000_000
            expires = None if op.ttl is None else now + op.ttl
            change = Change(c, k, op.raw, cls.value, now, expires=expires)
            plan.append(_Planned(index, op, cls, old, change, routed))
        return plan

    def _batch_to_tiers(
        self,
        plan: list[_Planned],
        arbiter: Replica | None,
        atomic: bool,
        results: list[OpResult | None],
    ) -> tuple[dict[int, int | None], dict[int, int]]:
        """Reach the tiers that decide or must hold the batch before the ack (caller holds the
        lock): index -> the version a tier settled on, and index -> the bits of the tiers that
        took it. A condition the arbiter lost is that operation's 412 (a transaction: raised,
        nothing written anywhere)."""
        settled: dict[int, int | None] = {}
        taken: dict[int, int] = {}
        guarded = [p for p in plan if p.routed]
        if arbiter is not None and guarded:
            ops = [
                Guarded(p.change, p.op.if_match, p.op.if_absent, p.op.op != "check")
                for p in guarded
            ]
            versions, lost = arbiter.decide_batch(ops, atomic)
            if lost and atomic:
                first = min(lost)
                p = guarded[first]
                failure = lost[first]
                raise TransactionFailed(
                    p.index, p.op.collection, p.op.key, failure.current_version, str(failure)
                )
            for position, p in enumerate(guarded):
                if position in lost:
                    results[p.index] = OpResult(
                        p.op.op,
                        p.op.collection,
                        p.op.key,
                        412,
                        None,
                        lost[position].current_version,
                    )
                    p.skip = True
                    continue
                settled[p.index] = versions[position]
                taken[p.index] = arbiter.bit
                if p.op.op == "check":
                    results[p.index] = OpResult(
                        "check", p.op.collection, p.op.key, 200, versions[position]
                    )
        rest = [p for p in plan if not p.routed]
        for replica in self.replicas:
            mine = [p for p in rest if replica.writes_through(p.cls)]
            if not mine:
                continue
            versions_through = replica.write_through_many([p.change for p in mine]) or []
            for position, p in enumerate(mine):
                taken[p.index] = taken.get(p.index, 0) | replica.bit
                if position < len(versions_through):
                    settled[p.index] = max(settled.get(p.index) or 0, versions_through[position])
        return settled, taken

    def _apply_batch(
        self,
        plan: list[_Planned],
        settled: dict[int, int | None],
        taken: dict[int, int],
        results: list[OpResult | None],
    ) -> tuple[int, bool]:
        """Journal the batch as one group and install it in memory (caller holds the lock):
        (the group's journal sequence number, whether a critical record needs its sync)."""
        memory, routes = self.memory, self.routes
        items: list[GroupItem] = []
        durable = False
        done: list[tuple[_Planned, float, float | None]] = []
        for p in plan:
            if p.skip or p.op.op == "check":
                continue
            version = settled.get(p.index) or version_of(p.change.mtime)
            self.write_clock.observe(version)
            now = version / 1_000_000
            c, k, old = p.op.collection, p.op.key, p.old
            if p.op.op == "delete":
                live = self.live(old)
                if live is not None:
                    if routes.journaled(live.cls):
                        items.append((c, k, live.cls.value, None, now, None))
                    durable = durable or live.cls.waits_for_sync
                results[p.index] = OpResult("delete", c, k, 200, None)
                done.append((p, now, None))
                continue
            expires = p.change.expires
            if routes.journaled(p.cls):
                items.append((c, k, p.cls.value, p.op.raw, now, expires))
                durable = durable or p.cls.waits_for_sync
            elif old is not None and routes.journaled(old.cls):
                items.append((c, k, old.cls.value, None, now, None))  # leaves its tiers
                durable = durable or old.cls.waits_for_sync
            results[p.index] = OpResult("put", c, k, 200, version)
            done.append((p, now, expires))
        try:
            seq = self.journal.append_group(items)
        except JournalWriteError as exc:
            self.counters.put_errors += 1
            raise StorageFull(f"write refused, nothing stored: {exc.strerror or exc}") from None
        for p, now, expires in done:
            c, k = p.op.collection, p.op.key
            if p.op.op == "delete":
                live = self.live(p.old)
                if live is not None:
                    memory.remove_entry(c, k, live.cls, now)
                    self.counters.deletes += 1
                continue
            assert p.op.raw is not None
            mask = self.routes.mask(p.cls) & ~taken.get(p.index, 0)
            memory.set_entry(c, k, Entry(p.op.raw, p.cls, now, mask, expires), now)
            if expires is not None:
                self.expiry.track(c, k)
            self.counters.puts += 1
        if memory.used > memory.limit and not memory.evict_blocked:
            memory.evict_for_limit()
        elif seq and self.journal_full() and memory.on_pressure is not None:
            memory.on_pressure()
        return seq, durable

    def _batch_class(self, index: int, op: BatchOp) -> PersistenceClass | None:
        """A put's class, its TTL allowed for it; refused naming the operation."""
        if op.op != "put":
            return None
        try:
            pclass = self.resolve_class(op.collection, op.cls)
            if op.ttl is not None:
                check_ttl(op.collection, op.key, pclass, op.ttl)
        except BadRequest as exc:
            raise BadRequest(f"operations[{index}]: {exc}") from None
        return pclass
