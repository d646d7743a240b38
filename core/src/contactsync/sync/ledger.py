"""The link store of DESIGN §4: links, agreed values, versions and pending work, per partition.

One SQLite file by default; any SQLAlchemy URL (PostgreSQL for shared deployments) otherwise.
Every row carries its partition (user, the CRM space, mailbox, folder), so one user's runs can
neither see nor touch another user's links.

Transactions are short and every write method commits before it returns: a link recorded right
after a create succeeded survives a crash of the run a millisecond later. A run holds its
partition's run lock for its whole life (``Ledger.open_partition``); a second run of the same
partition fails at once with ``LedgerLocked`` instead of interleaving writes, while runs of other
partitions never wait on it.

How the run lock is held: ``contactsync.sync.locks``; the tables and their schema version:
``contactsync.sync.ledger_tables``.

PostgreSQL ``postgresql://`` and ``postgres://`` URLs are run on psycopg 3. To keep the ledger in
its own schema of a shared database, append ``?options=-csearch_path%3D<schema>`` to the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from sqlalchemy import (
    Column,
    Row,
    Select,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from contactsync.sync.ledger_history import HELD_DELETE_REASON, RENAMED_COLUMNS, RENAMED_VALUES
from contactsync.sync.ledger_tables import (
    _ADDED_COLUMNS,
    _CHUNK,
    _INSERT_PENDING,
    _LINK_UPDATABLE,
    _PARTITION,
    _UPSERT_LINKS,
    SCHEMA_VERSION,
    LedgerConflict,
    LedgerError,
    _chunks,
    _dumps,
    _in_partition,
    _now,
    _partition_values,
    _utc,
    conflicts,
    failures,
    folders,
    held_deletes,
    ledger_meta,
    links,
    metadata,
)
from contactsync.sync.link import Link, LinkState, Partition, Side
from contactsync.sync.locks import LedgerLocked, LockHolder, _lock_class_for, _RunLock

__all__ = [
    "DEFAULT_LEDGER_PATH",
    "SCHEMA_VERSION",
    "Failure",
    "FolderBinding",
    "HeldDelete",
    "Ledger",
    "LedgerConflict",
    "LedgerError",
    "LedgerLocked",
    "LockHolder",
    "LostValue",
    "PartitionLedger",
]

log = logging.getLogger(__name__)

#: Where the ledger lives when no URL is configured, relative to the working directory (the
#: Meltano project directory in production) and resolved when the ``Ledger`` is created.
DEFAULT_LEDGER_PATH: Final = Path(".contactsync") / "ledger.sqlite"


#: How long a SQLite writer waits for another writer (other partitions' writes take milliseconds).
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

_WRITE: Final = "contactsync_write"  # execution option: this transaction will write
#: Advisory lock ids hash fixed names, not module paths: every release must compute the same ids.
_INIT_LOCK_KEY: Final = (
    int.from_bytes(hashlib.sha256(b"contactsync.ledger.init").digest()[:8], "big") >> 1
)


@dataclass(frozen=True)
class Failure:
    """A record whose write failed; it stays pending and is retried on the next run, unless it
    was parked (``parked_at``): refused for its data too often, it waits until it changes."""

    side: Side  # the side the record came from (record_id is that side's key)
    record_id: str
    payload: Mapping[str, Any]
    reason: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    parked_at: datetime | None = None

    @property
    def version(self) -> str | None:
        """The version of the record that failed (a changed record is tried afresh)."""
        value = self.payload.get("version")
        return None if value is None else str(value)


@dataclass(frozen=True)
class HeldDelete:
    """A delete a run holds until its end for the mass-delete guard (see ``SyncLeg``)."""

    side: Side  # the side the tombstone came from (record_id is that side's key)
    record_id: str
    payload: Mapping[str, Any]
    held_at: datetime


@dataclass(frozen=True)
class LostValue:
    """The value of one field that lost a conflict, kept so that a person can see and restore it."""

    conflict_id: str
    crm_id: str
    field: str
    kept_side: Side
    kept_value: str | None
    lost_value: str | None
    policy: str
    decided_at: datetime
    restored_at: datetime | None = None


@dataclass(frozen=True)
class FolderBinding:
    """The address-book folder a partition is bound to, by id: a rename keeps the sync, a delete
    stops
    it."""

    folder_id: str
    display_name: str
    bound_at: datetime


def _resolve_url(url: str | None) -> URL:
    """None -> the default file; a path -> a SQLite file; else a SQLAlchemy URL."""
    if url is None:
        return URL.create("sqlite", database=str(DEFAULT_LEDGER_PATH))
    if "://" not in url:
        return URL.create("sqlite", database=str(Path(url).expanduser()))
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):  # psycopg 3 is the driver we ship, not SQLAlchemy's psycopg2
            url = "postgresql+psycopg://" + url[len(prefix) :]
    try:
        return make_url(url)
    except Exception as exc:  # the message could echo a password: say only what is wrong
        raise LedgerError(
            f"not a database URL or path for the ledger: {type(exc).__name__}"
        ) from None


def _sqlite_is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


# --------------------------------------------------------------------------------------------
# The ledger


class Ledger:
    """One ledger database. Cheap to create: it connects and creates its tables on first use."""

    def __init__(self, url: str | None = None) -> None:
        resolved = _resolve_url(url)
        self._db_path: Path | None = None
        self._memory_locks: set[str] = set()
        self._memory_guard = threading.Lock()
        self._ready = False
        self._init_guard = threading.Lock()
        dialect = resolved.get_backend_name()
        if dialect == "sqlite":
            self._engine = self._sqlite_engine(resolved)
        else:
            self._engine = create_engine(resolved, pool_pre_ping=True)
        self._lock_class: type[_RunLock] = _lock_class_for(dialect, self._db_path)

    def _sqlite_engine(self, url: URL) -> Engine:
        if _sqlite_is_memory(url):
            # One shared connection: every SQLAlchemy connection sees the same in-memory database.
            engine = create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            _install_sqlite_hooks(engine, wal=False)
            return engine
        path = Path(url.database or "").expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # contacts are personal data: readable by the owner only
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        self._db_path = path
        engine = create_engine(
            url.set(database=str(path)), connect_args={"check_same_thread": False}
        )
        _install_sqlite_hooks(engine, wal=True)
        return engine

    @property
    def url(self) -> str:
        """The database URL with its password masked: safe for logs and messages."""
        return self._engine.url.render_as_string(hide_password=True)

    @property
    def engine(self) -> Engine:
        return self._engine

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections. Open ``PartitionLedger`` objects keep their own lock."""
        self._engine.dispose()

    def open_partition(
        self, partition: Partition, *, owner: str | None = None, read_only: bool = False
    ) -> PartitionLedger:
        """Take the partition's run lock and return its ledger; use it as a context manager.

        Fails at once with ``LedgerLocked`` if another run of the partition holds the lock.
        ``owner`` is a free-text label for that message (e.g. the Meltano job); no secrets.
        ``read_only`` (a dry run): every write to the partition's links, pending work, conflicts or
        folder binding raises ``LedgerError``, so a dry run cannot consume what the next real
        run must do. The lock is still taken: a dry run reads no half-written run.
        """
        self._ensure_schema()
        holder = LockHolder(host=socket.gethostname(), pid=os.getpid(), owner=owner, since=_now())
        lock = self._lock_class.acquire(self, partition, holder)
        log.info("opened ledger scope %s in %s%s", partition, self.url, " (read-only)" * read_only)
        return PartitionLedger(_ReadOnlyLedger(self) if read_only else self, partition, lock)

    def partitions(self) -> list[Partition]:
        """Every partition with links or pending failures, for status commands."""
        self._ensure_schema()
        found: set[Partition] = set()
        with self._reading() as conn:
            for table in (links, failures, held_deletes):
                cols = [table.c[name] for name in _PARTITION]
                for row in conn.execute(select(*cols).distinct()):
                    found.add(Partition(*row))
        return sorted(found, key=lambda s: (s.user, s.space, s.mailbox, s.folder))

    def folder_bindings(self) -> dict[Partition, FolderBinding]:
        """Every partition's bound address-book folder (id, name when last seen), for status
        commands:
        read without a partition's lock, so that a running sync does not hide it."""
        self._ensure_schema()
        with self._reading() as conn:
            rows = conn.execute(select(folders)).all()
        return {
            Partition(*(getattr(row, name) for name in _PARTITION)): FolderBinding(
                row.bound_id, row.display_name, _utc(row.bound_at)
            )
            for row in rows
        }

    # -- transactions ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A transaction that commits (durably) when the block ends, or rolls back."""
        with self._engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    # -- schema ------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        with self._init_guard:
            if self._ready:
                return
            try:
                with self._writing() as conn:
                    if conn.dialect.name == "postgresql":  # two first runs must not race
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:k)"), {"k": _INIT_LOCK_KEY}
                        )
                    version = self._stored_version(conn)
                    if version is not None and version > SCHEMA_VERSION:
                        raise LedgerError(
                            f"the ledger at {self.url} has schema version {version}, but this "
                            f"contactsync understands up to version {SCHEMA_VERSION}: it was "
                            "written by a newer release. Upgrade contactsync; do not point an "
                            "older release at this ledger."
                        )
                    metadata.create_all(conn)  # new tables of any later schema included
                    if version is None:
                        conn.execute(
                            insert(ledger_meta).values(
                                key="schema_version", value=str(SCHEMA_VERSION)
                            )
                        )
                    elif version < SCHEMA_VERSION:
                        self._migrate(conn, version)
            except SQLAlchemyError as exc:
                raise LedgerError(f"cannot open the ledger at {self.url}: {exc}") from exc
            self._ready = True

    def _migrate(self, conn: Connection, version: int) -> None:
        """Bring a ledger of an older schema up to date, in the same transaction: links,
        agreed values and pending work are kept as they are."""
        present = inspect(conn)
        for name, table in _ADDED_COLUMNS:  # schema 2
            if name in {c["name"] for c in present.get_columns(table.name)}:
                continue
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))
        for table_name, renames in RENAMED_COLUMNS.items():  # schema 3
            columns = {c["name"] for c in present.get_columns(table_name)}
            for old, new in renames.items():
                if old in columns and new not in columns:
                    conn.execute(text(f"ALTER TABLE {table_name} RENAME COLUMN {old} TO {new}"))
        for (table_name, column), values in RENAMED_VALUES.items():
            table = metadata.tables[table_name]
            for old, new in values.items():
                conn.execute(update(table).where(table.c[column] == old).values({column: new}))
        held = failures.c.reason == HELD_DELETE_REASON
        scope_and_key = [
            *(failures.c[name] for name in _PARTITION),
            failures.c.side,
            failures.c.record_id,
        ]
        conn.execute(
            insert(held_deletes).from_select(
                [*_PARTITION, "side", "record_id", "payload", "held_at"],
                select(*scope_and_key, failures.c.payload, failures.c.last_failed_at).where(held),
            )
        )
        conn.execute(delete(failures).where(held))
        conn.execute(
            update(ledger_meta)
            .where(ledger_meta.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
        log.info("migrated the ledger at %s: schema %d -> %d", self.url, version, SCHEMA_VERSION)

    def _stored_version(self, conn: Connection) -> int | None:
        if not inspect(conn).has_table(ledger_meta.name):
            return None
        value = conn.execute(
            select(ledger_meta.c.value).where(ledger_meta.c.key == "schema_version")
        ).scalar_one_or_none()
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise LedgerError(
                f"the ledger at {self.url} has an unreadable schema version {value!r}"
            ) from None


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    """WAL lets readers run beside the one writer; writers take the write lock up front."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite must not BEGIN on its own: we do (below)
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")  # a committed link survives power loss
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE waits (busy_timeout) for the write lock at the start; a deferred
        # transaction that upgrades later can fail with SQLITE_BUSY without waiting.
        mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


class _ReadOnlyLedger(Ledger):
    """A ledger whose reads are its own and whose every write is refused (a dry run's)."""

    def __init__(self, ledger: Ledger) -> None:  # same engine, same locks: no second connection
        self.__dict__.update(ledger.__dict__)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        raise LedgerError(
            "this run is a dry run: its ledger is open read-only and nothing may be written to "
            "it (a dry run must leave links and pending work as the next real run needs them)"
        )
        yield  # pragma: no cover - a generator, for contextmanager


# --------------------------------------------------------------------------------------------
# The partition of one run


class PartitionLedger:
    """The ledger of one partition, held by one run. Every write is committed when it returns."""

    def __init__(self, ledger: Ledger, partition: Partition, lock: _RunLock) -> None:
        self._ledger = ledger
        self._partition = partition
        self._lock: _RunLock | None = lock

    @property
    def partition(self) -> Partition:
        return self._partition

    def __repr__(self) -> str:
        state = "closed" if self._lock is None else "open"
        return f"PartitionLedger({str(self._partition)!r}, {state})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the run lock. Idempotent."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
            log.info("closed ledger scope %s", self._partition)

    def _held(self) -> _RunLock:
        if self._lock is None:
            raise LedgerError(f"the ledger of scope {self._partition} is closed")
        self._lock.check()
        return self._lock

    # -- links -------------------------------------------------------------------------------

    def get(self, side: Side, record_id: str) -> Link | None:
        self._held()
        with self._ledger._reading() as conn:
            row = conn.execute(
                select(links).where(
                    _in_partition(links, self._partition), _id_column(side) == record_id
                )
            ).one_or_none()
        return None if row is None else _to_link(row)

    def get_many(self, side: Side, ids: Iterable[str]) -> dict[str, Link]:
        """The links of the given ids on ``side``, keyed by that id; unknown ids are absent."""
        self._held()
        wanted = list(dict.fromkeys(ids))
        column = _id_column(side)
        found: dict[str, Link] = {}
        with self._ledger._reading() as conn:
            for chunk in _chunks(wanted):
                rows = conn.execute(
                    select(links).where(_in_partition(links, self._partition), column.in_(chunk))
                )
                for row in rows:
                    link = _to_link(row)
                    key = link.id_on(side)
                    if key is not None:
                        found[key] = link
        return found

    def iter_links(self, state: LinkState | None = None) -> Iterator[Link]:
        """Stream the partition's links by ``crm_id``, one short query per page.

        Paging on the key (not a cursor held open) keeps memory flat and lets the caller write
        to the ledger while iterating.
        """
        query = select(links)
        if state is not None:
            query = query.where(links.c.state == state.value)
        for row in self._link_pages(query):
            yield _to_link(row)

    def iter_link_ids(self, side: Side) -> Iterator[tuple[str | None, LinkState]]:
        """Each link's id on ``side`` and its state, paged like :meth:`iter_links`, without
        reading the agreed values (a complete listing checks every link: issue #15)."""
        query = select(links.c.crm_id, _id_column(side), links.c.state)
        for crm_id, record_id, state in self._link_pages(query):
            yield record_id, _link_state(crm_id, state)

    def _link_pages(self, query: Select[Any]) -> Iterator[Row[Any]]:
        """The rows of ``query`` (over ``links``, selecting ``crm_id``) in this partition, in
        pages of ``_CHUNK`` by ``crm_id``."""
        self._held()
        query = query.where(_in_partition(links, self._partition)).order_by(links.c.crm_id)
        after: str | None = None
        while True:
            page_query = query if after is None else query.where(links.c.crm_id > after)
            with self._ledger._reading() as conn:
                page = conn.execute(page_query.limit(_CHUNK)).all()
            yield from page
            if len(page) < _CHUNK:
                return
            after = page[-1].crm_id

    def count_links(self) -> int:
        self._held()
        with self._ledger._reading() as conn:
            return conn.execute(
                select(func.count()).select_from(links).where(_in_partition(links, self._partition))
            ).scalar_one()

    def put(self, link: Link) -> None:
        """Insert or update the link of ``link.crm_id``; durable when this returns."""
        self.put_many([link])

    def put_many(
        self, items: Sequence[Link], *, settle: tuple[Side, Sequence[str]] | None = None
    ) -> None:
        """Upsert all links in one transaction: all are durable on return, or none is written.

        ``settle`` (a side and record ids): those records' pending rows (failures, creates in
        flight) are dropped in the same transaction, so that a record's link and the end of its
        pending work are one commit (issue #15), never one without the other.

        Raises ``LedgerConflict`` (and writes nothing) if an address-book id would be linked to two
        CRM contacts. A link may take over an address-book id that another link of the same
        batch gives up. A repeated ``crm_id`` counts as successive puts (the last wins).
        """
        self._held()
        batch: dict[str, Link] = {}
        for link in items:
            batch[link.crm_id] = link
        settled = list(settle[1]) if settle is not None else []
        if not batch and not settled:
            return
        claims: dict[str, str] = {}  # address book id -> crm id claiming it in this batch
        for link in batch.values():
            if link.book_id is None:
                continue
            other = claims.setdefault(link.book_id, link.crm_id)
            if other != link.crm_id:
                raise LedgerConflict(
                    f"{Side.BOOK.title} contact {link.book_id} cannot be linked to both "
                    f"{Side.CRM.title} "
                    f"contacts {other} and {link.crm_id} in scope {self._partition}"
                )
        now = _now()
        rows = [self._row(link, now) for link in batch.values()]
        try:
            with self._ledger._writing() as conn:
                if rows:
                    self._release_moved_book_ids(conn, batch, claims)
                    self._upsert(conn, rows)
                if settle is not None and settled:
                    self._delete_failures(conn, settle[0], settled)
        except IntegrityError as exc:  # a check above missed a case: still never duplicate
            raise LedgerConflict(
                f"writing {len(rows)} link(s) in scope {self._partition} violates a uniqueness "
                f"rule of the ledger; nothing was written ({exc.orig})"
            ) from exc

    def _release_moved_book_ids(
        self, conn: Connection, batch: Mapping[str, Link], claims: Mapping[str, str]
    ) -> None:
        """Refuse address-book ids held by links outside the batch; free those moved inside it."""
        moved: list[str] = []
        for chunk in _chunks(list(claims)):
            holders = conn.execute(
                select(links.c.crm_id, links.c.book_id).where(
                    _in_partition(links, self._partition), links.c.book_id.in_(chunk)
                )
            )
            for holder, book_id in holders:
                claimant = claims[book_id]
                if holder == claimant:
                    continue
                if holder not in batch:
                    raise LedgerConflict(
                        f"{Side.BOOK.title} contact {book_id} is already linked to "
                        f"{Side.CRM.title} contact "
                        f"{holder} in scope {self._partition}; refusing to link it to {claimant} "
                        "as well (remove or relink the first link before)"
                    )
                moved.append(holder)  # the batch gives that link another address-book id
        for chunk in _chunks(moved):
            conn.execute(
                update(links)
                .where(_in_partition(links, self._partition), links.c.crm_id.in_(chunk))
                .values(book_id=None)
            )

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if conn.dialect.name in ("postgresql", "sqlite"):
            conn.execute(_UPSERT_LINKS, rows)
            return
        # Portable path: nobody else writes this partition while we hold its run lock.
        for row in rows:
            result = conn.execute(
                update(links)
                .where(_in_partition(links, self._partition), links.c.crm_id == row["crm_id"])
                .values({name: row[name] for name in _LINK_UPDATABLE})
            )
            if result.rowcount == 0:
                conn.execute(insert(links).values(row))

    def _row(self, link: Link, now: datetime) -> dict[str, Any]:
        return {
            **_partition_values(self._partition),
            "crm_id": link.crm_id,
            "book_id": link.book_id,
            "agreed": _dumps(link.agreed),
            "crm_version": link.crm_version,
            "book_version": link.book_version,
            "state": LinkState(link.state).value,
            "created_at": now,
            "updated_at": now,
            "pinned": _dumps(link.pinned) if link.pinned else None,
        }

    def remove(self, crm_id: str) -> None:
        """Forget one link (both contacts are gone or unlinked); committed on return."""
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                delete(links).where(_in_partition(links, self._partition), links.c.crm_id == crm_id)
            )

    # -- pending failures --------------------------------------------------------------------

    def record_failure(
        self,
        side: Side,
        record_id: str,
        payload: Mapping[str, Any],
        reason: str,
        *,
        park_after: int | None = None,
    ) -> Failure:
        """Remember a failed write of ``record_id`` (a key on ``side``) until it succeeds.

        Attempts count up while the record's version stays the same, and start again at 1 when
        it changed. With ``park_after``, a record refused that many times is parked: not
        retried until its source changes.
        """
        self._held()
        side = Side(side)
        now = _now()
        body = _dumps(payload)
        where = and_(
            _in_partition(failures, self._partition),
            failures.c.side == side.value,
            failures.c.record_id == record_id,
        )
        with self._ledger._writing() as conn:
            row = conn.execute(
                select(failures.c.attempts, failures.c.first_failed_at, failures.c.payload).where(
                    where
                )
            ).one_or_none()
            same = row is not None and json.loads(row.payload).get("version") == payload.get(
                "version"
            )
            attempts = row.attempts + 1 if row is not None and same else 1
            first = _utc(row.first_failed_at) if row is not None and same else now
            parked = now if park_after is not None and attempts >= park_after else None
            values = {
                "payload": body,
                "reason": reason,
                "attempts": attempts,
                "first_failed_at": first,
                "last_failed_at": now,
                "parked_at": parked,
            }
            if row is None:
                conn.execute(
                    insert(failures).values(
                        **_partition_values(self._partition),
                        side=side.value,
                        record_id=record_id,
                        **values,
                    )
                )
            else:
                conn.execute(update(failures).where(where).values(**values))
        return Failure(side, record_id, json.loads(body), reason, attempts, first, now, parked)

    def failures(self, side: Side | None = None, *, parked: bool | None = False) -> list[Failure]:
        """Pending failures of the partition (of one side if given), ordered by side and id: those
        to retry (``parked=False``, the default), the parked ones (True), or all (None)."""
        self._held()
        query = select(failures).where(_in_partition(failures, self._partition))
        if side is not None:
            query = query.where(failures.c.side == Side(side).value)
        if parked is not None:
            column = failures.c.parked_at
            query = query.where(column.is_not(None) if parked else column.is_(None))
        query = query.order_by(failures.c.side, failures.c.record_id)
        with self._ledger._reading() as conn:
            return [
                Failure(
                    side=Side(row.side),
                    record_id=row.record_id,
                    payload=json.loads(row.payload),
                    reason=row.reason,
                    attempts=row.attempts,
                    first_failed_at=_utc(row.first_failed_at),
                    last_failed_at=_utc(row.last_failed_at),
                    parked_at=_utc(row.parked_at) if row.parked_at is not None else None,
                )
                for row in conn.execute(query)
            ]

    def hold_in_flight(
        self, side: Side, records: Sequence[tuple[str, Mapping[str, Any]]], reason: str
    ) -> None:
        """Before creating copies: keep each record as pending work, in one transaction, so that
        a run stopped between the create and its link replays the record next time (and finds
        the copy by its stamp) instead of forgetting it. A record already pending keeps its
        row and attempts."""
        if not records:
            return
        self._held()
        side = Side(side)
        now = _now()
        partition = _partition_values(self._partition)
        rows = [
            {
                **partition,
                "side": side.value,
                "record_id": record_id,
                "payload": _dumps(payload),
                "reason": reason,
                "attempts": 0,  # not a failure (yet): a refusal counts from 1
                "first_failed_at": now,
                "last_failed_at": now,
                "parked_at": None,
            }
            for record_id, payload in dict(records).items()
        ]
        with self._ledger._writing() as conn:
            if conn.dialect.name in ("postgresql", "sqlite"):
                conn.execute(_INSERT_PENDING, rows)
                return
            # Portable path: nobody else writes this partition while we hold its run lock.
            held = set(
                conn.scalars(
                    select(failures.c.record_id).where(
                        _in_partition(failures, self._partition),
                        failures.c.side == side.value,
                        failures.c.record_id.in_([row["record_id"] for row in rows]),
                    )
                )
            )
            rows = [row for row in rows if row["record_id"] not in held]
            if rows:
                conn.execute(insert(failures), rows)

    def clear_failures(self, side: Side, record_ids: Sequence[str]) -> None:
        """Records written after all: drop their pending rows (if any), in one transaction."""
        if not record_ids:
            return
        self._held()
        with self._ledger._writing() as conn:
            self._delete_failures(conn, Side(side), record_ids)

    def _delete_failures(self, conn: Connection, side: Side, record_ids: Sequence[str]) -> None:
        for chunk in _chunks(list(record_ids)):
            conn.execute(
                delete(failures).where(
                    _in_partition(failures, self._partition),
                    failures.c.side == Side(side).value,
                    failures.c.record_id.in_(chunk),
                )
            )

    def clear_failure(self, side: Side, record_id: str) -> None:
        """The record was written after all: drop its pending failure (if any)."""
        self.clear_failures(side, [record_id])

    # -- deletes held for the guard -----------------------------------------------------------

    def hold_delete(self, side: Side, record_id: str, payload: Mapping[str, Any]) -> None:
        """Keep the tombstone of ``record_id`` (a key on ``side``) until the delete is done."""
        self._held()
        key = {
            **_partition_values(self._partition),
            "side": Side(side).value,
            "record_id": record_id,
        }
        with self._ledger._writing() as conn:
            conn.execute(
                delete(held_deletes).where(*(held_deletes.c[k] == v for k, v in key.items()))
            )
            conn.execute(
                insert(held_deletes).values(**key, payload=_dumps(payload), held_at=_now())
            )

    def held_deletes(self, side: Side | None = None) -> list[HeldDelete]:
        """The deletes held by an earlier run that did not reach its end, ordered by side and id."""
        self._held()
        query = select(held_deletes).where(_in_partition(held_deletes, self._partition))
        if side is not None:
            query = query.where(held_deletes.c.side == Side(side).value)
        query = query.order_by(held_deletes.c.side, held_deletes.c.record_id)
        with self._ledger._reading() as conn:
            return [
                HeldDelete(
                    Side(row.side), row.record_id, json.loads(row.payload), _utc(row.held_at)
                )
                for row in conn.execute(query)
            ]

    def release_delete(self, side: Side, record_id: str) -> None:
        """The delete was done, or a newer record replaced it: forget the held tombstone."""
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                delete(held_deletes).where(
                    _in_partition(held_deletes, self._partition),
                    held_deletes.c.side == Side(side).value,
                    held_deletes.c.record_id == record_id,
                )
            )

    # -- conflicts ---------------------------------------------------------------------------

    def record_conflicts(self, lost: Sequence[LostValue]) -> None:
        """Keep the losing values of conflicts, so that a person can see and restore them."""
        if not lost:
            return
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                insert(conflicts),
                [
                    {
                        **_partition_values(self._partition),
                        "conflict_id": item.conflict_id,
                        "crm_id": item.crm_id,
                        "field": item.field,
                        "kept_side": Side(item.kept_side).value,
                        "kept_value": item.kept_value,
                        "lost_value": item.lost_value,
                        "policy": item.policy,
                        "decided_at": item.decided_at,
                        "restored_at": item.restored_at,
                    }
                    for item in lost
                ],
            )

    def lost_values(self, *, restored: bool | None = False) -> list[LostValue]:
        """The partition's conflicts, newest first: not restored yet (default), restored, or all."""
        self._held()
        query = select(conflicts).where(_in_partition(conflicts, self._partition))
        if restored is not None:
            column = conflicts.c.restored_at
            query = query.where(column.is_not(None) if restored else column.is_(None))
        query = query.order_by(conflicts.c.decided_at.desc(), conflicts.c.conflict_id)
        with self._ledger._reading() as conn:
            return [
                LostValue(
                    conflict_id=row.conflict_id,
                    crm_id=row.crm_id,
                    field=row.field,
                    kept_side=Side(row.kept_side),
                    kept_value=row.kept_value,
                    lost_value=row.lost_value,
                    policy=row.policy,
                    decided_at=_utc(row.decided_at),
                    restored_at=_utc(row.restored_at) if row.restored_at is not None else None,
                )
                for row in conn.execute(query)
            ]

    def mark_restored(self, conflict_id: str) -> None:
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                update(conflicts)
                .where(
                    _in_partition(conflicts, self._partition),
                    conflicts.c.conflict_id == conflict_id,
                )
                .values(restored_at=_now())
            )

    # -- the folder ----------------------------------------------------------------------------

    def folder_binding(self) -> FolderBinding | None:
        """The address-book folder id this partition is bound to, if it was ever resolved."""
        self._held()
        with self._ledger._reading() as conn:
            row = conn.execute(
                select(folders).where(_in_partition(folders, self._partition))
            ).one_or_none()
        if row is None:
            return None
        return FolderBinding(row.bound_id, row.display_name, _utc(row.bound_at))

    def bind_folder(self, folder_id: str, display_name: str) -> FolderBinding:
        """Bind the partition to ``folder_id`` (first resolution), or note its current name."""
        self._held()
        now = _now()
        where = _in_partition(folders, self._partition)
        with self._ledger._writing() as conn:
            row = conn.execute(select(folders).where(where)).one_or_none()
            if row is None:
                conn.execute(
                    insert(folders).values(
                        **_partition_values(self._partition),
                        bound_id=folder_id,
                        display_name=display_name,
                        bound_at=now,
                        seen_at=now,
                    )
                )
                return FolderBinding(folder_id, display_name, now)
            if row.bound_id != folder_id:
                raise LedgerError(
                    f"scope {self._partition} is bound to {Side.BOOK.title} folder "
                    f"{row.bound_id}, not {folder_id}; a different folder is a different sync"
                )
            conn.execute(
                update(folders).where(where).values(display_name=display_name, seen_at=now)
            )
            return FolderBinding(folder_id, display_name, _utc(row.bound_at))


def _id_column(side: Side) -> Column[Any]:
    return links.c.crm_id if Side(side) is Side.CRM else links.c.book_id


def _link_state(crm_id: str, value: str) -> LinkState:
    try:
        return LinkState(value)
    except ValueError:
        raise LedgerError(
            f"link {crm_id} has state {value!r}, unknown to this contactsync"
        ) from None


def _to_link(row: Row[Any]) -> Link:
    state = _link_state(row.crm_id, row.state)
    return Link(
        crm_id=row.crm_id,
        book_id=row.book_id,
        agreed=json.loads(row.agreed),
        crm_version=row.crm_version,
        book_version=row.book_version,
        state=state,
        pinned=json.loads(row.pinned) if row.pinned else {},
    )
