"""The users of a Pipeliner space and the space's sync settings: who syncs what, into which folder.

The product's flow: an administrator enables the Office 365 contact sync for the space (stores
the Pipeliner API keys and the Microsoft app registration), then each user activates their own
sync (Microsoft sign-in, folder, sync type and option), later configures or deactivates it.

Both live in two tables of the ledger's database (the same SQLAlchemy URL: a SQLite file locally,
PostgreSQL for shared deployments), so one URL tells every process of a deployment everything
but the secrets. Nothing secret is stored here: the API password and the client secret come from
the environment or a secrets file (``contactsync.ops.space_secrets``) whose *path* is recorded.

A deactivation only flips ``active``: the user's links (ledger), Meltano state (same state
suffix) and Outlook folder stay, so a re-activation resumes where the sync stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Final, Self

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from contactsync.pipeliner.scope import SyncScope
from contactsync.sync.ledger import _WRITE, Ledger  # same database, same engine set-up (WAL, 0600)

__all__ = [
    "JOBS",
    "NotEnabled",
    "Registry",
    "RegistryError",
    "RunRecord",
    "SpaceConfig",
    "UnknownUser",
    "UserSync",
    "state_suffix_for",
]

#: The Meltano job of each sync type (meltano.yml's jobs).
JOBS: Final = {
    "two_way_your_contacts": "two-way-your-contacts",
    "one_way_your_contacts": "one-way-your-contacts",
    "one_way_all_contacts": "one-way-all-contacts",
}

_SPACE_ROW: Final = "space"  # one space per registry: the row's fixed key
_INIT: Final = int.from_bytes(hashlib.sha256(b"contactsync.users.init").digest()[:8], "big") >> 1


class RegistryError(Exception):
    """The registry cannot do what was asked; the message says what to do."""


class NotEnabled(RegistryError):
    """No administrator has enabled the sync for the space yet."""

    def __init__(self) -> None:
        super().__init__(
            "the Office 365 contact sync is not enabled for this Pipeliner space yet: an "
            "administrator must run `contactsync enable` first (it stores the space's Pipeliner "
            "API keys and the Microsoft app registration)"
        )


class UnknownUser(RegistryError):
    """No sync was ever activated for that e-mail."""

    def __init__(self, email: str) -> None:
        super().__init__(
            f"{email} has no contact sync: activate it first with "
            f"`contactsync activate --user {email} ...`"
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalize_email(email: str) -> str:
    """E-mails are the users' keys: trimmed and lower-cased, and checked to look like one."""
    value = (email or "").strip().lower()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise RegistryError(f"--user {email!r} is not an e-mail address (e.g. alex@contoso.com)")
    return value


def state_suffix_for(email: str) -> str:
    """The Meltano state-id suffix of a user: readable, stable, safe as a file name."""
    return re.sub(r"[^a-z0-9._-]+", "_", normalize_email(email))


@dataclass(frozen=True)
class SpaceConfig:
    """What `contactsync enable` stores: where the two services are, without the secrets."""

    service_url: str
    space_id: str
    api_username: str
    authority: str
    client_id: str
    graph_url: str = "https://graph.microsoft.com"
    ca_bundle: str | None = None
    app_only: bool = False  # Graph with the app's client secret: no user signs in
    secrets_file: str | None = None  # where the secrets are, when not in the environment
    enabled_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RunRecord:
    """The outcome of a user's last run, as `contactsync status` shows it."""

    started_at: datetime
    finished_at: datetime
    status: str  # "ok" or "failed"
    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # per leg
    error: str | None = None


@dataclass(frozen=True)
class UserSync:
    """One user's sync settings and last outcome."""

    email: str
    sync_type: str
    sync_option: str | None
    folder_id: str
    folder_name: str
    mailbox: str
    token_cache: str | None  # None with app-only sign-in
    pipeliner_user_id: str
    state_suffix: str
    active: bool = True
    activated_at: datetime | None = None
    updated_at: datetime | None = None
    deactivated_at: datetime | None = None
    last_run: RunRecord | None = None

    def __post_init__(self) -> None:
        SyncScope.parse(self.sync_type, self.sync_option)  # raises ValueError naming the value

    @property
    def job(self) -> str:
        return JOBS[self.sync_type]


_metadata = MetaData()

space_table = Table(
    "contactsync_space",
    _metadata,
    Column("key", String(16), primary_key=True),
    Column("service_url", Text, nullable=False),
    Column("space_id", String(64), nullable=False),
    Column("api_username", Text, nullable=False),
    Column("authority", Text, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("graph_url", Text, nullable=False),
    Column("ca_bundle", Text, nullable=True),
    Column("app_only", Boolean, nullable=False),
    Column("secrets_file", Text, nullable=True),
    Column("enabled_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

users_table = Table(
    "contactsync_users",
    _metadata,
    Column("email", String(320), primary_key=True),
    Column("active", Boolean, nullable=False),
    Column("sync_type", String(32), nullable=False),
    Column("sync_option", String(32), nullable=True),
    Column("folder_id", String(512), nullable=False),
    Column("folder_name", Text, nullable=False),
    Column("mailbox", String(320), nullable=False),
    Column("token_cache", Text, nullable=True),
    Column("pipeliner_user_id", String(64), nullable=False),
    Column("state_suffix", String(320), nullable=False),
    Column("activated_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deactivated_at", DateTime(timezone=True), nullable=True),
    Column("last_run_started_at", DateTime(timezone=True), nullable=True),
    Column("last_run_finished_at", DateTime(timezone=True), nullable=True),
    Column("last_run_status", String(16), nullable=True),
    Column("last_run_counts", Text, nullable=True),  # JSON: {leg: {counter: n}}
    Column("last_run_error", Text, nullable=True),
)

_USER_FIELDS: Final = tuple(f.name for f in fields(UserSync) if f.name != "last_run")


class Registry:
    """The space config and the users' syncs, in the database at ``url`` (the ledger's)."""

    def __init__(self, url: str | None) -> None:
        self._ledger = Ledger(url)
        self._ready = False

    @property
    def url(self) -> str:
        """The URL with its password masked (safe to print)."""
        return self._ledger.url

    def close(self) -> None:
        self._ledger.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Connection]:
        try:
            with self._ledger.engine.connect() as conn:
                if write or not self._ready:  # SQLite: BEGIN IMMEDIATE (see ledger): writers
                    conn.execution_options(**{_WRITE: True})  # queue instead of failing
                with conn.begin():
                    if not self._ready:
                        if conn.dialect.name == "postgresql":  # first runs must not race
                            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _INIT})
                        _metadata.create_all(conn)
                        self._ready = True
                    yield conn
        except SQLAlchemyError as exc:
            raise RegistryError(f"cannot use the registry at {self.url}: {exc}") from exc

    # -- the space -----------------------------------------------------------------------

    def space(self) -> SpaceConfig | None:
        with self._tx() as conn:
            row = conn.execute(select(space_table)).one_or_none()
        if row is None:
            return None
        values = {k: v for k, v in row._mapping.items() if k != "key"}
        for name in ("enabled_at", "updated_at"):
            values[name] = _utc(values[name])
        return SpaceConfig(**values)

    def require_space(self) -> SpaceConfig:
        """The space config, or `NotEnabled`: nobody activates before the administrator."""
        space = self.space()
        if space is None:
            raise NotEnabled()
        return space

    def enable(self, config: SpaceConfig) -> SpaceConfig:
        """Store (or update) the space config. Refuses to move active users to another space."""
        now = _now()
        with self._tx(write=True) as conn:
            old = conn.execute(select(space_table)).one_or_none()
            if old is not None and old.space_id != config.space_id:
                users = conn.execute(select(users_table.c.email)).scalars().all()
                if users:
                    raise RegistryError(
                        f"this registry belongs to Pipeliner space {old.space_id} and has "
                        f"{len(users)} user(s); a registry serves one space: use another "
                        "database (--db) for space " + config.space_id
                    )
            stored = replace(config, enabled_at=old.enabled_at if old else now, updated_at=now)
            values = {k: v for k, v in asdict(stored).items()}
            conn.execute(delete(space_table))
            conn.execute(insert(space_table).values(key=_SPACE_ROW, **values))
        return stored

    # -- users ---------------------------------------------------------------------------

    def users(self) -> list[UserSync]:
        with self._tx() as conn:
            rows = conn.execute(select(users_table).order_by(users_table.c.email)).all()
        return [_user_of(row._mapping) for row in rows]

    def get(self, email: str) -> UserSync | None:
        key = normalize_email(email)
        with self._tx() as conn:
            row = conn.execute(select(users_table).where(users_table.c.email == key)).one_or_none()
        return _user_of(row._mapping) if row is not None else None

    def require(self, email: str) -> UserSync:
        found = self.get(email)
        if found is None:
            raise UnknownUser(normalize_email(email))
        return found

    def save(self, user: UserSync) -> UserSync:
        """Insert or update a user's settings (their last run is kept as it is)."""
        now = _now()
        user = replace(
            user,
            email=normalize_email(user.email),
            activated_at=user.activated_at or now,
            updated_at=now,
        )
        values = {name: getattr(user, name) for name in _USER_FIELDS}
        with self._tx(write=True) as conn:
            exists = conn.execute(
                select(users_table.c.email).where(users_table.c.email == user.email)
            ).one_or_none()
            if exists is None:
                conn.execute(insert(users_table).values(**values))
            else:
                conn.execute(
                    users_table.update().where(users_table.c.email == user.email).values(**values)
                )
        return user

    def record_run(self, email: str, run: RunRecord) -> None:
        """Remember a run's outcome (counts per leg, first error) for `contactsync status`."""
        with self._tx(write=True) as conn:
            conn.execute(
                users_table.update()
                .where(users_table.c.email == normalize_email(email))
                .values(
                    last_run_started_at=run.started_at,
                    last_run_finished_at=run.finished_at,
                    last_run_status=run.status,
                    last_run_counts=json.dumps(run.counts, sort_keys=True),
                    last_run_error=run.error,
                )
            )


def _user_of(row: Mapping[str, Any]) -> UserSync:
    values = {name: row[name] for name in _USER_FIELDS}
    for name in ("activated_at", "updated_at", "deactivated_at"):
        values[name] = _utc(values[name])
    last = None
    if row["last_run_status"] is not None:
        last = RunRecord(
            started_at=_utc(row["last_run_started_at"]) or _now(),
            finished_at=_utc(row["last_run_finished_at"]) or _now(),
            status=row["last_run_status"],
            counts=json.loads(row["last_run_counts"] or "{}"),
            error=row["last_run_error"],
        )
    return UserSync(**values, last_run=last)
