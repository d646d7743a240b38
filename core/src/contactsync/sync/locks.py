"""The run lock of a ledger partition: one run of a partition at a time, never a partition locked
out.

How the run lock is held, so that a killed run never locks its user out:

* SQLite file: ``flock`` on ``<database>.locks/<sha256 of the partition>.lock``. The kernel releases
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
    _partition_digest,
    _partition_values,
    _utc,
    run_locks,
)
from contactsync.sync.link import Partition

if TYPE_CHECKING:
    from contactsync.sync.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a partition's run lock, as far as the ledger knows."""

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
    """Another run of the same partition is in progress; a second one must not interleave with
    it."""

    def __init__(self, partition: Partition, holder: LockHolder | None, hint: str) -> None:
        self.partition = partition
        self.holder = holder
        who = holder.describe() if holder else "holder unknown"
        super().__init__(
            f"ledger scope {partition} is locked by another contactsync run ({who}). "
            f"Wait for the other run to finish, or stop it if it hangs: {hint}"
        )


# --------------------------------------------------------------------------------------------
# Who holds a lock (informational, except for _TableRunLock)


def _write_holder(
    ledger: Ledger, conn: Connection, partition: Partition, holder: LockHolder, token: str
) -> None:
    conn.execute(
        insert(run_locks).values(
            lock_key=_partition_digest(partition).hex(),
            **_partition_values(partition),
            token=token,
            host=holder.host[:255],
            pid=holder.pid,
            owner=holder.owner,
            acquired_at=holder.since,
            heartbeat_at=holder.since,
        )
    )


def _replace_holder(ledger: Ledger, partition: Partition, holder: LockHolder, token: str) -> None:
    with ledger._writing() as conn:
        conn.execute(
            delete(run_locks).where(run_locks.c.lock_key == _partition_digest(partition).hex())
        )
        _write_holder(ledger, conn, partition, holder, token)


def _read_holder(
    ledger: Ledger, conn: Connection, partition: Partition
) -> tuple[LockHolder, str, datetime] | None:
    row = conn.execute(
        select(run_locks).where(run_locks.c.lock_key == _partition_digest(partition).hex())
    ).one_or_none()
    if row is None:
        return None
    holder = LockHolder(row.host, row.pid, row.owner, _utc(row.acquired_at))
    return holder, row.token, _utc(row.heartbeat_at)


def _holder_or_none(ledger: Ledger, partition: Partition) -> LockHolder | None:
    try:
        with ledger._reading() as conn:
            found = _read_holder(ledger, conn, partition)
    except SQLAlchemyError:
        return None
    return found[0] if found else None


def _clear_holder(ledger: Ledger, partition: Partition, token: str) -> None:
    with ledger._writing() as conn:
        conn.execute(
            delete(run_locks).where(
                run_locks.c.lock_key == _partition_digest(partition).hex(),
                run_locks.c.token == token,
            )
        )


# --------------------------------------------------------------------------------------------
# Run locks


class _RunLock:
    """A partition's run lock. ``acquire`` fails fast with ``LedgerLocked``; never waits."""

    def __init__(self, ledger: Ledger, partition: Partition, token: str) -> None:
        self.ledger = ledger
        self.partition = partition
        self.token = token

    @classmethod
    def acquire(cls, ledger: Ledger, partition: Partition, holder: LockHolder) -> _RunLock:
        raise NotImplementedError

    def check(self) -> None:
        """Raise if the lock was lost; called before every ledger operation."""

    def release(self) -> None:
        raise NotImplementedError

    @classmethod
    def _hint(cls) -> str:
        return "the lock is released as soon as that process exits."

    @classmethod
    def _refused(cls, ledger: Ledger, partition: Partition) -> LedgerLocked:
        return LedgerLocked(partition, _holder_or_none(ledger, partition), cls._hint())

    def _forget_holder(self) -> None:
        try:
            _clear_holder(self.ledger, self.partition, self.token)
        except SQLAlchemyError as exc:  # harmless: the next holder replaces the row
            log.warning("could not clear the lock holder of scope %s: %s", self.partition, exc)


class _FileRunLock(_RunLock):
    """``flock`` on a file next to the SQLite database; the kernel frees it when we die."""

    def __init__(self, ledger: Ledger, partition: Partition, token: str, fd: int) -> None:
        super().__init__(ledger, partition, token)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, ledger: Ledger, partition: Partition, holder: LockHolder) -> _RunLock:
        assert ledger._db_path is not None
        directory = ledger._db_path.with_name(ledger._db_path.name + ".locks")
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / f"{_partition_digest(partition).hex()}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise cls._refused(ledger, partition) from None
        except BaseException:
            os.close(fd)
            raise
        token = str(uuid.uuid4())
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{holder.describe()}\nscope {partition}\n".encode())
            _replace_holder(ledger, partition, holder, token)
        except BaseException:
            os.close(fd)  # closing the descriptor releases the flock
            raise
        return cls(ledger, partition, token, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self._forget_holder()
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def __del__(self) -> None:  # a forgotten PartitionLedger must not keep its partition locked
        if self._fd is not None:
            os.close(self._fd)


class _AdvisoryRunLock(_RunLock):
    """``pg_try_advisory_lock`` on a session kept open for the run.

    PostgreSQL frees session locks when the session ends, so a killed run releases its partition as
    soon as the server notices the dropped connection.
    """

    @classmethod
    def _hint(cls) -> str:
        return "PostgreSQL releases the lock as soon as that run's database session ends."

    def __init__(self, ledger: Ledger, partition: Partition, token: str, conn: Connection) -> None:
        super().__init__(ledger, partition, token)
        self._conn: Connection | None = conn

    @staticmethod
    def key(partition: Partition) -> int:
        return int.from_bytes(_partition_digest(partition)[:8], "big") >> 1  # fits a signed bigint

    @classmethod
    def acquire(cls, ledger: Ledger, partition: Partition, holder: LockHolder) -> _RunLock:
        # Autocommit: a session idle in a transaction for a whole run would hold back vacuum.
        conn = ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": cls.key(partition)}
            ).scalar_one()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            raise cls._refused(ledger, partition)
        token = str(uuid.uuid4())
        lock = cls(ledger, partition, token, conn)
        try:
            _replace_holder(ledger, partition, holder, token)
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
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key(self.partition)})
        except SQLAlchemyError as exc:  # a dead session holds no lock any more
            log.warning("could not unlock scope %s cleanly: %s", self.partition, exc)
            conn.invalidate()
        finally:
            conn.close()


class _MemoryRunLock(_RunLock):
    """In-memory SQLite lives and dies with this process: a set in the Ledger is enough."""

    @classmethod
    def acquire(cls, ledger: Ledger, partition: Partition, holder: LockHolder) -> _RunLock:
        key = _partition_digest(partition).hex()
        with ledger._memory_guard:
            if key in ledger._memory_locks:
                raise cls._refused(ledger, partition)
            ledger._memory_locks.add(key)
        token = str(uuid.uuid4())
        try:
            _replace_holder(ledger, partition, holder, token)
        except BaseException:
            with ledger._memory_guard:
                ledger._memory_locks.discard(key)
            raise
        return cls(ledger, partition, token)

    def release(self) -> None:
        key = _partition_digest(self.partition).hex()
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

    def __init__(self, ledger: Ledger, partition: Partition, token: str) -> None:
        super().__init__(ledger, partition, token)
        self._stop = threading.Event()
        self._lost = False
        self._last_beat = _now()
        self._thread = threading.Thread(
            target=self._beat, name=f"ledger-heartbeat-{partition}", daemon=True
        )

    @classmethod
    def acquire(cls, ledger: Ledger, partition: Partition, holder: LockHolder) -> _RunLock:
        token = str(uuid.uuid4())
        now = _now()
        try:
            with ledger._writing() as conn:
                found = _read_holder(ledger, conn, partition)
                if found is not None:
                    if found[2] > now - cls.ttl:
                        raise LedgerLocked(partition, found[0], cls._hint())
                    log.warning(
                        "taking over the stale run lock of scope %s (%s)",
                        partition,
                        found[0].describe(),
                    )
                    conn.execute(
                        delete(run_locks).where(
                            run_locks.c.lock_key == _partition_digest(partition).hex(),
                            run_locks.c.token == found[1],
                        )
                    )
                _write_holder(ledger, conn, partition, holder, token)
        except IntegrityError:  # another run inserted its row first
            raise LedgerLocked(partition, _holder_or_none(ledger, partition), cls._hint()) from None
        lock = cls(ledger, partition, token)
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
                            run_locks.c.lock_key == _partition_digest(self.partition).hex(),
                            run_locks.c.token == self.token,
                        )
                        .values(heartbeat_at=_now())
                    )
                if result.rowcount == 0:
                    self._lost = True
                    return
                self._last_beat = _now()
            except SQLAlchemyError as exc:  # keep trying; check() notices when it is too late
                log.warning("run lock heartbeat of scope %s failed: %s", self.partition, exc)

    def check(self) -> None:
        if self._lost or _now() - self._last_beat > self.ttl:
            raise LedgerError(
                f"this run lost the run lock of ledger scope {self.partition} (no heartbeat within "
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
