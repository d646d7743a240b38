"""The run lock of a ledger scope: one run of a scope at a time, never a scope locked out.

How the run lock is held, so that a killed run never locks its user out:

* SQLite file: ``flock`` on ``<database>.locks/<sha256 of the scope>.lock``. The kernel releases
  it when the holder exits, however it dies. The lock files are never deleted (deleting a lock
  file lets two runs lock two different inodes).
* PostgreSQL: ``pg_try_advisory_lock`` on a connection kept open for the run; the server releases
  it when that session ends, including when the client is killed.
* In-memory SQLite: a lock inside the ``Ledger`` object (the database dies with the process).
* Any other database: a ``run_locks`` row refreshed by a heartbeat thread every
  ``_TableRunLock.ttl / 4``; a row whose heartbeat is older than ``_TableRunLock.ttl``
  (120 s) belongs to a dead run and is taken over. This assumes the hosts' clocks agree to well
  within the TTL.

The ``run_locks`` table also tells a refused run who holds the lock (host, pid, owner, since).
Nothing secret is ever stored: no settings, no tokens, and the URL's password is never logged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from contactsync.sync.ledger_tables import (
    LedgerError,
    _now,
    _scope_digest,
    _scope_values,
    _utc,
    run_locks,
)
from contactsync.sync.link import ScopeKey

if TYPE_CHECKING:
    from contactsync.sync.ledger import Ledger

log = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------------------------
# Who holds a lock (informational, except for _TableRunLock)


def _write_holder(
    ledger: Ledger, conn: Connection, scope: ScopeKey, holder: LockHolder, token: str
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


def _replace_holder(ledger: Ledger, scope: ScopeKey, holder: LockHolder, token: str) -> None:
    with ledger._writing() as conn:
        conn.execute(delete(run_locks).where(run_locks.c.lock_key == _scope_digest(scope).hex()))
        _write_holder(ledger, conn, scope, holder, token)


def _read_holder(
    ledger: Ledger, conn: Connection, scope: ScopeKey
) -> tuple[LockHolder, str, datetime] | None:
    row = conn.execute(
        select(run_locks).where(run_locks.c.lock_key == _scope_digest(scope).hex())
    ).one_or_none()
    if row is None:
        return None
    holder = LockHolder(row.host, row.pid, row.owner, _utc(row.acquired_at))
    return holder, row.token, _utc(row.heartbeat_at)


def _holder_or_none(ledger: Ledger, scope: ScopeKey) -> LockHolder | None:
    try:
        with ledger._reading() as conn:
            found = _read_holder(ledger, conn, scope)
    except SQLAlchemyError:
        return None
    return found[0] if found else None


def _clear_holder(ledger: Ledger, scope: ScopeKey, token: str) -> None:
    with ledger._writing() as conn:
        conn.execute(
            delete(run_locks).where(
                run_locks.c.lock_key == _scope_digest(scope).hex(), run_locks.c.token == token
            )
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
        return LedgerLocked(scope, _holder_or_none(ledger, scope), cls._hint())

    def _forget_holder(self) -> None:
        try:
            _clear_holder(self.ledger, self.scope, self.token)
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
            _replace_holder(ledger, scope, holder, token)
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
            _replace_holder(ledger, scope, holder, token)
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
            _replace_holder(ledger, scope, holder, token)
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
                found = _read_holder(ledger, conn, scope)
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
                _write_holder(ledger, conn, scope, holder, token)
        except IntegrityError:  # another run inserted its row first
            raise LedgerLocked(scope, _holder_or_none(ledger, scope), cls._hint()) from None
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
