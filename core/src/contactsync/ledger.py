"""The link store of DESIGN §4: links, agreed values, versions and pending work, per scope.

One SQLite file by default; any SQLAlchemy URL (PostgreSQL for shared deployments) otherwise.
Every row carries its scope (user, Pipeliner space, mailbox, folder), so one user's runs can
neither see nor touch another user's links.

Transactions are short and every write method commits before it returns: a link recorded right
after a create succeeded survives a crash of the run a millisecond later. A run holds its scope's
run lock for its whole life (``Ledger.open_scope``); a second run of the same scope fails at once
with ``LedgerLocked`` instead of interleaving writes, while runs of other scopes never wait on it.

How the run lock is held, so that a killed run never locks its user out:

* SQLite file: ``flock`` on ``<database>.locks/<sha256 of the scope>.lock``. The kernel releases
  it when the holder exits, however it dies. The lock files are never deleted (deleting a lock
  file lets two runs lock two different inodes).
* PostgreSQL: ``pg_try_advisory_lock`` on a connection kept open for the run; the server releases
  it when that session ends, including when the client is killed.
* In-memory SQLite: a lock inside this ``Ledger`` object (the database dies with the process).
* Any other database: a ``run_locks`` row refreshed by a heartbeat thread every
  ``_TableRunLock.ttl / 4``; a row whose heartbeat is older than ``_TableRunLock.ttl``
  (120 s) belongs to a dead run and is taken over. This assumes the hosts' clocks agree to well
  within the TTL.

The ``run_locks`` table also tells a refused run who holds the lock (host, pid, owner, since).
Nothing secret is ever stored: no settings, no tokens, and the URL's password is never logged.

PostgreSQL ``postgresql://`` and ``postgres://`` URLs are run on psycopg 3. To keep the ledger in
its own schema of a shared database, append ``?options=-csearch_path%3D<schema>`` to the URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
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

from contactsync.link import Link, LinkState, ScopeKey, Side

__all__ = [
    "DEFAULT_LEDGER_PATH",
    "SCHEMA_VERSION",
    "Failure",
    "FolderBinding",
    "Ledger",
    "LedgerConflict",
    "LedgerError",
    "LedgerLocked",
    "LockHolder",
    "LostValue",
    "ScopeLedger",
]

log = logging.getLogger(__name__)

#: Where the ledger lives when no URL is configured, relative to the working directory (the
#: Meltano project directory in production) and resolved when the ``Ledger`` is created.
DEFAULT_LEDGER_PATH: Final = Path(".contactsync") / "ledger.sqlite"

#: Version of the table layout below, stored in ``ledger_meta`` so that a later release can
#: migrate an old file and an old release refuses a file written by a newer one.
#: 2: links.pinned, failures.parked_at, the conflicts and folders tables (migrated from 1).
SCHEMA_VERSION: Final = 2

#: How long a SQLite writer waits for another writer (other scopes' writes take milliseconds).
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000

_CHUNK: Final = 500  # ids per IN (...) query and links per page: far below every bind limit
_WRITE: Final = "contactsync_write"  # execution option: this transaction will write
_LOCK_NAMESPACE: Final = b"contactsync.ledger.scope\x00"
_INIT_LOCK_KEY: Final = (
    int.from_bytes(hashlib.sha256(b"contactsync.ledger.init").digest()[:8], "big") >> 1
)


# --------------------------------------------------------------------------------------------
# Errors and value types


class LedgerError(Exception):
    """The ledger cannot be used as asked; the message says why and what to do."""


class LedgerConflict(LedgerError):
    """A write would give one Outlook contact two Pipeliner partners in the same scope."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a scope's run lock, as far as the ledger knows."""

    host: str
    pid: int
    owner: str | None
    since: datetime

    def describe(self) -> str:
        who = f"host {self.host}, pid {self.pid}"
        if self.owner:
            who += f", owner {self.owner!r}"
        return f"{who}, since {self.since.isoformat(timespec='seconds')}"


class LedgerLocked(LedgerError):
    """Another run of the same scope is in progress; a second one must not interleave with it."""

    def __init__(self, scope: ScopeKey, holder: LockHolder | None, hint: str) -> None:
        self.scope = scope
        self.holder = holder
        who = holder.describe() if holder else "holder unknown"
        super().__init__(
            f"ledger scope {scope} is locked by another contactsync run ({who}). "
            f"Wait for the other run to finish, or stop it if it hangs: {hint}"
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
class LostValue:
    """The value of one field that lost a conflict, kept so that a person can see and restore it."""

    conflict_id: str
    pipeliner_id: str
    field: str
    kept_side: Side
    kept_value: str | None
    lost_value: str | None
    policy: str
    decided_at: datetime
    restored_at: datetime | None = None


@dataclass(frozen=True)
class FolderBinding:
    """The Outlook folder a scope is bound to, by id: a rename keeps the sync, a delete stops it."""

    folder_id: str
    display_name: str
    bound_at: datetime


# --------------------------------------------------------------------------------------------
# Tables

_ID = String(512)  # Graph ids are ~150 characters; bounded so that every database can index it
_SCOPE: Final = ("user_id", "space_id", "mailbox", "folder_id")

metadata = MetaData()


def _scope_columns() -> list[Column[str]]:
    return [Column(name, _ID, nullable=False) for name in _SCOPE]


links = Table(
    "contactsync_links",
    metadata,
    *_scope_columns(),
    Column("pipeliner_id", _ID, nullable=False),
    Column("outlook_id", _ID, nullable=True),  # None while the Outlook copy is owed a restore
    Column("agreed", Text, nullable=False),  # JSON text, identical on every database
    Column("pipeliner_version", Text, nullable=True),
    Column("outlook_version", Text, nullable=True),
    Column("state", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("pinned", Text, nullable=True),  # JSON text; see Link.pinned (schema 2)
    PrimaryKeyConstraint(*_SCOPE, "pipeliner_id", name="pk_links"),
    # NULLs are distinct in unique constraints on SQLite and PostgreSQL: many links may wait
    # for a restore at once, but no Outlook contact is ever linked twice in a scope.
    UniqueConstraint(*_SCOPE, "outlook_id", name="uq_links_outlook_id"),
)

failures = Table(
    "contactsync_failures",
    metadata,
    *_scope_columns(),
    Column("side", String(16), nullable=False),
    Column("record_id", _ID, nullable=False),
    Column("payload", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    # Set when the record was refused for its data too often: not retried until it changes.
    Column("parked_at", DateTime(timezone=True), nullable=True),  # schema 2
    PrimaryKeyConstraint(*_SCOPE, "side", "record_id", name="pk_failures"),
)

#: Columns added to existing tables since schema 1, migrated by ALTER TABLE.
_ADDED_COLUMNS: Final = (("pinned", links), ("parked_at", failures))

conflicts = Table(
    "contactsync_conflicts",
    metadata,
    *_scope_columns(),
    Column("conflict_id", String(36), nullable=False),
    Column("pipeliner_id", _ID, nullable=False),
    Column("field", String(64), nullable=False),
    Column("kept_side", String(16), nullable=False),
    Column("kept_value", Text, nullable=True),
    Column("lost_value", Text, nullable=True),
    Column("policy", String(32), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("restored_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint(*_SCOPE, "conflict_id", name="pk_conflicts"),
)

folders = Table(
    "contactsync_folders",
    metadata,
    *_scope_columns(),
    Column("bound_id", _ID, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint(*_SCOPE, name="pk_folders"),
)

run_locks = Table(
    "contactsync_run_locks",
    metadata,
    Column("lock_key", String(64), primary_key=True),  # sha256 hex of the scope
    *_scope_columns(),
    Column("token", String(36), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("owner", Text, nullable=True),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

ledger_meta = Table(
    "contactsync_ledger_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

_LINK_UPDATABLE: Final = (
    "outlook_id",
    "agreed",
    "pipeliner_version",
    "outlook_version",
    "state",
    "updated_at",
    "pinned",
)

# SQLite (3.24+) and PostgreSQL share this upsert. Written as text because SQLAlchemy cannot
# cache its ON CONFLICT constructs: compiling one per put cost more than the commit.
_UPSERT_LINKS: Final = text(
    f"INSERT INTO {links.name} ({', '.join(c.name for c in links.c)}) "
    f"VALUES ({', '.join(':' + c.name for c in links.c)}) "
    f"ON CONFLICT ({', '.join([*_SCOPE, 'pipeliner_id'])}) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _LINK_UPDATABLE)
).bindparams(*(bindparam(c.name, type_=c.type) for c in links.c))


# --------------------------------------------------------------------------------------------
# Small helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we wrote was UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dumps(value: Mapping[str, Any]) -> str:
    # sort_keys: the same mapping is the same text on every database; unicode stays readable.
    return json.dumps(dict(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _scope_digest(scope: ScopeKey) -> bytes:
    # JSON of the four parts, not str(scope): "a@b/c/d" could be split more than one way.
    parts = [scope.user, scope.space, scope.mailbox, scope.folder]
    return hashlib.sha256(_LOCK_NAMESPACE + json.dumps(parts).encode()).digest()


def _scope_values(scope: ScopeKey) -> dict[str, str]:
    return {
        "user_id": scope.user,
        "space_id": scope.space,
        "mailbox": scope.mailbox,
        "folder_id": scope.folder,
    }


def _in_scope(table: Table, scope: ScopeKey) -> ColumnElement[bool]:
    return and_(*(table.c[name] == value for name, value in _scope_values(scope).items()))


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
        """Close pooled connections. Open ``ScopeLedger`` objects keep their own lock."""
        self._engine.dispose()

    def open_scope(
        self, scope: ScopeKey, *, owner: str | None = None, read_only: bool = False
    ) -> ScopeLedger:
        """Take the scope's run lock and return its ledger; use it as a context manager.

        Fails at once with ``LedgerLocked`` if another run of the scope holds the lock.
        ``owner`` is a free-text label for that message (e.g. the Meltano job); no secrets.
        ``read_only`` (a dry run): every write to the scope's links, pending work, conflicts or
        folder binding raises ``LedgerError``, so a dry run cannot consume what the next real
        run must do. The lock is still taken: a dry run reads no half-written run.
        """
        self._ensure_schema()
        holder = LockHolder(host=socket.gethostname(), pid=os.getpid(), owner=owner, since=_now())
        lock = self._lock_class.acquire(self, scope, holder)
        log.info("opened ledger scope %s in %s%s", scope, self.url, " (read-only)" * read_only)
        return ScopeLedger(_ReadOnlyLedger(self) if read_only else self, scope, lock)

    def scopes(self) -> list[ScopeKey]:
        """Every scope with links or pending failures, for status commands."""
        self._ensure_schema()
        found: set[ScopeKey] = set()
        with self._reading() as conn:
            for table in (links, failures):
                cols = [table.c[name] for name in _SCOPE]
                for row in conn.execute(select(*cols).distinct()):
                    found.add(ScopeKey(*row))
        return sorted(found, key=lambda s: (s.user, s.space, s.mailbox, s.folder))

    def folder_bindings(self) -> dict[ScopeKey, FolderBinding]:
        """Every scope's bound Outlook folder (id, name when last seen), for status commands:
        read without a scope's lock, so that a running sync does not hide it."""
        self._ensure_schema()
        with self._reading() as conn:
            rows = conn.execute(select(folders)).all()
        return {
            ScopeKey(*(getattr(row, name) for name in _SCOPE)): FolderBinding(
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
        for name, table in _ADDED_COLUMNS:
            if name in {c["name"] for c in present.get_columns(table.name)}:
                continue
            column = table.c[name]
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))
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

    # -- lock holder bookkeeping (informational, except for _TableRunLock) -------------------

    def _write_holder(
        self, conn: Connection, scope: ScopeKey, holder: LockHolder, token: str
    ) -> None:
        conn.execute(
            insert(run_locks).values(
                lock_key=_scope_digest(scope).hex(),
                **_scope_values(scope),
                token=token,
                host=holder.host[:255],
                pid=holder.pid,
                owner=holder.owner,
                acquired_at=holder.since,
                heartbeat_at=holder.since,
            )
        )

    def _replace_holder(self, scope: ScopeKey, holder: LockHolder, token: str) -> None:
        with self._writing() as conn:
            conn.execute(
                delete(run_locks).where(run_locks.c.lock_key == _scope_digest(scope).hex())
            )
            self._write_holder(conn, scope, holder, token)

    def _read_holder(
        self, conn: Connection, scope: ScopeKey
    ) -> tuple[LockHolder, str, datetime] | None:
        row = conn.execute(
            select(run_locks).where(run_locks.c.lock_key == _scope_digest(scope).hex())
        ).one_or_none()
        if row is None:
            return None
        holder = LockHolder(row.host, row.pid, row.owner, _utc(row.acquired_at))
        return holder, row.token, _utc(row.heartbeat_at)

    def _holder_or_none(self, scope: ScopeKey) -> LockHolder | None:
        try:
            with self._reading() as conn:
                found = self._read_holder(conn, scope)
        except SQLAlchemyError:
            return None
        return found[0] if found else None

    def _clear_holder(self, scope: ScopeKey, token: str) -> None:
        with self._writing() as conn:
            conn.execute(
                delete(run_locks).where(
                    run_locks.c.lock_key == _scope_digest(scope).hex(), run_locks.c.token == token
                )
            )


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
# The scope of one run


class ScopeLedger:
    """The ledger of one scope, held by one run. Every write is committed when it returns."""

    def __init__(self, ledger: Ledger, scope: ScopeKey, lock: _RunLock) -> None:
        self._ledger = ledger
        self._scope = scope
        self._lock: _RunLock | None = lock

    @property
    def scope(self) -> ScopeKey:
        return self._scope

    def __repr__(self) -> str:
        state = "closed" if self._lock is None else "open"
        return f"ScopeLedger({str(self._scope)!r}, {state})"

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
            log.info("closed ledger scope %s", self._scope)

    def _held(self) -> _RunLock:
        if self._lock is None:
            raise LedgerError(f"the ledger of scope {self._scope} is closed")
        self._lock.check()
        return self._lock

    # -- links -------------------------------------------------------------------------------

    def get(self, side: Side, record_id: str) -> Link | None:
        self._held()
        with self._ledger._reading() as conn:
            row = conn.execute(
                select(links).where(_in_scope(links, self._scope), _id_column(side) == record_id)
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
                    select(links).where(_in_scope(links, self._scope), column.in_(chunk))
                )
                for row in rows:
                    link = _to_link(row)
                    key = link.id_on(side)
                    if key is not None:
                        found[key] = link
        return found

    def iter_links(self, state: LinkState | None = None) -> Iterator[Link]:
        """Stream the scope's links by ``pipeliner_id``, one short query per page.

        Paging on the key (not a cursor held open) keeps memory flat and lets the caller write
        to the ledger while iterating.
        """
        self._held()
        after: str | None = None
        while True:
            query = select(links).where(_in_scope(links, self._scope))
            if state is not None:
                query = query.where(links.c.state == state.value)
            if after is not None:
                query = query.where(links.c.pipeliner_id > after)
            query = query.order_by(links.c.pipeliner_id).limit(_CHUNK)
            with self._ledger._reading() as conn:
                page = [_to_link(row) for row in conn.execute(query)]
            yield from page
            if len(page) < _CHUNK:
                return
            after = page[-1].pipeliner_id

    def count_links(self) -> int:
        self._held()
        with self._ledger._reading() as conn:
            return conn.execute(
                select(func.count()).select_from(links).where(_in_scope(links, self._scope))
            ).scalar_one()

    def put(self, link: Link) -> None:
        """Insert or update the link of ``link.pipeliner_id``; durable when this returns."""
        self.put_many([link])

    def put_many(self, items: Sequence[Link]) -> None:
        """Upsert all links in one transaction: all are durable on return, or none is written.

        Raises ``LedgerConflict`` (and writes nothing) if an Outlook id would be linked to two
        Pipeliner contacts. A link may take over an Outlook id that another link of the same
        batch gives up. A repeated ``pipeliner_id`` counts as successive puts (the last wins).
        """
        self._held()
        batch: dict[str, Link] = {}
        for link in items:
            batch[link.pipeliner_id] = link
        if not batch:
            return
        claims: dict[str, str] = {}  # outlook id -> pipeliner id claiming it in this batch
        for link in batch.values():
            if link.outlook_id is None:
                continue
            other = claims.setdefault(link.outlook_id, link.pipeliner_id)
            if other != link.pipeliner_id:
                raise LedgerConflict(
                    f"Outlook contact {link.outlook_id} cannot be linked to both Pipeliner "
                    f"contacts {other} and {link.pipeliner_id} in scope {self._scope}"
                )
        now = _now()
        rows = [self._row(link, now) for link in batch.values()]
        try:
            with self._ledger._writing() as conn:
                self._release_moved_outlook_ids(conn, batch, claims)
                self._upsert(conn, rows)
        except IntegrityError as exc:  # a check above missed a case: still never duplicate
            raise LedgerConflict(
                f"writing {len(rows)} link(s) in scope {self._scope} violates a uniqueness "
                f"rule of the ledger; nothing was written ({exc.orig})"
            ) from exc

    def _release_moved_outlook_ids(
        self, conn: Connection, batch: Mapping[str, Link], claims: Mapping[str, str]
    ) -> None:
        """Refuse Outlook ids held by links outside the batch; free those moved inside it."""
        moved: list[str] = []
        for chunk in _chunks(list(claims)):
            holders = conn.execute(
                select(links.c.pipeliner_id, links.c.outlook_id).where(
                    _in_scope(links, self._scope), links.c.outlook_id.in_(chunk)
                )
            )
            for holder, outlook_id in holders:
                claimant = claims[outlook_id]
                if holder == claimant:
                    continue
                if holder not in batch:
                    raise LedgerConflict(
                        f"Outlook contact {outlook_id} is already linked to Pipeliner contact "
                        f"{holder} in scope {self._scope}; refusing to link it to {claimant} "
                        "as well (remove or relink the first link before)"
                    )
                moved.append(holder)  # the batch gives that link another Outlook id
        for chunk in _chunks(moved):
            conn.execute(
                update(links)
                .where(_in_scope(links, self._scope), links.c.pipeliner_id.in_(chunk))
                .values(outlook_id=None)
            )

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if conn.dialect.name in ("postgresql", "sqlite"):
            conn.execute(_UPSERT_LINKS, rows)
            return
        # Portable path: nobody else writes this scope while we hold its run lock.
        for row in rows:
            result = conn.execute(
                update(links)
                .where(_in_scope(links, self._scope), links.c.pipeliner_id == row["pipeliner_id"])
                .values({name: row[name] for name in _LINK_UPDATABLE})
            )
            if result.rowcount == 0:
                conn.execute(insert(links).values(row))

    def _row(self, link: Link, now: datetime) -> dict[str, Any]:
        return {
            **_scope_values(self._scope),
            "pipeliner_id": link.pipeliner_id,
            "outlook_id": link.outlook_id,
            "agreed": _dumps(link.agreed),
            "pipeliner_version": link.pipeliner_version,
            "outlook_version": link.outlook_version,
            "state": LinkState(link.state).value,
            "created_at": now,
            "updated_at": now,
            "pinned": _dumps(link.pinned) if link.pinned else None,
        }

    def remove(self, pipeliner_id: str) -> None:
        """Forget one link (both contacts are gone or unlinked); committed on return."""
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                delete(links).where(
                    _in_scope(links, self._scope), links.c.pipeliner_id == pipeliner_id
                )
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
            _in_scope(failures, self._scope),
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
                        **_scope_values(self._scope),
                        side=side.value,
                        record_id=record_id,
                        **values,
                    )
                )
            else:
                conn.execute(update(failures).where(where).values(**values))
        return Failure(side, record_id, json.loads(body), reason, attempts, first, now, parked)

    def failures(self, side: Side | None = None, *, parked: bool | None = False) -> list[Failure]:
        """Pending failures of the scope (of one side if given), ordered by side and id: those
        to retry (``parked=False``, the default), the parked ones (True), or all (None)."""
        self._held()
        query = select(failures).where(_in_scope(failures, self._scope))
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
        with self._ledger._writing() as conn:
            held = set(
                conn.scalars(
                    select(failures.c.record_id).where(
                        _in_scope(failures, self._scope),
                        failures.c.side == side.value,
                        failures.c.record_id.in_([i for i, _ in records]),
                    )
                )
            )
            rows = [
                {
                    **_scope_values(self._scope),
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
                if record_id not in held
            ]
            if rows:
                conn.execute(insert(failures), rows)

    def clear_failures(self, side: Side, record_ids: Sequence[str]) -> None:
        """Records written after all: drop their pending rows (if any), in one transaction."""
        if not record_ids:
            return
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                delete(failures).where(
                    _in_scope(failures, self._scope),
                    failures.c.side == Side(side).value,
                    failures.c.record_id.in_(list(record_ids)),
                )
            )

    def clear_failure(self, side: Side, record_id: str) -> None:
        """The record was written after all: drop its pending failure (if any)."""
        self._held()
        with self._ledger._writing() as conn:
            conn.execute(
                delete(failures).where(
                    _in_scope(failures, self._scope),
                    failures.c.side == Side(side).value,
                    failures.c.record_id == record_id,
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
                        **_scope_values(self._scope),
                        "conflict_id": item.conflict_id,
                        "pipeliner_id": item.pipeliner_id,
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
        """The scope's conflicts, newest first: not restored yet (default), restored, or all."""
        self._held()
        query = select(conflicts).where(_in_scope(conflicts, self._scope))
        if restored is not None:
            column = conflicts.c.restored_at
            query = query.where(column.is_not(None) if restored else column.is_(None))
        query = query.order_by(conflicts.c.decided_at.desc(), conflicts.c.conflict_id)
        with self._ledger._reading() as conn:
            return [
                LostValue(
                    conflict_id=row.conflict_id,
                    pipeliner_id=row.pipeliner_id,
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
                .where(_in_scope(conflicts, self._scope), conflicts.c.conflict_id == conflict_id)
                .values(restored_at=_now())
            )

    # -- the folder ----------------------------------------------------------------------------

    def folder_binding(self) -> FolderBinding | None:
        """The Outlook folder id this scope is bound to, if it was ever resolved."""
        self._held()
        with self._ledger._reading() as conn:
            row = conn.execute(select(folders).where(_in_scope(folders, self._scope))).one_or_none()
        if row is None:
            return None
        return FolderBinding(row.bound_id, row.display_name, _utc(row.bound_at))

    def bind_folder(self, folder_id: str, display_name: str) -> FolderBinding:
        """Bind the scope to ``folder_id`` (first resolution), or note its current name."""
        self._held()
        now = _now()
        where = _in_scope(folders, self._scope)
        with self._ledger._writing() as conn:
            row = conn.execute(select(folders).where(where)).one_or_none()
            if row is None:
                conn.execute(
                    insert(folders).values(
                        **_scope_values(self._scope),
                        bound_id=folder_id,
                        display_name=display_name,
                        bound_at=now,
                        seen_at=now,
                    )
                )
                return FolderBinding(folder_id, display_name, now)
            if row.bound_id != folder_id:
                raise LedgerError(
                    f"scope {self._scope} is bound to Outlook folder {row.bound_id}, not "
                    f"{folder_id}; a different folder is a different sync"
                )
            conn.execute(
                update(folders).where(where).values(display_name=display_name, seen_at=now)
            )
            return FolderBinding(folder_id, display_name, _utc(row.bound_at))


def _id_column(side: Side) -> Column[Any]:
    return links.c.pipeliner_id if Side(side) is Side.PIPELINER else links.c.outlook_id


def _to_link(row: Row[Any]) -> Link:
    try:
        state = LinkState(row.state)
    except ValueError:
        raise LedgerError(
            f"link {row.pipeliner_id} has state {row.state!r}, unknown to this contactsync"
        ) from None
    return Link(
        pipeliner_id=row.pipeliner_id,
        outlook_id=row.outlook_id,
        agreed=json.loads(row.agreed),
        pipeliner_version=row.pipeliner_version,
        outlook_version=row.outlook_version,
        state=state,
        pinned=json.loads(row.pinned) if row.pinned else {},
    )


# --------------------------------------------------------------------------------------------
# Run locks


class _RunLock:
    """A scope's run lock. ``acquire`` fails fast with ``LedgerLocked``; never waits."""

    def __init__(self, ledger: Ledger, scope: ScopeKey, token: str) -> None:
        self.ledger = ledger
        self.scope = scope
        self.token = token

    @classmethod
    def acquire(cls, ledger: Ledger, scope: ScopeKey, holder: LockHolder) -> _RunLock:
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the lock was lost; called before every ledger operation."""

    def release(self) -> None:
        raise NotImplementedError

    @classmethod
    def _hint(cls) -> str:
        return "the lock is released as soon as that process exits."

    @classmethod
    def _refused(cls, ledger: Ledger, scope: ScopeKey) -> LedgerLocked:
        return LedgerLocked(scope, ledger._holder_or_none(scope), cls._hint())

    def _forget_holder(self) -> None:
        try:
            self.ledger._clear_holder(self.scope, self.token)
        except SQLAlchemyError as exc:  # harmless: the next holder replaces the row
            log.warning("could not clear the lock holder of scope %s: %s", self.scope, exc)


class _FileRunLock(_RunLock):
    """``flock`` on a file next to the SQLite database; the kernel frees it when we die."""

    def __init__(self, ledger: Ledger, scope: ScopeKey, token: str, fd: int) -> None:
        super().__init__(ledger, scope, token)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, ledger: Ledger, scope: ScopeKey, holder: LockHolder) -> _RunLock:
        assert ledger._db_path is not None
        directory = ledger._db_path.with_name(ledger._db_path.name + ".locks")
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / f"{_scope_digest(scope).hex()}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise cls._refused(ledger, scope) from None
        except BaseException:
            os.close(fd)
            raise
        token = str(uuid.uuid4())
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{holder.describe()}\nscope {scope}\n".encode())
            ledger._replace_holder(scope, holder, token)
        except BaseException:
            os.close(fd)  # closing the descriptor releases the flock
            raise
        return cls(ledger, scope, token, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self._forget_holder()
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __del__(self) -> None:  # a forgotten ScopeLedger must not keep its scope locked
        if self._fd is not None:
            os.close(self._fd)


class _AdvisoryRunLock(_RunLock):
    """``pg_try_advisory_lock`` on a session kept open for the run.

    PostgreSQL frees session locks when the session ends, so a killed run releases its scope as
    soon as the server notices the dropped connection.
    """

    @classmethod
    def _hint(cls) -> str:
        return "PostgreSQL releases the lock as soon as that run's database session ends."

    def __init__(self, ledger: Ledger, scope: ScopeKey, token: str, conn: Connection) -> None:
        super().__init__(ledger, scope, token)
        self._conn: Connection | None = conn

    @staticmethod
    def key(scope: ScopeKey) -> int:
        return int.from_bytes(_scope_digest(scope)[:8], "big") >> 1  # fits a signed bigint

    @classmethod
    def acquire(cls, ledger: Ledger, scope: ScopeKey, holder: LockHolder) -> _RunLock:
        # Autocommit: a session idle in a transaction for a whole run would hold back vacuum.
        conn = ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": cls.key(scope)}
            ).scalar_one()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            raise cls._refused(ledger, scope)
        token = str(uuid.uuid4())
        lock = cls(ledger, scope, token, conn)
        try:
            ledger._replace_holder(scope, holder, token)
        except BaseException:
            lock.release()
            raise
        return lock

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            self._forget_holder()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key(self.scope)})
        except SQLAlchemyError as exc:  # a dead session holds no lock any more
            log.warning("could not unlock scope %s cleanly: %s", self.scope, exc)
            conn.invalidate()
        finally:
            conn.close()


class _MemoryRunLock(_RunLock):
    """In-memory SQLite lives and dies with this process: a set in the Ledger is enough."""

    @classmethod
    def acquire(cls, ledger: Ledger, scope: ScopeKey, holder: LockHolder) -> _RunLock:
        key = _scope_digest(scope).hex()
        with ledger._memory_guard:
            if key in ledger._memory_locks:
                raise cls._refused(ledger, scope)
            ledger._memory_locks.add(key)
        token = str(uuid.uuid4())
        try:
            ledger._replace_holder(scope, holder, token)
        except BaseException:
            with ledger._memory_guard:
                ledger._memory_locks.discard(key)
            raise
        return cls(ledger, scope, token)

    def release(self) -> None:
        key = _scope_digest(self.scope).hex()
        with self.ledger._memory_guard:
            if key not in self.ledger._memory_locks:
                return
            self.ledger._memory_locks.discard(key)
        self._forget_holder()


class _TableRunLock(_RunLock):
    """A ``run_locks`` row kept fresh by a heartbeat; a row older than ``ttl`` is taken over.

    For databases without advisory locks. The primary key makes two concurrent takers collide,
    so exactly one of them wins.
    """

    ttl: ClassVar[timedelta] = timedelta(seconds=120)

    def __init__(self, ledger: Ledger, scope: ScopeKey, token: str) -> None:
        super().__init__(ledger, scope, token)
        self._stop = threading.Event()
        self._lost = False
        self._last_beat = _now()
        self._thread = threading.Thread(
            target=self._beat, name=f"ledger-heartbeat-{scope}", daemon=True
        )

    @classmethod
    def acquire(cls, ledger: Ledger, scope: ScopeKey, holder: LockHolder) -> _RunLock:
        token = str(uuid.uuid4())
        now = _now()
        try:
            with ledger._writing() as conn:
                found = ledger._read_holder(conn, scope)
                if found is not None:
                    if found[2] > now - cls.ttl:
                        raise LedgerLocked(scope, found[0], cls._hint())
                    log.warning(
                        "taking over the stale run lock of scope %s (%s)",
                        scope,
                        found[0].describe(),
                    )
                    conn.execute(
                        delete(run_locks).where(
                            run_locks.c.lock_key == _scope_digest(scope).hex(),
                            run_locks.c.token == found[1],
                        )
                    )
                ledger._write_holder(conn, scope, holder, token)
        except IntegrityError:  # another run inserted its row first
            raise LedgerLocked(scope, ledger._holder_or_none(scope), cls._hint()) from None
        lock = cls(ledger, scope, token)
        lock._thread.start()
        return lock

    @classmethod
    def _hint(cls) -> str:
        seconds = cls.ttl.total_seconds()
        return f"the lock of a run that died expires {seconds:g} s after its last heartbeat."

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl.total_seconds() / 4):
            try:
                with self.ledger._writing() as conn:
                    result = conn.execute(
                        update(run_locks)
                        .where(
                            run_locks.c.lock_key == _scope_digest(self.scope).hex(),
                            run_locks.c.token == self.token,
                        )
                        .values(heartbeat_at=_now())
                    )
                if result.rowcount == 0:
                    self._lost = True
                    return
                self._last_beat = _now()
            except SQLAlchemyError as exc:  # keep trying; check() notices when it is too late
                log.warning("run lock heartbeat of scope %s failed: %s", self.scope, exc)

    def check(self) -> None:
        if self._lost or _now() - self._last_beat > self.ttl:
            raise LedgerError(
                f"this run lost the run lock of ledger scope {self.scope} (no heartbeat within "
                f"{self.ttl.total_seconds():g} s, so another run may have taken over); "
                "stop this run and start it again"
            )

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._forget_holder()


def _lock_class_for(dialect: str, db_path: Path | None) -> type[_RunLock]:
    if dialect == "sqlite":
        return _FileRunLock if db_path is not None else _MemoryRunLock
    if dialect == "postgresql":
        return _AdvisoryRunLock
    return _TableRunLock
