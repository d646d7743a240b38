"""A typed client of the Pipeliner API v100 for the contacts sync, over :mod:`contactsync.http`.

Everything here follows the vendor's OpenAPI (``specs/pipeliner-contacts-openapi.json``) and
DESIGN §5:

- ``{service_url}/api/v100/rest/spaces/{space_id}/entities/...``, HTTP Basic with the space's
  application keys (``api_username`` / ``api_password``);
- list routes page with ``first`` (at most 100) and ``after=page_info.end_cursor`` until
  ``page_info.has_next_page`` is false; ``filter[field]=v&filter-op[field]=op``, ``order-by``,
  ``include-deleted=true`` and ``expand=a,b`` select and shape the rows;
- ``Contacts/batch-modify`` (items with ``id`` update, items without create), ``batch-delete`` and
  ``batch-restore`` take ``rollback-method=1`` so that one bad item does not roll back the others;
  their ``data`` holds, per input item and in input order, the uuid or an ``Error`` object.

Errors are :class:`PipelinerError` subclasses whose messages say what to check; they never
contain the application password (``contactsync.http`` keeps headers out of its messages, and
this module scrubs the password from anything it raises, should a server ever echo it).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn, Self
from urllib.parse import quote

import requests
from requests.auth import HTTPBasicAuth

from contactsync.http import (
    BudgetExceeded,
    HttpClient,
    HttpError,
    HttpPolicy,
    HttpStats,
    HttpStatusError,
    OriginRefused,
    TransportError,
    ca_bundle_setting,
    redact_url,
    service_base_url,
)
from contactsync.pipeliner.scope import SyncUser

log = logging.getLogger("contactsync.pipeliner.api")

__all__ = [
    "API_PATH",
    "BATCH_SIZE",
    "MAX_PAGE_SIZE",
    "VALIDATION_LEVEL",
    "BatchItemResult",
    "PipelinerAuthError",
    "PipelinerClient",
    "PipelinerConfigError",
    "PipelinerError",
    "PipelinerNotFound",
    "PipelinerSettings",
    "ResolvedUser",
    "format_timestamp",
    "normalize_service_url",
    "parse_timestamp",
]

#: Path of the REST API below the service URL (the space id follows).
API_PATH = "/api/v100/rest/spaces"
#: ``first`` may not exceed this (OpenAPI: "Max: 100").
MAX_PAGE_SIZE = 100
#: Items per batch request. The spec states no limit for the batch routes; we keep to the page
#: size limit so a batch never carries more than one page of rows.
BATCH_SIZE = 100

#: ``validation-level`` of every write: 2, "validate only changed fields in the actual request"
#: (API parameters page, developers.pipelinersales.com/api-docs/core-api-concepts/api-parameters).
#: The default, 0, validates every field of the entity, so in a space with required fields we
#: never write (custom fields, say) every write of a contact missing one would fail; with 2 a
#: value we write is still checked, so we never store what Pipeliner would refuse from a user.
VALIDATION_LEVEL = 2

_API_SUFFIX = re.compile(r"/api(?:/v\d+(?:/.*)?)?/*$", re.IGNORECASE)
_SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~-]*")
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


# --------------------------------------------------------------------------- errors


class PipelinerError(Exception):
    """Any failure talking to Pipeliner. ``status`` and ``error`` (the API's Error object, if
    any) let callers branch; the message says what to check."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = dict(error) if error else None


class PipelinerAuthError(PipelinerError):
    """401: the application keys were rejected."""


class PipelinerNotFound(PipelinerError):
    """404: the space (on a list route) or one entity does not exist."""


class PipelinerConfigError(PipelinerError, ValueError):
    """A setting cannot be used; the message names the setting and says what to do."""


# --------------------------------------------------------------------------- settings


def normalize_service_url(url: str) -> str:
    """The Pipeliner service URL as ``https://host[:port][/prefix]``, without trailing slash.

    Accepts what people paste: a trailing slash, or the whole API URL
    (``…/api/v100/rest/spaces/<space>/entities/Contacts``), whose API part is dropped. ``https``
    is required; plain ``http`` only for loopback hosts (127.0.0.0/8, ::1, localhost), which is
    what local emulators use. Raises :class:`PipelinerConfigError` naming ``service_url``.
    """
    example = "e.g. https://eu-central.api.pipelinersales.com"
    if not isinstance(url, str) or not url.strip():
        raise PipelinerConfigError(
            f"service_url is empty: set it to your space's Pipeliner API host ({example}; "
            "Pipeliner shows it next to the application keys)"
        )
    return service_base_url(
        url,
        setting="service_url",
        example=example,
        carries="the application keys",
        api_suffix=_API_SUFFIX,
        error=PipelinerConfigError,
        credentials_go="api_username / api_password",
    )


@dataclass(frozen=True)
class PipelinerSettings:
    """Where and as whom to reach Pipeliner. Validated and normalised on construction."""

    service_url: str
    space_id: str
    api_username: str
    api_password: str = field(repr=False)
    ca_bundle: str | None = None
    page_size: int = MAX_PAGE_SIZE
    policy: HttpPolicy = field(default_factory=HttpPolicy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "service_url", normalize_service_url(self.service_url))
        space_id = _required(self.space_id, "space_id", "the space id from Pipeliner's API page")
        if not _SPACE_ID.fullmatch(space_id):
            raise PipelinerConfigError(
                f"space_id {space_id!r} is not a Pipeliner space id (letters, digits, '-', '_', "
                "'.'); copy it from the API URL shown next to the application keys"
            )
        object.__setattr__(self, "space_id", space_id)
        object.__setattr__(
            self,
            "api_username",
            _required(self.api_username, "api_username", "the application key's username"),
        )
        if not isinstance(self.api_password, str) or not self.api_password:
            raise PipelinerConfigError(
                "api_password is empty: set it to the application key's password"
            )
        object.__setattr__(
            self, "ca_bundle", ca_bundle_setting(self.ca_bundle, PipelinerConfigError)
        )
        size = self.page_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
            raise PipelinerConfigError(
                f"page_size must be an integer from 1 to {MAX_PAGE_SIZE} (the API's maximum), "
                f"got {size!r}"
            )
        if not isinstance(self.policy, HttpPolicy):
            raise PipelinerConfigError(
                f"policy must be an HttpPolicy, got {type(self.policy).__name__}"
            )

    @property
    def api_url(self) -> str:
        """``{service_url}/api/v100/rest/spaces/{space_id}``."""
        return f"{self.service_url}{API_PATH}/{quote(self.space_id, safe='')}"


def _required(value: object, name: str, what: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise PipelinerConfigError(f"{name} is empty: set it to {what}")
    return text


# --------------------------------------------------------------------------- timestamps


def parse_timestamp(value: str) -> datetime:
    """A Pipeliner date-time as an aware UTC datetime.

    Accepts what the API and its spec show: ``2019-01-01T00:00:00`` (no zone: UTC), with ``Z``
    or an offset, with a space instead of ``T`` and any number of fractional digits (beyond
    microseconds they are truncated).
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f"not a Pipeliner timestamp: {value!r}")
    match = _ISO.fullmatch(value.strip())
    if not match:
        raise ValueError(f"not a Pipeliner timestamp: {value!r}")
    fraction = (match["f"] or "")[:6].ljust(6, "0")
    tz = match["tz"] or "Z"
    if tz in ("Z", "z"):
        offset = "+00:00"
    else:
        digits = tz[1:].replace(":", "")
        offset = f"{tz[0]}{digits[:2]}:{digits[2:4] or '00'}"
    text = f"{match['date']}T{match['h']}:{match['m']}:{match['s'] or '00'}.{fraction}{offset}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"not a Pipeliner timestamp: {value!r} ({exc})") from None


def format_timestamp(dt: datetime) -> str:
    """``dt`` as the API's filters take it: ISO 8601 in UTC with a ``Z``
    (``2024-05-01T12:30:00Z``, microseconds kept when present). Naive means UTC."""
    if not isinstance(dt, datetime):
        raise TypeError(f"format_timestamp needs a datetime, got {type(dt).__name__}")
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    spec = "seconds" if dt.microsecond == 0 else "microseconds"
    return dt.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BatchItemResult:
    """The outcome of one batch item. ``index`` is its position in the caller's input."""

    index: int
    ok: bool
    id: str | None
    error: str | None
    #: The HTTP status of a failed item (its Error object's ``http_status``), when known.
    status: int | None = None


@dataclass(frozen=True)
class ResolvedUser:
    """The syncing user: their Client row, their MasterRight and the scope view of both."""

    client: Mapping[str, Any]
    role: Mapping[str, Any]
    sync_user: SyncUser


# --------------------------------------------------------------------------- client


class PipelinerClient:
    """The Pipeliner operations the sync needs. Thread-safe; use as a context manager.

    ``http`` may be given (tests, shared pools); it is then not closed by :meth:`close`.
    """

    CONTACT_EXPAND: tuple[str, ...] = ("primary_account", "sharing_clients", "sharing_units")

    def __init__(self, settings: PipelinerSettings, *, http: HttpClient | None = None) -> None:
        if not isinstance(settings, PipelinerSettings):
            raise TypeError("settings must be a PipelinerSettings")
        self.settings = settings
        self._owns_http = http is None
        self._http = http or HttpClient(
            settings.api_url,
            settings.policy,
            verify=settings.ca_bundle or True,
            auth=HTTPBasicAuth(settings.api_username, settings.api_password),
            headers={"Accept": "application/json"},
        )
        self._accounts: dict[str, str | None] = {}
        #: Whether the last :meth:`iter_contacts` iteration read to the end (see there).
        self.last_read_complete = False
        self._accounts_lock = threading.Lock()

    # ------------------------------------------------------------- lifecycle

    @property
    def stats(self) -> HttpStats:
        """Request counts of the underlying :class:`~contactsync.http.HttpClient`."""
        return self._http.stats

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------- contacts: read

    def iter_contacts(
        self,
        *,
        modified_since: datetime | None = None,
        include_deleted: bool = True,
        expand: Sequence[str] = CONTACT_EXPAND,
    ) -> Iterator[dict[str, Any]]:
        """Every contact (``modified >= modified_since`` if given), oldest change first.

        One request per ``page_size`` contacts, ordered by ``modified``. No explicit ``id``
        tie-break is sent: Pipeliner's cursors are keyset cursors that already carry the row id
        after the sort value (the spec's ``end_cursor`` example is base64 of
        ``["05", "<uuid>"]``), so equal timestamps cannot make rows repeat or vanish.

        Deleted contacts are included (``is_deleted`` true) unless ``include_deleted`` is False,
        so that deletions reach the other side.

        Each id is yielded once. A contact modified while we page moves behind the cursor and
        comes again, newer, on a later page. Skipping that repeat and reading on would lose its
        new version: rows after it (changed even later) raise the caller's bookmark (the largest
        ``modified`` it saw) above the repeat's ``modified``, so the next ``gte`` run would not
        see it either. So the iteration *ends* at such a repeat: everything not yielded yet was
        changed after paging began, sorts at or after the last ``modified`` yielded, and is read
        by the next incremental run. An exact repeat (same ``modified``) is just skipped.
        ``last_read_complete`` tells whether the last iteration read to the end.
        """
        params: dict[str, Any] = {
            "first": self.settings.page_size,
            "order-by": "modified",
        }
        if include_deleted:
            params["include-deleted"] = "true"
        if expand:
            params["expand"] = _csv(expand)
        if modified_since is not None:
            params["filter[modified]"] = format_timestamp(modified_since)
            params["filter-op[modified]"] = "gte"
        self.last_read_complete = False
        seen: dict[str, Any] = {}  # id -> modified as yielded
        for row in self._list("Contacts", params):
            contact_id = str(row.get("id") or "")
            if not contact_id:
                raise PipelinerError(
                    f"Pipeliner returned a contact without an id from {self._where('Contacts')}"
                )
            if contact_id in seen:
                if seen[contact_id] == row.get("modified"):
                    continue
                log.info(
                    "contact %s changed while paging (modified %s); stopping this read here, "
                    "the next incremental read (modified >= the last yielded) continues",
                    contact_id,
                    row.get("modified"),
                )
                return
            seen[contact_id] = row.get("modified")
            yield row
        self.last_read_complete = True

    def get_contact(
        self, contact_id: str, *, expand: Sequence[str] = CONTACT_EXPAND
    ) -> dict[str, Any] | None:
        """The contact as it is now (``is_deleted`` tells a deleted one), None if unknown.

        Read through the list route (``filter[id]`` + ``include-deleted=true``): the spec's
        ``GET Contacts/{id}`` takes no ``include-deleted`` and may answer 404 for a deleted
        contact, which would hide a deletion; on the list route a 404 can only mean an unknown
        space, which is then reported as such instead of as a missing contact.
        """
        return self._find_by_id("Contacts", contact_id, expand=expand, include_deleted=True)

    def get_contacts(
        self, ids: Sequence[str], *, expand: Sequence[str] = CONTACT_EXPAND
    ) -> dict[str, dict[str, Any]]:
        """Current copies of ``ids`` by id; unknown ids are absent.

        The API documents no multi-id filter, so these are concurrent single GETs (at most
        ``policy.max_concurrency`` at a time).
        """
        wanted = list(dict.fromkeys(str(i) for i in ids if i))
        if not wanted:
            return {}
        workers = max(1, min(self.settings.policy.max_concurrency, len(wanted)))
        if workers == 1:
            found = [self.get_contact(i, expand=expand) for i in wanted]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="pipeliner-get") as pool:
                found = list(pool.map(lambda i: self.get_contact(i, expand=expand), wanted))
        return {i: row for i, row in zip(wanted, found, strict=True) if row is not None}

    def find_contacts(
        self,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        limit: int = 10,
        expand: Sequence[str] = CONTACT_EXPAND,
    ) -> list[dict[str, Any]]:
        """Live contacts matching case-insensitively, at most ``limit``.

        ``email`` matches any of ``email1``..``email3`` (three requests, merged); names are
        combined with it (all given filters must match).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        names = {"first_name": first_name, "last_name": last_name}
        name_filters = {k: v.strip() for k, v in names.items() if v and v.strip()}
        email = email.strip() if email else None
        if not email and not name_filters:
            raise ValueError("find_contacts needs an email or a first_name / last_name")
        base: dict[str, Any] = {"first": min(limit, MAX_PAGE_SIZE)}
        if expand:
            base["expand"] = _csv(expand)
        for key, value in name_filters.items():
            base[f"filter[{key}]"], base[f"filter-op[{key}]"] = value, "ieq"
        queries = (
            [{**base, f"filter[{k}]": email, f"filter-op[{k}]": "ieq"} for k in _EMAIL_FIELDS]
            if email
            else [base]
        )
        found: dict[str, dict[str, Any]] = {}
        for params in queries:
            for row in self._list("Contacts", params):
                if row.get("is_deleted"):
                    continue
                found.setdefault(str(row.get("id")), row)
                if len(found) >= limit:
                    return list(found.values())
        return list(found.values())

    # ------------------------------------------------------------- users

    def resolve_user(self, *, user_id: str | None = None, email: str | None = None) -> ResolvedUser:
        """The syncing user by Client id or e-mail (case-insensitive), with role and units.

        Raises :class:`PipelinerConfigError` naming ``user_id`` / ``user_email`` when the user
        does not exist, is deleted, or (by e-mail) is ambiguous.
        """
        user_id = user_id.strip() if user_id else None
        email = email.strip() if email else None
        if not user_id and not email:
            raise PipelinerConfigError(
                "set user_id (the Pipeliner Client id) or user_email of the syncing user"
            )
        if user_id and not _UUID.fullmatch(user_id):
            raise PipelinerConfigError(
                f"user_id {user_id!r} is not a Pipeliner Client id (a uuid such as "
                "c0000000-0000-4000-8000-000000000001); or set user_email instead"
            )
        if user_id:
            client = self._find_by_id("Clients", user_id, include_deleted=False)
            if client is None or client.get("is_deleted"):
                raise PipelinerConfigError(
                    f"user_id {user_id!r}: no such Pipeliner user in space "
                    f"{self.settings.space_id}; use the id of an active Client (user), or set "
                    "user_email instead"
                )
            if email and str(client.get("email") or "").casefold() != email.casefold():
                raise PipelinerConfigError(
                    f"user_id {user_id!r} belongs to {client.get('email')!r}, not to user_email "
                    f"{email!r}; set only one of them, or make them agree"
                )
        else:
            assert email is not None
            params = {"filter[email]": email, "filter-op[email]": "ieq", "first": 2}
            matches = [
                row for row in self._list("Clients", params, limit=2) if not row.get("is_deleted")
            ]
            if not matches:
                raise PipelinerConfigError(
                    f"user_email {email!r}: no active Pipeliner user with this e-mail in space "
                    f"{self.settings.space_id}; check the address or set user_id"
                )
            if len(matches) > 1:
                raise PipelinerConfigError(
                    f"user_email {email!r} matches several Pipeliner users in space "
                    f"{self.settings.space_id}; set user_id to the right Client id"
                )
            client = matches[0]
        role_id = client.get("master_right_id")
        if not role_id:
            raise PipelinerError(
                f"Pipeliner user {client.get('id')} has no master_right_id (role); assign the "
                "user a role in Pipeliner"
            )
        role = self._get_entity("MasterRights", str(role_id))
        if role is None:
            raise PipelinerError(
                f"the role (MasterRight {role_id}) of Pipeliner user {client.get('id')} was not "
                "found; check the user's role in Pipeliner"
            )
        units = self._sales_units(client)
        try:
            sync_user = SyncUser.from_api(client, role, units)
        except ValueError as exc:
            raise PipelinerError(
                f"cannot read the scope of Pipeliner user {client.get('id')}: {exc}"
            ) from exc
        return ResolvedUser(client=client, role=role, sync_user=sync_user)

    def get_client(self, client_id: str) -> dict[str, Any] | None:
        """A Pipeliner user (Client) by id, deleted ones included; None if unknown."""
        return self._find_by_id("Clients", client_id, include_deleted=True)

    def _sales_units(self, client: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The space's sales units (id, parent_id) for the unit tree.

        The pruned spec has no SalesUnits route; the real API does (``/entities/SalesUnits``),
        so it is tried first. If it is not served (404, the space itself being known by now),
        the tree is built from the units the Client names, without parents: directions that
        reach parent or child units then see only the user's own units (narrower, never wider).
        """
        try:
            units = list(self._list("SalesUnits", {"first": MAX_PAGE_SIZE}))
        except PipelinerError as exc:
            if exc.status not in (400, 403, 404, 405):
                raise
            log.warning(
                "the sales units of space %s could not be read (%s); the scope uses the user's "
                "own units only, without parent or child units",
                self.settings.space_id,
                exc.status,
            )
            units = []
        if units:
            return units
        ids: dict[str, None] = {}
        if client.get("default_unit_id"):
            ids[str(client["default_unit_id"])] = None
        for key in ("unit_member_ids", "unit_manager_ids"):
            for unit in client.get(key) or ():
                ids[str(unit)] = None
        return [{"id": unit, "parent_id": None} for unit in ids]

    # ------------------------------------------------------------- accounts

    def find_accounts(self, names: Iterable[str]) -> dict[str, str]:
        """``casefold(name) -> account id`` for the names that match exactly one live account.

        Case-insensitive (``filter-op=ieq``), one request per distinct name, cached for the
        life of this client. A name shared by several live accounts is left out: we never
        guess which company a contact belongs to (the caller falls back to
        ``quick_account_name``).
        """
        wanted: dict[str, str] = {}
        for name in names:
            if not isinstance(name, str) or not name.strip():
                continue
            wanted.setdefault(_account_key(name), name.strip())
        with self._accounts_lock:
            missing = [(k, v) for k, v in wanted.items() if k not in self._accounts]
        for key, name in missing:
            account_id = self._lookup_account(key, name)
            with self._accounts_lock:
                self._accounts[key] = account_id
        with self._accounts_lock:
            return {k: v for k in wanted if (v := self._accounts.get(k)) is not None}

    def _lookup_account(self, key: str, name: str) -> str | None:
        params = {"filter[name]": name, "filter-op[name]": "ieq", "first": 3}
        ids = {
            str(row["id"])
            for row in self._list("Accounts", params, limit=3)
            if row.get("id")
            and not row.get("is_deleted")
            and _account_key(str(row.get("name") or "")) == key
        }
        return ids.pop() if len(ids) == 1 else None

    def set_primary_account(
        self, contact_id: str, account_id: str, *, position: str | None = None
    ) -> None:
        """Make ``account_id`` the contact's primary account.

        Nothing is sent if that relation exists and is primary already. The spec has no update
        route for ContactAccountRelations, so an existing non-primary relation cannot be
        promoted: that raises :class:`PipelinerError` (the caller keeps ``quick_account_name``).
        Otherwise the relation is created with ``is_primary`` true and ``position`` (the
        contact's job title at that account, which Pipeliner then shows as its job title).
        """
        if not contact_id or not account_id:
            raise ValueError("set_primary_account needs a contact_id and an account_id")
        params = {
            "filter[contact_id]": contact_id,
            "filter[account_id]": account_id,
            "first": 10,
        }
        existing = [
            row
            for row in self._list("ContactAccountRelations", params, limit=10)
            if not row.get("is_deleted")
            and str(row.get("contact_id")) == contact_id
            and str(row.get("account_id")) == account_id
        ]
        if any(row.get("is_primary") for row in existing):
            return
        if existing:
            raise PipelinerError(
                f"contact {contact_id} is already related to account {account_id} as a "
                "non-primary account, and the API offers no way to update that relation; make "
                "it primary in Pipeliner"
            )
        body: dict[str, Any] = {
            "account_id": account_id,
            "contact_id": contact_id,
            "is_primary": True,
        }
        if position:
            body["position"] = position
        params = {"validation-level": VALIDATION_LEVEL}
        self._call("POST", "entities/ContactAccountRelations", params=params, json=body)

    # ------------------------------------------------------------- contacts: write

    def batch_modify(self, items: Sequence[Mapping[str, Any]]) -> list[BatchItemResult]:
        """Create (no ``id``) or update (with ``id``) contacts, in chunks of up to 100.

        One result per item, in input order. A create needs ``owner_id``: items without it are
        not sent and come back as errors, as do the items the API rejects
        (``rollback-method=1`` keeps the others). A chunk of updates only is retried after a
        5xx or a dropped connection; a chunk with a create is not (it could create twice).

        When a whole request fails (after the retries the HTTP policy allows):
        :class:`PipelinerError` is raised if it was the first request (nothing was written).
        After an earlier chunk succeeded, raising would lose that chunk's results (the ids of
        the contacts it created), so instead the failed chunk's items and all later ones come
        back as errors and no further request is sent.
        """
        results: dict[int, BatchItemResult] = {}
        send: list[tuple[int, dict[str, Any]]] = []
        for index, item in enumerate(items):
            problem = _item_problem(item)
            if problem:
                results[index] = BatchItemResult(index, False, _item_id(item), problem)
            else:
                body = dict(item)
                if body.get("id") is None:
                    body.pop("id", None)  # an explicit None means "create"
                send.append((index, body))
        sent = [(index, body, body.get("id")) for index, body in send]
        for result in self._send_chunks("batch-modify", sent):
            results[result.index] = result
        return [results[i] for i in range(len(results))]

    def batch_delete(self, ids: Sequence[str]) -> list[BatchItemResult]:
        """Delete contacts (soft: ``batch_restore`` brings them back); one result per id."""
        return self._batch_ids("batch-delete", ids)

    def batch_restore(self, ids: Sequence[str]) -> list[BatchItemResult]:
        """Restore deleted contacts; one result per id."""
        return self._batch_ids("batch-restore", ids)

    def _batch_ids(self, route: str, ids: Sequence[str]) -> list[BatchItemResult]:
        if isinstance(ids, str):
            raise TypeError(f"{route} takes a sequence of ids, not a single string")
        results: list[BatchItemResult] = []
        send: list[tuple[int, str]] = []
        for index, value in enumerate(ids):
            if isinstance(value, str) and value.strip():
                send.append((index, value.strip()))
            else:
                results.append(BatchItemResult(index, False, None, f"not a contact id: {value!r}"))
        results += self._send_chunks(route, [(index, i, i) for index, i in send])
        return sorted(results, key=lambda r: r.index)

    def _send_chunks(
        self, route: str, items: Sequence[tuple[int, Any, str | None]]
    ) -> list[BatchItemResult]:
        """POST ``(index, body item, known id)`` in chunks; see :meth:`batch_modify` on failures."""
        results: list[BatchItemResult] = []
        for start in range(0, len(items), BATCH_SIZE):
            chunk = items[start : start + BATCH_SIZE]
            # Updates, deletes and restores can be repeated; a create cannot (it could repeat).
            creates = route == "batch-modify" and any(known is None for _, _, known in chunk)
            try:
                outcome = self._batch(route, [body for _, body, _ in chunk], idempotent=not creates)
            except PipelinerError as exc:
                if start == 0:
                    raise
                doubt = " (a new contact in it may or may not have been created)" if creates else ""
                failed = f"the {route} request failed{doubt}: {exc}"
                skipped = f"not sent, an earlier {route} request failed: {exc}"
                for number, (index, _body, known) in enumerate(items[start:]):
                    error = failed if number < len(chunk) else skipped
                    results.append(BatchItemResult(index, False, known, error))
                log.warning("%s: %d item(s) not written: %s", route, len(items) - start, exc)
                return results
            for (index, _body, known), value in zip(chunk, outcome, strict=True):
                results.append(_item_result(index, value, known))
        return results

    def _batch(self, route: str, body: list[Any], *, idempotent: bool) -> list[Any]:
        path = f"entities/Contacts/{route}"
        params = {"rollback-method": 1, "validation-level": VALIDATION_LEVEL}
        payload = self._call("POST", path, params=params, json=body, idempotent=idempotent)
        data = payload.get("data")
        if not isinstance(data, list) or len(data) != len(body):
            got = f"{len(data)} results" if isinstance(data, list) else repr(type(data).__name__)
            raise PipelinerError(
                f"POST {self._where(path)} sent {len(body)} items but got {got} back; cannot "
                "tell which items were saved, check them in Pipeliner"
            )
        return data

    # ------------------------------------------------------------- plumbing

    def _where(self, path: str) -> str:
        return f"{redact_url(self.settings.api_url)}/{path}"

    def _find_by_id(
        self,
        entity: str,
        entity_id: str,
        *,
        expand: Sequence[str] = (),
        include_deleted: bool = False,
    ) -> dict[str, Any] | None:
        """One row by id through the list route (``filter[id]=<id>``), None if there is none.

        Every Pipeliner id is a uuid (spec: ``format: uuid``): anything else names no row and
        is answered None without a request.
        """
        if not isinstance(entity_id, str) or not entity_id.strip():
            raise ValueError(f"{entity} id must be a non-empty string, got {entity_id!r}")
        if not _UUID.fullmatch(entity_id.strip()):
            return None
        params: dict[str, Any] = {"filter[id]": entity_id.strip(), "first": 1}
        if include_deleted:
            params["include-deleted"] = "true"
        if expand:
            params["expand"] = _csv(expand)
        for row in self._list(entity, params, limit=1):
            return row
        return None

    def _get_entity(
        self, entity: str, entity_id: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        if not entity_id or not isinstance(entity_id, str):
            raise ValueError(f"{entity} id must be a non-empty string, got {entity_id!r}")
        path = f"entities/{entity}/{quote(entity_id.strip(), safe='')}"
        payload = self._call("GET", path, params=params, not_found_ok=True)
        if payload is None:
            return None
        data = payload.get("data")
        if not isinstance(data, dict):
            raise PipelinerError(f"GET {self._where(path)} returned no entity object")
        return data

    def _list(
        self, entity: str, params: Mapping[str, Any], *, limit: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Rows of a list route across cursor pages (stop after ``limit`` rows if given)."""
        path = f"entities/{entity}"
        query = dict(params)
        cursors: set[str] = set()
        count = 0
        while True:
            payload = self._call("GET", path, params=query, list_route=True)
            rows = payload.get("data")
            if not isinstance(rows, list):
                raise PipelinerError(f"GET {self._where(path)} returned no data list")
            for row in rows:
                if not isinstance(row, dict):
                    raise PipelinerError(f"GET {self._where(path)} returned a non-object row")
                yield row
                count += 1
                if limit is not None and count >= limit:
                    return
            info = payload.get("page_info") or {}
            if not info.get("has_next_page"):
                return
            cursor = info.get("end_cursor")
            if not cursor or cursor in cursors:
                raise PipelinerError(
                    f"GET {self._where(path)}: the API says there is a next page but gave "
                    f"{'no' if not cursor else 'a repeated'} end_cursor; stopped paging to "
                    "avoid a loop"
                )
            cursors.add(cursor)
            query["after"] = cursor

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        not_found_ok: bool = False,
        list_route: bool = False,
    ) -> Any:
        """One request; the JSON body, or None for a 404 when ``not_found_ok``."""
        try:
            response = self._http.request(
                method,
                path,
                params=params,
                json=json,
                idempotent=idempotent,
                expected=(404,) if not_found_ok else (),
            )
        except HttpStatusError as exc:
            self._raise_status(exc, method, path, list_route=list_route)
        except (TransportError, BudgetExceeded) as exc:
            hint = (
                "Check ca_bundle (the CA certificates that signed the server's certificate; "
                "empty for the system store) and service_url."
                if "TLS failed" in str(exc)
                else "Check service_url (the API host of your space) and the network path to it."
            )
            raise self._error(
                PipelinerError,
                f"could not reach Pipeliner at {self.settings.service_url}: {exc} {hint}",
            ) from exc
        except OriginRefused as exc:
            raise self._error(PipelinerError, f"{exc}") from exc
        except HttpError as exc:  # pragma: no cover - every HttpError subclass is handled above
            raise self._error(PipelinerError, str(exc)) from exc
        if not_found_ok and response.status_code == 404:
            return None
        try:
            payload = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise self._error(
                PipelinerError,
                f"{method} {self._where(path)} answered {response.status_code} with {kind}, not "
                "JSON; check that service_url is the Pipeliner API host of your space",
                status=response.status_code,
            ) from None
        if not isinstance(payload, dict):
            raise self._error(
                PipelinerError, f"{method} {self._where(path)} returned a non-object body"
            )
        if payload.get("success") is False:
            raise self._error(
                PipelinerError,
                f"{method} {self._where(path)} failed: {_describe_error(payload)}",
                status=response.status_code,
                error=payload,
            )
        return payload

    def _raise_status(
        self, exc: HttpStatusError, method: str, path: str, *, list_route: bool
    ) -> NoReturn:
        status = exc.status
        body = _json_or_none(exc.response)
        pipeliner_error = isinstance(body, dict) and any(
            body.get(k) not in (None, "") for k in ("code", "name", "message")
        )
        detail = _describe_error(body) if pipeliner_error else exc.body_excerpt
        detail = f" ({detail})" if detail else ""
        space = self.settings.space_id
        where = f"{method} {self._where(path)}"
        if status == 401:
            raise self._error(
                PipelinerAuthError,
                f"Pipeliner rejected the application keys (api_username/api_password) for space "
                f"{space} at {self.settings.service_url}{detail}. Check api_username and "
                "api_password against the space's application keys (Pipeliner: "
                "Administration → Units, Users & Roles → Applications → Show API Access), and "
                "that they belong to this space.",
                status=status,
                error=body,
            ) from exc
        if status == 403:
            raise self._error(
                PipelinerError,
                f"{where}: the application keys of space {space} lack permission for this "
                f"(403){detail}",
                status=status,
                error=body,
            ) from exc
        if status == 404 and list_route:
            raise self._error(
                PipelinerNotFound,
                f"{where} answered 404{detail}: space_id {space!r} does not exist at "
                f"{self.settings.service_url} (or this route does not). Check space_id and "
                "that service_url is the host of that space's region.",
                status=status,
                error=body,
            ) from exc
        if status == 404:
            raise self._error(
                PipelinerNotFound, f"{where}: not found{detail}", status=status, error=body
            ) from exc
        raise self._error(PipelinerError, str(exc), status=status, error=body) from exc

    def _error(
        self,
        kind: Callable[..., PipelinerError],
        message: str,
        *,
        status: int | None = None,
        error: Any = None,
    ) -> PipelinerError:
        secret = self.settings.api_password
        if len(secret) >= 4:
            message = message.replace(secret, "***")
        return kind(message, status=status, error=error if isinstance(error, Mapping) else None)


# --------------------------------------------------------------------------- helpers

_EMAIL_FIELDS = ("email1", "email2", "email3")


def _csv(values: Sequence[str] | str) -> str:
    if isinstance(values, str):
        return values
    return ",".join(v.strip() for v in values if v and v.strip())


def _account_key(name: str) -> str:
    return name.strip().casefold()


def _item_id(item: object) -> str | None:
    if isinstance(item, Mapping) and isinstance(item.get("id"), str) and item["id"]:
        return str(item["id"])
    return None


def _item_problem(item: object) -> str | None:
    """Why an item of batch_modify cannot be sent, or None."""
    if not isinstance(item, Mapping):
        return f"not a contact object: {type(item).__name__}"
    item_id = item.get("id")
    if item_id is not None and not (isinstance(item_id, str) and item_id.strip()):
        return f"id must be a non-empty string to update a contact, got {item_id!r}"
    if item_id is None and not (isinstance(item.get("owner_id"), str) and item["owner_id"]):
        return "owner_id is required to create a contact (Pipeliner's createContactInput)"
    return None


def _item_result(index: int, value: Any, fallback_id: str | None) -> BatchItemResult:
    if isinstance(value, str):
        return BatchItemResult(index, True, value, None)
    if isinstance(value, Mapping) and value.get("success") is not False and value.get("id"):
        return BatchItemResult(index, True, str(value["id"]), None)
    if isinstance(value, Mapping):
        status = value.get("http_status")
        return BatchItemResult(
            index,
            False,
            fallback_id,
            _describe_error(value),
            status if isinstance(status, int) and not isinstance(status, bool) else None,
        )
    return BatchItemResult(index, False, fallback_id, f"unexpected batch result {value!r}")


def _describe_error(error: Mapping[str, Any]) -> str:
    """An Error object as ``"code name: message"`` (missing parts left out)."""
    head = " ".join(str(error[k]) for k in ("code", "name") if error.get(k) not in (None, ""))
    if not head and error.get("http_status") is not None:
        head = f"HTTP {error['http_status']}"
    message = str(error.get("message") or "").strip()
    if head and message:
        return f"{head}: {message}"
    return head or message or "unknown error"


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
