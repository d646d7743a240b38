"""The ledger's tables (see ``SCHEMA_VERSION``), the errors every part of the ledger raises, and
the small helpers its store (``contactsync.sync.ledger``) and its run locks
(``contactsync.sync.locks``) share."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    text,
)

from contactsync.sync.link import Partition

#: Version of the table layout below, stored in ``ledger_meta`` so that a later release can
#: migrate an old file and an old release refuses a file written by a newer one.
#: 2: links.pinned, failures.parked_at, the conflicts and folders tables (migrated from 1).
#: 3: the sides named by role: links.crm_id/book_id/crm_version/book_version, conflicts.crm_id,
#:    state ``restore_book``, sides ``crm``/``book``; deletes held for the mass-delete guard in
#:    their own table, no longer among the failures (migrated from 2, see ``ledger_history``).
SCHEMA_VERSION: Final = 3

_CHUNK: Final = 500  # ids per IN (...) query and links per page: far below every bind limit
#: A fixed name, not the module path: every release must compute the same lock keys.
_LOCK_NAMESPACE: Final = b"contactsync.ledger.scope\x00"


# --------------------------------------------------------------------------------------------
# Errors and value types


class LedgerError(Exception):
    """The ledger cannot be used as asked; the message says why and what to do."""


class LedgerConflict(LedgerError):
    """A write would give one address-book contact two CRM partners in the same partition."""


# --------------------------------------------------------------------------------------------
# Tables

#: Address-book ids run to ~150 characters; bounded so that every database can index them.
_ID = String(512)
_PARTITION: Final = ("user_id", "space_id", "mailbox", "folder_id")

metadata = MetaData()


def _partition_columns() -> list[Column[str]]:
    return [Column(name, _ID, nullable=False) for name in _PARTITION]


links = Table(
    "contactsync_links",
    metadata,
    *_partition_columns(),
    Column("crm_id", _ID, nullable=False),
    Column("book_id", _ID, nullable=True),  # None while the address-book copy is owed a restore
    Column("agreed", Text, nullable=False),  # JSON text, identical on every database
    Column("crm_version", Text, nullable=True),
    Column("book_version", Text, nullable=True),
    Column("state", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("pinned", Text, nullable=True),  # JSON text; see Link.pinned (schema 2)
    PrimaryKeyConstraint(*_PARTITION, "crm_id", name="pk_links"),
    # NULLs are distinct in unique constraints on SQLite and PostgreSQL: many links may wait
    # for a restore at once, but no address-book contact is ever linked twice in a partition.
    UniqueConstraint(*_PARTITION, "book_id", name="uq_links_book_id"),
)

failures = Table(
    "contactsync_failures",
    metadata,
    *_partition_columns(),
    Column("side", String(16), nullable=False),
    Column("record_id", _ID, nullable=False),
    Column("payload", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    # Set when the record was refused for its data too often: not retried until it changes.
    Column("parked_at", DateTime(timezone=True), nullable=True),  # schema 2
    PrimaryKeyConstraint(*_PARTITION, "side", "record_id", name="pk_failures"),
)

#: Deletes a run holds until its end for the mass-delete guard (schema 3): durable, since the
#: tap's state may move past the tombstone before the run ends. Not failures: nothing went wrong.
held_deletes = Table(
    "contactsync_held_deletes",
    metadata,
    *_partition_columns(),
    Column("side", String(16), nullable=False),
    Column("record_id", _ID, nullable=False),
    Column("payload", Text, nullable=False),
    Column("held_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint(*_PARTITION, "side", "record_id", name="pk_held_deletes"),
)

#: Columns added to existing tables since schema 1, migrated by ALTER TABLE.
_ADDED_COLUMNS: Final = (("pinned", links), ("parked_at", failures))

conflicts = Table(
    "contactsync_conflicts",
    metadata,
    *_partition_columns(),
    Column("conflict_id", String(36), nullable=False),
    Column("crm_id", _ID, nullable=False),
    Column("field", String(64), nullable=False),
    Column("kept_side", String(16), nullable=False),
    Column("kept_value", Text, nullable=True),
    Column("lost_value", Text, nullable=True),
    Column("policy", String(32), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("restored_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint(*_PARTITION, "conflict_id", name="pk_conflicts"),
)

folders = Table(
    "contactsync_folders",
    metadata,
    *_partition_columns(),
    Column("bound_id", _ID, nullable=False),
    Column("display_name", Text, nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint(*_PARTITION, name="pk_folders"),
)

run_locks = Table(
    "contactsync_run_locks",
    metadata,
    Column("lock_key", String(64), primary_key=True),  # sha256 hex of the partition
    *_partition_columns(),
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
    "book_id",
    "agreed",
    "crm_version",
    "book_version",
    "state",
    "updated_at",
    "pinned",
)

# SQLite (3.24+) and PostgreSQL share this upsert. Written as text because SQLAlchemy cannot
# cache its ON CONFLICT constructs: compiling one per put cost more than the commit.
_UPSERT_LINKS: Final = text(
    f"INSERT INTO {links.name} ({', '.join(c.name for c in links.c)}) "
    f"VALUES ({', '.join(':' + c.name for c in links.c)}) "
    f"ON CONFLICT ({', '.join([*_PARTITION, 'crm_id'])}) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _LINK_UPDATABLE)
).bindparams(*(bindparam(c.name, type_=c.type) for c in links.c))


#: Pending work inserted unless the record already has a row (which keeps its payload and
#: attempts): one statement, no read first (SQLite 3.24+ and PostgreSQL, like the upsert above).
_INSERT_PENDING: Final = text(
    f"INSERT INTO {failures.name} ({', '.join(c.name for c in failures.c)}) "
    f"VALUES ({', '.join(':' + c.name for c in failures.c)}) "
    f"ON CONFLICT ({', '.join([*_PARTITION, 'side', 'record_id'])}) DO NOTHING"
).bindparams(*(bindparam(c.name, type_=c.type) for c in failures.c))


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


def _partition_digest(partition: Partition) -> bytes:
    # JSON of the four parts, not str(partition): "a@b/c/d" could be split more than one way.
    parts = [partition.user, partition.space, partition.mailbox, partition.folder]
    return hashlib.sha256(_LOCK_NAMESPACE + json.dumps(parts).encode()).digest()


def _partition_values(partition: Partition) -> dict[str, str]:
    return {
        "user_id": partition.user,
        "space_id": partition.space,
        "mailbox": partition.mailbox,
        "folder_id": partition.folder,
    }


def _in_partition(table: Table, partition: Partition) -> ColumnElement[bool]:
    return and_(*(table.c[name] == value for name, value in _partition_values(partition).items()))
