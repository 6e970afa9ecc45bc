"""Connecting, migrating, listening and surviving outages, against a real PostgreSQL 15.

The outage tests stop the session's server with `pg_ctl stop -m immediate` (a crash: no
checkpoint, every client cut off) and start it again, as the issue asks.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bootstrap.config import ConfigError
from bootstrap.tiers.pg_config import parse_postgres_config
from bootstrap.tiers.pg_listener import Listener
from bootstrap.tiers.pg_own import OwnTransactions
from bootstrap.tiers.pg_schema import LATEST_VERSION, SchemaTooNew
from bootstrap.tiers.postgres import (
    Change,
    PostgresTier,
    TierUnavailable,
)
from tests.conftest import PgDatabase

WAIT = 60.0  # generous: a loaded 2-core machine


def tier_for(section: dict[str, object], base: Path, host: str = "a") -> PostgresTier:
    return PostgresTier(parse_postgres_config(section, base), host=host, wait_timeout=1.0)


def private_password_file(pg_db: PgDatabase, tmp_path: Path) -> Path:
    """A copy of the role's password file this test may break and mend."""
    path = tmp_path / "password"
    shutil.copy(pg_db.password_file, path)
    path.chmod(0o600)
    return path


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def put(key: str, value: bytes | None, mtime: float) -> Change:
    return Change("agents", key, value, "critical", mtime)


def open_refused(section: dict[str, object], base: Path) -> str:
    tier = tier_for(section, base)
    with pytest.raises(ConfigError) as caught:
        tier.open()
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- bad input at open ------------------------------------------------------------------------
def test_wrong_password_names_the_password_file(pg_db: PgDatabase, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    message = open_refused(pg_db.section(password_file=str(wrong)), tmp_path)
    assert f"postgres.password_file='{wrong}'" in message
    assert "password authentication failed" in message
    assert "not-the-password" not in message


def test_missing_database(pg_db: PgDatabase, tmp_path: Path) -> None:
    dsn = pg_db.cluster.tcp_dsn("no_such_db", pg_db.role)
    message = open_refused(pg_db.section(dsn=dsn), tmp_path)
    assert "postgres.dsn" in message and 'database "no_such_db" does not exist' in message


def test_ssl_disabled_where_the_server_demands_it(pg_db: PgDatabase, tmp_path: Path) -> None:
    message = open_refused(pg_db.section(dsn=pg_db.tcp_dsn(sslmode="disable")), tmp_path)
    assert "postgres.dsn" in message and "no encryption" in message


def test_server_certificate_from_another_ca(pg_db: PgDatabase, tmp_path: Path) -> None:
    dsn = pg_db.tcp_dsn(ca=str(pg_db.cluster.certs.other_ca))
    message = open_refused(pg_db.section(dsn=dsn), tmp_path)
    assert "postgres.dsn" in message and "certificate verify failed" in message


def test_role_without_rights_is_told_what_to_grant(pg_db: PgDatabase, tmp_path: Path) -> None:
    cluster = pg_db.cluster
    cluster.create_role("spine_norights", "norights-pw")
    with cluster.admin() as admin:
        admin.execute("CREATE DATABASE norights_db")  # owned by postgres: no CREATE for others
    secret = tmp_path / "pw"
    secret.write_text("norights-pw")
    secret.chmod(0o600)
    section = {"dsn": cluster.tcp_dsn("norights_db", "spine_norights"),
               "password_file": str(secret)}
    message = open_refused(section, tmp_path)
    assert "role 'spine_norights' may not create the schema 'spine'" in message
    assert "GRANT CREATE ON DATABASE norights_db TO spine_norights" in message


def test_server_away_is_unavailable_not_a_config_error(tmp_path: Path, pg_db: PgDatabase) -> None:
    section = pg_db.section(dsn="host=127.0.0.1 port=1 dbname=x user=y connect_timeout=2")
    tier = tier_for(section, tmp_path)
    with pytest.raises(TierUnavailable) as caught:
        tier.open()
    assert not isinstance(caught.value, ConfigError)
    assert str(caught.value).startswith("postgres unavailable: ") and "\n" not in str(caught.value)


def test_unix_socket_dsn_as_cloud_sql_mounts_it(pg_db: PgDatabase, tmp_path: Path) -> None:
    tier = tier_for(pg_db.section(dsn=pg_db.socket_dsn()), tmp_path)
    tier.open()
    try:
        assert tier.write([put("k", b"1", 1.0)]) == [1_000_000]
    finally:
        tier.close()


# -- schema -----------------------------------------------------------------------------------
def test_ten_agents_opening_at_once_migrate_exactly_once(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    tiers = [tier_for(pg_db.section(), tmp_path, host=f"h{i}") for i in range(10)]
    barrier = threading.Barrier(len(tiers))
    errors: list[BaseException] = []

    def start(tier: PostgresTier) -> None:
        barrier.wait()
        try:
            tier.open()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(t,)) for t in tiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    for tier in tiers:
        tier.close()
    assert errors == []
    with pg_db.cluster.admin(pg_db.name) as admin:
        rows = admin.execute("SELECT version FROM spine.migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))


def test_schema_newer_than_the_agent_is_refused(pg_db: PgDatabase, tmp_path: Path) -> None:
    first = tier_for(pg_db.section(), tmp_path)
    first.open()
    first.close()
    with pg_db.cluster.admin(pg_db.name) as admin:
        admin.execute("INSERT INTO spine.migrations (version, applied_by) VALUES (99, 'future')")
    with pytest.raises(SchemaTooNew) as caught:
        tier_for(pg_db.section(), tmp_path).open()
    assert "schema version 99, newer than this agent knows" in str(caught.value)


def test_each_schema_name_is_its_own_world(pg_db: PgDatabase, tmp_path: Path) -> None:
    blue = tier_for(pg_db.section(schema="blue"), tmp_path)
    green = tier_for(pg_db.section(schema="green"), tmp_path)
    blue.open()
    green.open()
    try:
        blue.write([put("k", b'"blue"', 1.0)])
        assert list(green.read(None)) == []
    finally:
        blue.close()
        green.close()


# -- the listener ---------------------------------------------------------------------------
class Inbox:
    """What a listener delivered, with arrival times."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.lock = threading.Lock()

    def __call__(self, changes: list[Change]) -> None:
        with self.lock:
            self.changes.extend(changes)

    def received(self) -> list[str]:
        with self.lock:
            return [c.key for c in self.changes]


@dataclass
class Pair:
    """Agent A writes; agent B listens (60 s poll: only NOTIFY or a reconnect can wake it)."""

    a: PostgresTier
    b: PostgresTier
    inbox: Inbox
    listener: Listener


@pytest.fixture
def make_pair(pg_db: PgDatabase, tmp_path: Path) -> Iterator[Callable[..., Pair]]:
    opened: list[PostgresTier] = []

    def factory(**b_overrides: object) -> Pair:
        a = tier_for(pg_db.section(), tmp_path, "a")
        b = tier_for(pg_db.section(**b_overrides), tmp_path, "b")
        opened.extend((a, b))
        mark = a.open()
        b.open()
        inbox = Inbox()
        listener = b.listen(inbox, since=mark, poll_interval=60.0)
        assert listener.wait_connected(WAIT)
        return Pair(a, b, inbox, listener)

    yield factory
    for tier in opened:
        tier.close()


def test_listener_delivers_other_agents_changes_not_its_own(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    pair.b.write([put("mine", b"1", 1.0)])
    pair.a.write([put("theirs", b"2", 1.0), put("gone", None, 1.0)])
    wait_until(lambda: "gone" in pair.inbox.received(), "a's changes on b")
    time.sleep(0.3)
    assert sorted(pair.inbox.received()) == ["gone", "theirs"]
    assert next(c for c in pair.inbox.changes if c.key == "gone").value is None
    status = pair.b.status()["listener"]
    assert status["connected"] and status["notifications"] >= 1


def test_an_own_write_is_not_echoed_when_its_reply_comes_late(
    make_pair: Callable[..., Pair], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The NOTIFY goes out at commit, before the writer's thread has its reply (on a loaded
    machine it may be descheduled right there): hold B's writer 0.5 s between commit and
    noting its txid. The listener must still know the row for B's own, not deliver it back."""
    pair = make_pair()
    own = pair.b._own
    prompt_remember = own.remember

    def late_remember(txids: Iterable[int]) -> None:
        time.sleep(0.5)
        prompt_remember(txids)

    monkeypatch.setattr(own, "remember", late_remember)
    pair.b.write([put("mine", b"1", 1.0)])
    pair.b.write_conditional(put("mine-too", b"1", 1.0), if_absent=True)
    pair.a.write([put("theirs", b"2", 1.0)])
    wait_until(lambda: "theirs" in pair.inbox.received(), "a's change on b")
    time.sleep(0.3)
    assert sorted(pair.inbox.received()) == ["theirs"]
    assert pair.b.status()["listener"]["own_skipped"] >= 1


def test_settle_waits_only_for_the_writes_in_flight_when_called() -> None:
    own = OwnTransactions()
    released = threading.Event()
    in_flight = threading.Event()

    def slow_writer() -> None:
        with own.writing():
            in_flight.set()
            released.wait(WAIT)
            own.remember([42])

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert in_flight.wait(WAIT)
    assert own.settle(timeout=0.2) is False  # still in flight: a bounded wait, then on
    assert not own.is_own(42)
    threading.Timer(0.2, released.set).start()
    assert own.settle(timeout=WAIT) is True
    assert own.is_own(42)
    writer.join(WAIT)
    assert own.settle(timeout=0) is True  # nothing in flight: no wait at all


def test_listener_resyncs_what_it_missed_while_disconnected(
    make_pair: Callable[..., Pair], pg_db: PgDatabase, tmp_path: Path
) -> None:
    """Cut the listener off and keep it off (its password file turns unreadable), write
    meanwhile, mend the file: the change must arrive by the resync, NOTIFY having been lost."""
    secret = private_password_file(pg_db, tmp_path)
    pair = make_pair(password_file=str(secret))
    secret.chmod(0o644)
    with pg_db.cluster.admin() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'spine-agent-listener' AND datname = %s",
            (pg_db.name,),
        )
    wait_until(lambda: not pair.listener.status()["connected"], "the listener to drop")
    pair.a.write([put("while-away", b"1", 1.0)])
    wait_until(lambda: "chmod 0600" in str(pair.listener.status()["last_error"]),
               "the refusal in status")
    assert pair.inbox.received() == []
    secret.chmod(0o600)
    wait_until(lambda: "while-away" in pair.inbox.received(), "the resync after reconnect")
    assert pair.listener.status()["reconnects"] >= 1


def test_invalidation_delay_is_short(make_pair: Callable[..., Pair]) -> None:
    """A smoke check of the path the benchmark measures: write on A -> B's callback."""
    pair = make_pair()
    delays = []
    for i in range(5):
        pair.a.write([put(f"k{i}", b"1", 1.0)])
        delays.append(wait_until(lambda i=i: f"k{i}" in pair.inbox.received(), "delivery"))
    assert min(delays) < 5.0  # NOTIFY, not the 60 s poll, delivered them


# -- outages ------------------------------------------------------------------------------------
def test_server_crash_loses_no_acknowledged_write_and_everything_recovers(
    make_pair: Callable[..., Pair], pg_db: PgDatabase
) -> None:
    pair = make_pair()
    a, listener = pair.a, pair.listener
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                a.write([put(f"load{n}", b"1", float(n))])
                acknowledged.append(f"load{n}")
            except TierUnavailable:
                time.sleep(0.01)

    writer = threading.Thread(target=load)
    try:
        writer.start()
        wait_until(lambda: len(acknowledged) > 20, "writes before the crash")
        pg_db.cluster.stop("immediate")
        with pytest.raises(TierUnavailable) as caught:
            a.write([put("during", b"1", 1.0)])
        assert "\n" not in str(caught.value)
        wait_until(lambda: not listener.status()["connected"], "the listener to notice")
        pg_db.cluster.start()
        count = len(acknowledged)
        wait_until(lambda: len(acknowledged) > count + 20, "writes after the restart")
        stop.set()
        writer.join(WAIT)
        assert set(acknowledged) <= {c.key for c in a.read(None)}
        wait_until(lambda: listener.status()["connected"], "the listener to reconnect")
        a.write([put("after", b"1", 1.0)])
        wait_until(lambda: "after" in pair.inbox.received(), "delivery after the restart")
        assert set(acknowledged) <= set(pair.inbox.received())
        assert listener.status()["reconnects"] >= 1
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(WAIT)
        if not _ready(pg_db):
            pg_db.cluster.start()


def test_password_is_read_again_when_reconnecting(pg_db: PgDatabase, tmp_path: Path) -> None:
    """Rotate the role's password and the file; kill the connections: the tier carries on."""
    cluster = pg_db.cluster
    cluster.create_role("spine_rotate", "first-pw")
    with cluster.admin() as admin:
        admin.execute(f"ALTER DATABASE {pg_db.name} OWNER TO spine_rotate")
    secret = tmp_path / "pw"
    secret.write_text("first-pw\n")
    secret.chmod(0o600)
    section = {"dsn": cluster.tcp_dsn(pg_db.name, "spine_rotate"), "password_file": str(secret)}
    tier = tier_for(section, tmp_path)
    tier.open()
    try:
        tier.write([put("before", b"1", 1.0)])
        with cluster.admin() as admin:
            admin.execute("ALTER ROLE spine_rotate PASSWORD 'second-pw'")
            secret.write_text("second-pw\n")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                ("spine_rotate",),
            )
        assert tier.write([put("after", b"1", 1.0)]) == [1_000_000]
        assert "second-pw" not in repr(tier.status())
    finally:
        tier.close()


def _ready(pg_db: PgDatabase) -> bool:
    try:
        pg_db.cluster.admin().close()
        return True
    except psycopg.OperationalError:
        return False
