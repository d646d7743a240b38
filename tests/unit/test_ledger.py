"""contactsync.sync.ledger on a SQLite file and on a real PostgreSQL server.

PostgreSQL comes from $CONTACTSYNC_TEST_PG_URL (default: trust auth on 127.0.0.1:5432, database
`test`). Every PostgreSQL test gets a schema of its own, dropped afterwards; nothing else in the
database is touched. Without a reachable server those tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import make_url, text

from contactsync.sync import locks as locks_mod
from contactsync.sync.ledger import (
    DEFAULT_LEDGER_PATH,
    SCHEMA_VERSION,
    Ledger,
    LedgerConflict,
    LedgerError,
    LedgerLocked,
    PartitionLedger,
)
from contactsync.sync.link import Link, LinkState, Partition, Side

PG_URL_ENV = "CONTACTSYNC_TEST_PG_URL"
PG_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
SPACE, MAILBOX, FOLDER = "space-1", "someone@example.com", "folder-1"


def new_scope(user: str | None = None) -> Partition:
    return Partition(user or f"user-{uuid.uuid4().hex[:10]}", SPACE, MAILBOX, FOLDER)


# --------------------------------------------------------------------------------------------
# Backends


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_server() -> str:
    url = os.environ.get(PG_URL_ENV, PG_URL_DEFAULT)
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        import psycopg
    except ImportError:
        pytest.skip(f"psycopg is not installed: cannot test PostgreSQL ({PG_URL_ENV})")
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL reachable at {shown} (set {PG_URL_ENV} to one): {exc}")
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh schema per test, reached through the URL's search_path."""
    import psycopg
    from psycopg import sql

    schema = f"contactsync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(pg_server), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(pg_server).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(_libpq(pg_server), autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state" / "ledger.sqlite")  # a plain path, parents missing
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_ledger(ledger_url: str) -> Iterator[Callable[[], Ledger]]:
    made: list[Ledger] = []

    def make() -> Ledger:
        made.append(Ledger(ledger_url))
        return made[-1]

    yield make
    for ledger in made:
        ledger.close()


@pytest.fixture
def ledger(make_ledger: Callable[[], Ledger]) -> Ledger:
    return make_ledger()


@pytest.fixture
def run(ledger: Ledger) -> Iterator[PartitionLedger]:
    with ledger.open_partition(new_scope(), owner="test") as partition_ledger:
        yield partition_ledger


def is_postgres(ledger: Ledger) -> bool:
    return ledger.engine.dialect.name == "postgresql"


# --------------------------------------------------------------------------------------------
# Child processes (a real second run, killed with SIGKILL)

CHILD = textwrap.dedent(
    """
    import sys, time
    from contactsync.sync.ledger import Ledger
    from contactsync.sync.link import Link, Partition
    mode, url, *parts = sys.argv[1:]
    scope = Partition(*parts)
    run = Ledger(url).open_partition(scope, owner="child-run")
    if mode == "hold":
        print("locked", flush=True)
    elif mode == "put":
        run.put(Link("p-durable", "o-durable", {"first_name": "Zoë", "notes": None}))
        print("put", flush=True)
    elif mode == "many":
        for i in range(200):
            run.put(Link(f"p{i:04d}", f"o{i:04d}", {"n": str(i)}))
        print(run.count_links(), flush=True)
        sys.exit(0)
    time.sleep(120)
    """
)


def spawn(mode: str, url: str, scope: Partition, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            mode,
            url,
            scope.user,
            scope.space,
            scope.mailbox,
            scope.folder,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        pytest.fail(f"child printed nothing within {timeout} s")
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait(timeout)
        error = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"child died (rc {proc.returncode}): {error}")
    return line


def sigkill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def open_eventually(ledger: Ledger, scope: Partition, timeout: float = 10) -> PartitionLedger:
    """PostgreSQL frees a killed client's session lock once the server sees the socket close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ledger.open_partition(scope)
        except LedgerLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Links


def test_put_get_round_trip_keeps_unicode_none_and_versions(run: PartitionLedger):
    link = Link(
        "p-1",
        "AAMkAGI2-o1",
        {"first_name": "Zoë", "last_name": "Ñúñez 山田", "notes": None, "city": ""},
        crm_version="2024-05-01T10:00:00.123456Z",
        book_version='W/"CQAAABYAAA=="',
        state=LinkState.RESTORE_BOOK,
    )
    run.put(link)
    assert run.get(Side.CRM, "p-1") == link
    assert run.get(Side.BOOK, "AAMkAGI2-o1") == link
    assert run.get(Side.CRM, "AAMkAGI2-o1") is None  # ids are looked up on their side
    assert run.get(Side.BOOK, "p-1") is None
    assert run.get(Side.CRM, "missing") is None


def test_link_without_outlook_id_many_times(run: PartitionLedger):
    run.put_many([Link(f"p{i}", None, state=LinkState.RESTORE_BOOK) for i in range(3)])
    assert run.count_links() == 3
    assert run.get(Side.CRM, "p1") == Link("p1", None, state=LinkState.RESTORE_BOOK)


def test_put_upserts_by_pipeliner_id(run: PartitionLedger):
    run.put(Link("p-1", "o-1", {"first_name": "Ann"}, crm_version="1"))
    changed = Link("p-1", "o-2", {"first_name": "Anna"}, "2", "ck2", LinkState.LEAVING)
    run.put(changed)
    assert run.count_links() == 1
    assert run.get(Side.CRM, "p-1") == changed
    assert run.get(Side.BOOK, "o-2") == changed
    assert run.get(Side.BOOK, "o-1") is None


def test_get_many_and_iter_links_page_through_large_scopes(run: PartitionLedger):
    many = [Link(f"p{i:05d}", f"o{i:05d}", {"n": str(i)}) for i in range(1234)]
    for i in range(0, len(many), 3):
        many[i] = many[i].with_changes(state=LinkState.LEAVING)
    run.put_many(many)

    by_pl = run.get_many(Side.CRM, [link.crm_id for link in many] + ["nope"])
    assert by_pl == {link.crm_id: link for link in many}
    wanted = [f"o{i:05d}" for i in range(0, 1234, 2)]
    by_ol = run.get_many(Side.BOOK, iter(wanted + wanted))  # any iterable, duplicates ok
    assert sorted(by_ol) == wanted
    assert by_ol["o00002"] == many[2]
    assert run.get_many(Side.BOOK, []) == {}

    assert list(run.iter_links()) == many  # ordered by pipeliner id, across three pages
    leaving = [link for link in many if link.state is LinkState.LEAVING]
    assert list(run.iter_links(LinkState.LEAVING)) == leaving
    assert list(run.iter_links(LinkState.RESTORE_BOOK)) == []
    assert run.count_links() == 1234


def test_iter_link_ids_are_the_links_ids_and_states_without_their_values(run: PartitionLedger):
    many = [Link(f"p{i:05d}", f"o{i:05d}" if i % 7 else None, {"n": str(i)}) for i in range(1234)]
    for i in range(0, len(many), 3):
        many[i] = many[i].with_changes(state=LinkState.MOVED)
    run.put_many(many)
    for side in Side:
        expected = [(link.id_on(side), link.state) for link in run.iter_links()]
        assert list(run.iter_link_ids(side)) == expected  # across three pages, same order


def test_creates_in_flight_are_held_and_settled_with_their_links(run: PartitionLedger):
    run.record_failure(Side.CRM, "p-1", {"id": "p-1", "version": "1"}, "refused")
    run.hold_in_flight(
        Side.CRM, [("p-1", {"id": "p-1", "version": "2"}), ("p-2", {"id": "p-2"})], "in flight"
    )
    held = {f.record_id: f for f in run.failures(Side.CRM)}
    assert held["p-1"].attempts == 1 and held["p-1"].payload["version"] == "1"  # kept as it was
    assert held["p-2"].attempts == 0 and held["p-2"].reason == "in flight"
    run.hold_in_flight(Side.CRM, [("p-2", {"id": "p-2", "again": True})], "in flight")
    assert "again" not in run.failures(Side.CRM)[1].payload

    run.put_many([Link("p-2", "o-2")], settle=(Side.CRM, ["p-2"]))
    assert run.get(Side.CRM, "p-2") is not None
    assert [f.record_id for f in run.failures(Side.CRM)] == ["p-1"]
    run.put_many([], settle=(Side.CRM, ["p-1"]))
    assert run.failures(Side.CRM) == []


def test_links_refused_leave_their_pending_work_in_place(run: PartitionLedger):
    run.put_many([Link("p-1", "o-1")])
    run.hold_in_flight(Side.CRM, [("p-2", {"id": "p-2"})], "in flight")
    with pytest.raises(LedgerConflict):
        run.put_many([Link("p-2", "o-1")], settle=(Side.CRM, ["p-2"]))
    assert [f.record_id for f in run.failures(Side.CRM)] == ["p-2"]
    assert run.get(Side.CRM, "p-2") is None


def test_iter_links_allows_writes_while_iterating(run: PartitionLedger):
    run.put_many([Link(f"p{i:04d}", f"o{i:04d}") for i in range(520)])
    seen = []
    for link in run.iter_links(LinkState.ACTIVE):  # pages of 500: writes land in both pages
        if int(link.crm_id[1:]) % 10 == 0:
            run.put(link.with_changes(state=LinkState.LEAVING, book_version="v2"))
        seen.append(link.crm_id)
    assert seen == [f"p{i:04d}" for i in range(520)]  # each link exactly once
    leaving = list(run.iter_links(LinkState.LEAVING))
    assert [link.crm_id for link in leaving] == [f"p{i:04d}" for i in range(0, 520, 10)]
    assert {link.book_version for link in leaving} == {"v2"}


def test_remove(run: PartitionLedger):
    run.put_many([Link("p-1", "o-1"), Link("p-2", "o-2")])
    run.remove("p-1")
    run.remove("never-there")
    assert run.get(Side.CRM, "p-1") is None
    assert run.get(Side.BOOK, "o-1") is None
    assert [link.crm_id for link in run.iter_links()] == ["p-2"]
    run.put(Link("p-3", "o-1"))  # the Outlook id is free again
    assert run.get(Side.BOOK, "o-1") == Link("p-3", "o-1")


def test_outlook_id_conflict_is_refused_and_first_link_kept(run: PartitionLedger):
    first = Link("p-1", "o-1", {"first_name": "Ann"})
    run.put(first)
    with pytest.raises(LedgerConflict, match=r"o-1.*p-1.*p-2"):
        run.put(Link("p-2", "o-1"))
    assert run.get(Side.BOOK, "o-1") == first
    assert run.get(Side.CRM, "p-2") is None
    assert run.count_links() == 1


def test_put_many_is_atomic(run: PartitionLedger):
    run.put(Link("p-1", "o-1"))
    with pytest.raises(LedgerConflict):
        run.put_many([Link("p-2", "o-2"), Link("p-3", "o-3"), Link("p-4", "o-1")])
    with pytest.raises(LedgerConflict, match="o-9"):  # two claims inside one batch
        run.put_many([Link("p-5", "o-9"), Link("p-6", "o-9")])
    assert [link.crm_id for link in run.iter_links()] == ["p-1"]


def test_put_many_may_move_an_outlook_id_within_the_batch(run: PartitionLedger):
    run.put_many([Link("p-1", "o-1"), Link("p-2", "o-2")])
    run.put_many([Link("p-1", "o-2"), Link("p-2", "o-1")])  # a swap
    assert run.get(Side.BOOK, "o-2") == Link("p-1", "o-2")
    assert run.get(Side.BOOK, "o-1") == Link("p-2", "o-1")
    run.put_many([Link("p-9", "o-9"), Link("p-9", "o-10")])  # repeated id: the last one wins
    assert run.get(Side.CRM, "p-9") == Link("p-9", "o-10")


def test_closed_scope_ledger_refuses_use(ledger: Ledger):
    partition_ledger = ledger.open_partition(new_scope())
    partition_ledger.close()
    partition_ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        partition_ledger.put(Link("p", "o"))


def test_a_read_only_scope_reads_everything_and_writes_nothing(ledger: Ledger):
    """A dry run's ledger: the links and pending work as they are, and no write of any kind."""
    scope = new_scope()
    with ledger.open_partition(scope) as run:
        run.put(Link("p-1", "o-1", agreed={"first_name": "Kim"}))
        run.record_failure(Side.BOOK, "o-2", {"id": "o-2"}, "write failed")
    with ledger.open_partition(scope, read_only=True) as dry:
        assert dry.get(Side.CRM, "p-1") == Link("p-1", "o-1", agreed={"first_name": "Kim"})
        assert [f.record_id for f in dry.failures(Side.BOOK)] == ["o-2"]
        writes = [
            lambda: dry.put(Link("p-1", "o-1")),
            lambda: dry.put_many([Link("p-3", "o-3")]),
            lambda: dry.remove("p-1"),
            lambda: dry.record_failure(Side.BOOK, "o-4", {"id": "o-4"}, "x"),
            lambda: dry.clear_failure(Side.BOOK, "o-2"),
            lambda: dry.bind_folder("folder-id", "Pipeliner"),
        ]
        for write in writes:
            with pytest.raises(LedgerError, match="dry run"):
                write()
    with ledger.open_partition(scope) as run:  # the lock was released; nothing changed
        assert [link.crm_id for link in run.iter_links()] == ["p-1"]
        assert run.get(Side.CRM, "p-1") == Link("p-1", "o-1", agreed={"first_name": "Kim"})
        assert [f.record_id for f in run.failures(Side.BOOK)] == ["o-2"]
        assert run.folder_binding() is None


# --------------------------------------------------------------------------------------------
# Scoping


def test_scopes_are_independent(ledger: Ledger):
    alice, bob = new_scope("alice-" + uuid.uuid4().hex), new_scope("bob-" + uuid.uuid4().hex)
    other_folder = Partition(alice.user, SPACE, MAILBOX, "folder-2")
    with (
        ledger.open_partition(alice) as a,
        ledger.open_partition(bob) as b,
        ledger.open_partition(other_folder) as c,
    ):
        a.put(Link("p-1", "o-1", {"first_name": "Alice's"}))
        b.put(Link("p-1", "o-1", {"first_name": "Bob's"}))  # same ids, other scope: no conflict
        b.put(Link("p-2", "o-2"))
        a.record_failure(Side.BOOK, "o-7", {"x": "1"}, "400")

        assert a.get(Side.CRM, "p-1").agreed == {"first_name": "Alice's"}
        assert b.get(Side.BOOK, "o-1").agreed == {"first_name": "Bob's"}
        assert a.get(Side.CRM, "p-2") is None
        assert a.get_many(Side.CRM, ["p-1", "p-2"]).keys() == {"p-1"}
        assert (a.count_links(), b.count_links(), c.count_links()) == (1, 2, 0)
        assert list(c.iter_links()) == []
        assert b.failures() == [] and c.failures() == []

        b.remove("p-1")
        b.clear_failure(Side.BOOK, "o-7")
        assert a.get(Side.CRM, "p-1") is not None
        assert len(a.failures()) == 1
    assert {alice, bob} <= set(ledger.partitions())
    assert other_folder not in ledger.partitions()  # no rows, so not listed


# --------------------------------------------------------------------------------------------
# Durability


def test_put_is_visible_to_an_independent_engine_at_once(make_ledger: Callable[[], Ledger]):
    writer = make_ledger()
    scope = new_scope()
    with writer.open_partition(scope) as run:
        run.put(Link("p-1", "o-1", {"first_name": "Zoë"}))
        with make_ledger().engine.connect() as conn:  # no lock needed to look at the rows
            rows = conn.execute(
                text(
                    "SELECT book_id, agreed FROM contactsync_links"
                    " WHERE user_id = :u AND crm_id = :p"
                ),
                {"u": scope.user, "p": "p-1"},
            ).all()
        assert rows == [("o-1", '{"first_name":"Zoë"}')]


def test_link_survives_sigkill_right_after_put(ledger_url: str, ledger: Ledger, tmp_path: Path):
    scope = new_scope()
    child = spawn("put", ledger_url, scope, tmp_path)
    try:
        assert read_line(child) == "put"
    finally:
        sigkill(child)
    with open_eventually(ledger, scope) as run:
        assert run.get(Side.BOOK, "o-durable") == Link(
            "p-durable", "o-durable", {"first_name": "Zoë", "notes": None}
        )


# --------------------------------------------------------------------------------------------
# Run lock


def test_second_run_of_a_scope_fails_fast_naming_scope_and_holder(
    make_ledger: Callable[[], Ledger],
):
    first, second = make_ledger(), make_ledger()
    scope = new_scope()
    with first.open_partition(scope, owner="meltano job nightly"):
        for other in (second, first):  # another engine, and the same one
            started = time.monotonic()
            with pytest.raises(LedgerLocked) as refused:
                other.open_partition(scope)
            assert time.monotonic() - started < 1
            message = str(refused.value)
            assert str(scope) in message
            assert f"pid {os.getpid()}" in message and "meltano job nightly" in message
            assert "Wait for the other run to finish" in message
            assert refused.value.partition == scope
        with second.open_partition(new_scope()) as elsewhere:  # other scopes are not affected
            elsewhere.put(Link("p", "o"))
    with second.open_partition(scope) as again:  # released on exit
        again.put(Link("p", "o"))


def test_lock_of_a_killed_run_is_released(ledger_url: str, ledger: Ledger, tmp_path: Path):
    scope = new_scope()
    child = spawn("hold", ledger_url, scope, tmp_path)
    try:
        assert read_line(child) == "locked"
        started = time.monotonic()
        with pytest.raises(LedgerLocked) as refused:
            ledger.open_partition(scope)
        assert time.monotonic() - started < 1
        assert f"pid {child.pid}" in str(refused.value) and "child-run" in str(refused.value)
    finally:
        sigkill(child)
    timeout = 10 if is_postgres(ledger) else 0  # the kernel drops an flock at once
    with open_eventually(ledger, scope, timeout=timeout) as run:
        run.put(Link("p", "o"))


def test_two_users_write_concurrently_without_blocking(
    ledger_url: str, ledger: Ledger, tmp_path: Path
):
    scopes = [new_scope(), new_scope()]
    with ledger.open_partition(new_scope()):  # a third run idles with its lock held meanwhile
        started = time.monotonic()
        children = [spawn("many", ledger_url, scope, tmp_path) for scope in scopes]
        outputs = [child.communicate(timeout=60) for child in children]
        elapsed = time.monotonic() - started
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == "200"
    assert elapsed < 30
    for scope in scopes:
        with ledger.open_partition(scope) as run:
            assert run.count_links() == 200
            assert run.get(Side.BOOK, "o0199") == Link("p0199", "o0199", {"n": "199"})


def test_threads_on_different_scopes_interleave(ledger: Ledger):
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with ledger.open_partition(new_scope()) as run:
                for i in range(60):
                    run.put(Link(f"p{i}", f"o{i}"))
                    assert run.get(Side.CRM, f"p{i}") is not None
                assert run.count_links() == 60
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


class TestTableLock:
    """The run_locks fallback for databases without flock or advisory locks."""

    @pytest.fixture
    def table_ledgers(
        self, make_ledger: Callable[[], Ledger], monkeypatch: pytest.MonkeyPatch
    ) -> tuple[Ledger, Ledger]:
        monkeypatch.setattr(locks_mod._TableRunLock, "ttl", timedelta(seconds=1))
        pair = make_ledger(), make_ledger()
        for one in pair:
            one._lock_class = locks_mod._TableRunLock
        return pair

    def test_fails_fast_and_releases(self, table_ledgers: tuple[Ledger, Ledger]):
        first, second = table_ledgers
        scope = new_scope()
        with first.open_partition(scope, owner="one"):
            time.sleep(0.6)  # the heartbeat keeps a live lock fresh beyond the TTL
            with pytest.raises(LedgerLocked, match=r"(?s)" + str(scope) + ".*'one'.*expires"):
                second.open_partition(scope)
        with second.open_partition(scope):
            pass

    def test_stale_lock_is_taken_over_and_the_old_run_notices(
        self, table_ledgers: tuple[Ledger, Ledger]
    ):
        first, second = table_ledgers
        scope = new_scope()
        stale = first.open_partition(scope)
        stale._lock._stop.set()  # the run hangs: no more heartbeats  # type: ignore[union-attr]
        with first.engine.begin() as conn:
            conn.execute(
                text("UPDATE contactsync_run_locks SET heartbeat_at = :t WHERE user_id = :u"),
                {"t": datetime.now(UTC) - timedelta(seconds=5), "u": scope.user},
            )
        with second.open_partition(scope) as fresh:
            fresh.put(Link("p", "o"))
            stale._lock._last_beat -= timedelta(seconds=5)  # type: ignore[union-attr]
            with pytest.raises(LedgerError, match="lost the run lock"):
                stale.put(Link("p2", "o2"))


# --------------------------------------------------------------------------------------------
# Pending failures


def test_failures_are_upserted_listed_and_cleared(run: PartitionLedger):
    first = run.record_failure(Side.CRM, "p-1", {"first_name": "Zoë"}, "HTTP 500")
    assert first.attempts == 1 and first.first_failed_at == first.last_failed_at
    again = run.record_failure(Side.CRM, "p-1", {"first_name": "Zoé"}, "HTTP 429")
    run.record_failure(Side.BOOK, "p-1", {}, "400 ErrorInvalidProperty")  # other side's key

    assert again.attempts == 2
    assert again.first_failed_at == first.first_failed_at
    assert again.last_failed_at >= first.last_failed_at
    stored = run.failures(Side.CRM)
    assert stored == [again]
    assert stored[0].payload == {"first_name": "Zoé"} and stored[0].reason == "HTTP 429"
    assert stored[0].first_failed_at.tzinfo is not None
    assert [(f.side, f.record_id) for f in run.failures()] == [
        (Side.BOOK, "p-1"),
        (Side.CRM, "p-1"),
    ]

    run.clear_failure(Side.CRM, "p-1")
    run.clear_failure(Side.CRM, "never-failed")
    assert [f.side for f in run.failures()] == [Side.BOOK]
    assert run.record_failure(Side.CRM, "p-1", {}, "again").attempts == 1


# --------------------------------------------------------------------------------------------
# Schema version


def test_newer_schema_version_is_refused(make_ledger: Callable[[], Ledger]):
    written = make_ledger()
    with written.open_partition(new_scope()) as run:
        run.put(Link("p", "o"))
    with written.engine.begin() as conn:
        stored = conn.execute(text("SELECT value FROM contactsync_ledger_meta")).scalar_one()
        assert stored == str(SCHEMA_VERSION)
        conn.execute(
            text("UPDATE contactsync_ledger_meta SET value = :v"), {"v": str(SCHEMA_VERSION + 1)}
        )
    with pytest.raises(LedgerError, match=rf"schema version {SCHEMA_VERSION + 1}.*Upgrade"):
        make_ledger().open_partition(new_scope())


def test_reopening_an_existing_ledger_keeps_its_rows(make_ledger: Callable[[], Ledger]):
    scope = new_scope()
    with make_ledger().open_partition(scope) as run:
        run.put(Link("p", "o"))
    with make_ledger().open_partition(scope) as run:
        assert run.get(Side.CRM, "p") == Link("p", "o")


# --------------------------------------------------------------------------------------------
# URLs and backend specifics


def test_default_path_is_a_sqlite_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    with Ledger() as ledger:
        with ledger.open_partition(new_scope()) as run:
            run.put(Link("p", "o"))
        assert (tmp_path / DEFAULT_LEDGER_PATH).is_file()
        assert ledger.url == f"sqlite:///{tmp_path / DEFAULT_LEDGER_PATH}"
        assert (tmp_path / DEFAULT_LEDGER_PATH).stat().st_mode & 0o077 == 0  # personal data
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_sqlite_url_and_lock_files_beside_the_database(tmp_path: Path):
    with Ledger(f"sqlite:///{tmp_path}/a/b/ledger.db") as ledger:
        scope = new_scope()
        with ledger.open_partition(scope, owner="me"):
            lock_files = list((tmp_path / "a" / "b" / "ledger.db.locks").iterdir())
            assert len(lock_files) == 1 and "owner 'me'" in lock_files[0].read_text()


def test_in_memory_sqlite_works_for_one_process():
    with Ledger("sqlite://") as ledger:
        scope = new_scope()
        with ledger.open_partition(scope) as run:
            run.put(Link("p", "o"))
            with pytest.raises(LedgerLocked):
                ledger.open_partition(scope)
        with ledger.open_partition(scope) as run:
            assert run.count_links() == 1


def test_postgres_urls_use_psycopg3_and_never_show_the_password():
    for scheme in ("postgresql", "postgres"):
        ledger = Ledger(f"{scheme}://sync:s3cret-pw@127.0.0.1:1/ledger")  # nothing listens
        assert ledger.engine.url.drivername == "postgresql+psycopg"
        assert "s3cret-pw" not in ledger.url and "s3cret-pw" not in repr(ledger)
        with pytest.raises(LedgerError, match="cannot open the ledger") as failed:
            ledger.open_partition(new_scope())
        assert "s3cret-pw" not in str(failed.value)
        ledger.close()


def test_unparsable_url_does_not_echo_it():
    with pytest.raises(LedgerError) as failed:
        Ledger("postgresql://sync:s3cret-pw@host:notaport/db")
    assert "s3cret-pw" not in str(failed.value)


# --------------------------------------------------------------------------------------------
# Schema 2: migration from schema 1, parked failures, lost conflict values, the folder binding


def _schema_1(url: str) -> None:
    """A ledger exactly as release 1 (schema 1) wrote it, with a link and a failure."""
    from sqlalchemy import (
        Column,
        DateTime,
        Integer,
        MetaData,
        PrimaryKeyConstraint,
        String,
        Table,
        Text,
        create_engine,
    )

    from contactsync.sync.ledger import _resolve_url

    meta = MetaData()
    scope_cols = [Column(n, String(512), nullable=False) for n in _SCOPE_NAMES]
    old_links = Table(
        "contactsync_links",
        meta,
        *scope_cols,
        Column("pipeliner_id", String(512), nullable=False),
        Column("outlook_id", String(512), nullable=True),
        Column("agreed", Text, nullable=False),
        Column("pipeliner_version", Text, nullable=True),
        Column("outlook_version", Text, nullable=True),
        Column("state", String(32), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint(*_SCOPE_NAMES, "pipeliner_id"),
    )
    old_failures = Table(
        "contactsync_failures",
        meta,
        *[Column(n, String(512), nullable=False) for n in _SCOPE_NAMES],
        Column("side", String(16), nullable=False),
        Column("record_id", String(512), nullable=False),
        Column("payload", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("first_failed_at", DateTime(timezone=True), nullable=False),
        Column("last_failed_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint(*_SCOPE_NAMES, "side", "record_id"),
    )
    meta_table = Table(
        "contactsync_ledger_meta",
        meta,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),
    )
    resolved = _resolve_url(url)
    if resolved.get_backend_name() == "sqlite":
        Path(resolved.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(resolved)
    scope = dict(zip(_SCOPE_NAMES, ("u1", "s1", "m1", "f1"), strict=True))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(meta_table.insert().values(key="schema_version", value="1"))
        conn.execute(
            old_links.insert().values(
                **scope,
                pipeliner_id="p-1",
                outlook_id="o-1",
                agreed=json.dumps({"first_name": "Ada", "notes": "kept"}),
                pipeliner_version="7",
                outlook_version="ck",
                state="active",
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            old_failures.insert().values(
                **scope,
                side="outlook",
                record_id="o-2",
                payload=json.dumps({"id": "o-2", "version": "v1"}),
                reason="503",
                attempts=2,
                first_failed_at=now,
                last_failed_at=now,
            )
        )
    engine.dispose()


_SCOPE_NAMES = ("user_id", "space_id", "mailbox", "folder_id")


def test_a_schema_1_ledger_is_migrated_without_losing_a_link(ledger_url: str) -> None:
    _schema_1(ledger_url)
    with (
        Ledger(ledger_url) as ledger,
        ledger.open_partition(Partition("u1", "s1", "m1", "f1")) as run,
    ):
        [link] = list(run.iter_links())
        assert (link.crm_id, link.book_id, dict(link.agreed)) == (
            "p-1",
            "o-1",
            {"first_name": "Ada", "notes": "kept"},
        )
        assert (link.crm_version, link.book_version, dict(link.pinned)) == ("7", "ck", {})
        [failure] = run.failures()
        assert (failure.record_id, failure.attempts, failure.parked_at) == ("o-2", 2, None)
        # The new columns and tables work on the migrated database.
        run.put(link.with_changes(pinned={"job_title": "Short"}))
        assert dict(run.get(Side.CRM, "p-1").pinned) == {"job_title": "Short"}
        assert run.bind_folder("AAMk-folder", "Pipeliner").folder_id == "AAMk-folder"
    with (
        Ledger(ledger_url) as again,
        again.open_partition(Partition("u1", "s1", "m1", "f1")) as run,
    ):
        assert run.folder_binding() is not None  # opened twice: migrated once, then as is


# --------------------------------------------------------------------------------------------
# Schema 3: the sides named by role, migrated from schema 2


HELD_DELETE_REASON = "delete held until the end of the run for the mass-delete guard"  # schema 2


def _schema_2(url: str) -> None:
    """A ledger exactly as schema 2 wrote it (the sides named after the services): two links, one
    owed a restore, a pending and a parked failure, a held delete, a saved conflict value, a
    folder binding."""
    from sqlalchemy import (
        Column,
        DateTime,
        Integer,
        MetaData,
        PrimaryKeyConstraint,
        String,
        Table,
        Text,
        UniqueConstraint,
        create_engine,
    )

    from contactsync.sync.ledger import _resolve_url

    meta = MetaData()

    def scope_cols() -> list[Column]:
        return [Column(n, String(512), nullable=False) for n in _SCOPE_NAMES]

    old_links = Table(
        "contactsync_links",
        meta,
        *scope_cols(),
        Column("pipeliner_id", String(512), nullable=False),
        Column("outlook_id", String(512), nullable=True),
        Column("agreed", Text, nullable=False),
        Column("pipeliner_version", Text, nullable=True),
        Column("outlook_version", Text, nullable=True),
        Column("state", String(32), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("pinned", Text, nullable=True),
        PrimaryKeyConstraint(*_SCOPE_NAMES, "pipeliner_id", name="pk_links"),
        UniqueConstraint(*_SCOPE_NAMES, "outlook_id", name="uq_links_outlook_id"),
    )
    old_failures = Table(
        "contactsync_failures",
        meta,
        *scope_cols(),
        Column("side", String(16), nullable=False),
        Column("record_id", String(512), nullable=False),
        Column("payload", Text, nullable=False),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("first_failed_at", DateTime(timezone=True), nullable=False),
        Column("last_failed_at", DateTime(timezone=True), nullable=False),
        Column("parked_at", DateTime(timezone=True), nullable=True),
        PrimaryKeyConstraint(*_SCOPE_NAMES, "side", "record_id", name="pk_failures"),
    )
    old_conflicts = Table(
        "contactsync_conflicts",
        meta,
        *scope_cols(),
        Column("conflict_id", String(36), nullable=False),
        Column("pipeliner_id", String(512), nullable=False),
        Column("field", String(64), nullable=False),
        Column("kept_side", String(16), nullable=False),
        Column("kept_value", Text, nullable=True),
        Column("lost_value", Text, nullable=True),
        Column("policy", String(32), nullable=False),
        Column("decided_at", DateTime(timezone=True), nullable=False),
        Column("restored_at", DateTime(timezone=True), nullable=True),
        PrimaryKeyConstraint(*_SCOPE_NAMES, "conflict_id", name="pk_conflicts"),
    )
    old_folders = Table(
        "contactsync_folders",
        meta,
        *scope_cols(),
        Column("bound_id", String(512), nullable=False),
        Column("display_name", Text, nullable=False),
        Column("bound_at", DateTime(timezone=True), nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint(*_SCOPE_NAMES, name="pk_folders"),
    )
    meta_table = Table(
        "contactsync_ledger_meta",
        meta,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),
    )
    resolved = _resolve_url(url)
    if resolved.get_backend_name() == "sqlite":
        Path(resolved.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(resolved)
    scope = dict(zip(_SCOPE_NAMES, ("u1", "s1", "m1", "f1"), strict=True))
    now = datetime.now(UTC)
    link = {"agreed": json.dumps({"first_name": "Ada"}), "created_at": now, "updated_at": now}
    failure = {"payload": "{}", "reason": "503", "first_failed_at": now, "last_failed_at": now}
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(meta_table.insert().values(key="schema_version", value="2"))
        conn.execute(
            old_links.insert(),
            [
                {
                    **scope,
                    **link,
                    "pipeliner_id": "p-1",
                    "outlook_id": "o-1",
                    "pipeliner_version": "7",
                    "outlook_version": "ck",
                    "state": "active",
                    "pinned": json.dumps({"job_title": "Short"}),
                },
                {
                    **scope,
                    **link,
                    "pipeliner_id": "p-2",
                    "outlook_id": None,
                    "pipeliner_version": "3",
                    "outlook_version": None,
                    "state": "restore_outlook",
                    "pinned": None,
                },
            ],
        )
        conn.execute(
            old_failures.insert(),
            [
                {**scope, **failure, "side": "outlook", "record_id": "o-9", "attempts": 1}
                | {"parked_at": None},
                {**scope, **failure, "side": "pipeliner", "record_id": "p-9", "attempts": 3}
                | {"parked_at": now},
                {**scope, **failure, "side": "pipeliner", "record_id": "p-7", "attempts": 1}
                | {"reason": HELD_DELETE_REASON, "parked_at": None, "payload": '{"id": "p-7"}'},
            ],
        )
        conn.execute(
            old_conflicts.insert().values(
                **scope,
                conflict_id="c-1",
                pipeliner_id="p-1",
                field="city",
                kept_side="outlook",
                kept_value="Oslo",
                lost_value="Bergen",
                policy="outlook_wins",
                decided_at=now,
            )
        )
        conn.execute(
            old_folders.insert().values(
                **scope, bound_id="AAMk-f1", display_name="Pipeliner", bound_at=now, seen_at=now
            )
        )
    engine.dispose()


def test_a_schema_2_ledger_is_migrated_to_3_without_losing_a_link(ledger_url: str) -> None:
    _schema_2(ledger_url)
    for _ in range(2):  # opened twice: migrated once, then as is
        with (
            Ledger(ledger_url) as ledger,
            ledger.open_partition(Partition("u1", "s1", "m1", "f1")) as run,
        ):
            links = {link.crm_id: link for link in run.iter_links()}
            assert set(links) == {"p-1", "p-2"}
            one, two = links["p-1"], links["p-2"]
            assert (one.book_id, one.crm_version, one.book_version, one.state) == (
                "o-1",
                "7",
                "ck",
                LinkState.ACTIVE,
            )
            assert (dict(one.agreed), dict(one.pinned)) == (
                {"first_name": "Ada"},
                {"job_title": "Short"},
            )
            assert (two.book_id, two.crm_version, two.state) == (None, "3", LinkState.RESTORE_BOOK)
            assert run.get(Side.BOOK, "o-1") == one
            [pending] = run.failures()
            assert (pending.side, pending.record_id, pending.attempts) == (Side.BOOK, "o-9", 1)
            [parked] = run.failures(parked=True)
            assert (parked.side, parked.record_id, parked.attempts) == (Side.CRM, "p-9", 3)
            # A delete schema 2 held for the guard as a "failure" is a held delete now.
            [held] = run.held_deletes()
            assert (held.side, held.record_id, dict(held.payload)) == (
                Side.CRM,
                "p-7",
                {"id": "p-7"},
            )
            [lost] = run.lost_values()
            assert (lost.crm_id, lost.field, lost.kept_side, lost.lost_value) == (
                "p-1",
                "city",
                Side.BOOK,
                "Bergen",
            )
            assert run.folder_binding().folder_id == "AAMk-f1"
    with (
        Ledger(ledger_url) as ledger,
        ledger.open_partition(Partition("u1", "s1", "m1", "f1")) as run,
    ):
        # The renamed columns keep their constraints: one address-book copy, one link.
        with pytest.raises(LedgerConflict):
            run.put(Link("p-3", "o-1"))
        run.put(two.with_changes(book_id="o-2", state=LinkState.ACTIVE))
        assert run.get(Side.BOOK, "o-2").crm_id == "p-2"
    from sqlalchemy import create_engine, text

    from contactsync.sync.ledger import _resolve_url

    engine = create_engine(_resolve_url(ledger_url))
    with engine.connect() as conn:
        version = conn.execute(
            text("SELECT value FROM contactsync_ledger_meta WHERE key = 'schema_version'")
        ).scalar_one()
    engine.dispose()
    assert version == str(SCHEMA_VERSION) == "3"


def test_a_record_refused_for_its_data_is_parked_until_it_changes(run: PartitionLedger) -> None:
    first = {"id": "o-9", "version": "v1"}
    for attempt in (1, 2):
        failure = run.record_failure(Side.BOOK, "o-9", first, "422 name", park_after=3)
        assert (failure.attempts, failure.parked_at) == (attempt, None)
    parked = run.record_failure(Side.BOOK, "o-9", first, "422 name", park_after=3)
    assert parked.attempts == 3 and parked.parked_at is not None
    assert run.failures(Side.BOOK) == []  # not retried
    assert [f.record_id for f in run.failures(Side.BOOK, parked=True)] == ["o-9"]
    changed = run.record_failure(Side.BOOK, "o-9", {**first, "version": "v2"}, "422", park_after=3)
    assert (changed.attempts, changed.parked_at) == (1, None)  # a new version: tried afresh


def test_lost_values_are_kept_until_restored(run: PartitionLedger) -> None:
    from contactsync.sync.ledger import LostValue

    now = datetime.now(UTC)
    run.record_conflicts(
        [LostValue("c-1", "p-1", "job_title", Side.CRM, "CTO", "CEO", "pipeliner_wins", now)]
    )
    [lost] = run.lost_values()
    assert (lost.field, lost.kept_value, lost.lost_value, lost.restored_at) == (
        "job_title",
        "CTO",
        "CEO",
        None,
    )
    run.mark_restored("c-1")
    assert run.lost_values() == [] and len(run.lost_values(restored=True)) == 1


def test_a_scope_is_bound_to_one_folder_id(run: PartitionLedger) -> None:
    assert run.folder_binding() is None
    run.bind_folder("id-1", "Pipeliner")
    renamed = run.bind_folder("id-1", "CRM")
    assert (renamed.folder_id, renamed.display_name) == ("id-1", "CRM")
    with pytest.raises(LedgerError, match="bound to Outlook folder id-1"):
        run.bind_folder("id-2", "Pipeliner")
