"""A typed client of Microsoft Graph v1.0 for one personal contacts folder, over
:mod:`contactsync.http`.

What it relies on (DESIGN §5 and the Graph v1.0 documentation):

- ``{graph_url}/v1.0/me/...`` (delegated) or ``/users/{id or UPN}/...``; every request carries
  ``Authorization: Bearer <token>`` (asked from the token provider for each attempt, never
  logged) and ``Prefer: IdType="ImmutableId"`` so that contact ids survive moves.
- The default contacts folder is addressable as ``contactFolders/Contacts``; its subfolders are
  its ``childFolders``. Only these (and deeper subfolders given by id) are personal folders of
  the mailbox; a folder of another mailbox (shared, delegated) or a public folder is refused.
- Lists page with ``$top`` (at most 1000) and ``@odata.nextLink``; contacts are read with
  ``$expand=singleValueExtendedProperties($filter=id eq '…' or id eq '…')`` so that Outlook's
  "Other phone" and our Pipeliner stamp (:data:`EXPANDED_PROPERTIES`) come along.
- ``contacts/delta`` pages with ``Prefer: odata.maxpagesize`` (at most 200) and ends a round
  with ``@odata.deltaLink``; deletions come as ``{"id", "@removed"}``; an expired state token
  answers 410 (``syncStateNotFound``): the folder must be read again from scratch.
  The contact delta page documents ``$select`` only (``$expand`` is documented for *message*
  delta, not contact delta), so :meth:`GraphClient.iter_delta` asks delta only *which*
  contacts changed (``$select=id,changeKey``) and reads those contacts with the extended
  properties expanded: through ``$batch`` GETs in an incremental round, through one listing of
  the folder (1000 per request) in an initial round or a full resync.
- ``$batch`` takes at most 20 requests; each inner request has its own status, and a 429/503
  inner answer has its own ``Retry-After`` (seconds, possibly fractional). Outlook allows 4
  concurrent requests per app and mailbox, and runs up to 4 requests of a batch in parallel,
  each counting against that limit (throttling page, "Outlook service limits for JSON
  batching"): so one batch is in flight at a time, or with ``max_in_flight`` > 1 that many
  batches whose requests are ``dependsOn``-chained (run one at a time).
  :meth:`GraphClient._batches_in_flight` is the one place that decides it; the executor is
  :mod:`contactsync.outlook.batch`.
- Updates carry ``If-Match: W/"<changeKey>"``; a stale changeKey answers 412.
- Errors are ``{"error": {"code", "message"}}``; this module branches on ``code``.

Errors raised are :class:`GraphError` subclasses whose messages say what to check and never
contain a token.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn, Self
from urllib.parse import quote, urlsplit

import requests
from requests.auth import AuthBase

from contactsync.http import (
    BudgetExceeded,
    HttpClient,
    HttpPolicy,
    HttpStats,
    HttpStatusError,
    OriginRefused,
    TransportError,
    ca_bundle_setting,
    redact_url,
    service_base_url,
)
from contactsync.outlook import pacing
from contactsync.outlook.batch import BatchExecutor, _Op, _Outcome
from contactsync.outlook.graph_protocol import (
    PREFER_IMMUTABLE_ID,
    GraphAuthError,
    GraphConfigError,
    GraphError,
    GraphFolderError,
    GraphThrottled,
    SyncStateExpired,
    _auth_header,
    _describe,
    _graph_error_of,
    _json_or_none,
    _scrub,
)
from contactsync.outlook.projection import (
    EMPTY_SLOT_PROPERTY_ID,
    EXTENDED_PROPERTIES,
    PIPELINER_ID_PROPERTY_ID,
    SELECTED_PROPERTIES,
)

log = logging.getLogger("contactsync.outlook.graph_api")

__all__ = [
    "CONTACT_FIELDS",
    "DEFAULT_FOLDER_NAME",
    "DEFAULT_GRAPH_URL",
    "EXPANDED_PROPERTIES",
    "MAX_BATCH_SIZE",
    "MAX_DELTA_PAGE_SIZE",
    "MAX_IN_FLIGHT",
    "MAX_PAGE_SIZE",
    "BatchResult",
    "DeltaPage",
    "Folder",
    "GraphAuthError",
    "GraphClient",
    "GraphConfigError",
    "GraphError",
    "GraphFolderError",
    "GraphSettings",
    "GraphStats",
    "GraphThrottled",
    "Located",
    "SyncStateExpired",
    "normalize_graph_url",
]

DEFAULT_GRAPH_URL = "https://graph.microsoft.com"
API_VERSION = "v1.0"
#: The folder created when asked to and none is named.
DEFAULT_FOLDER_NAME = "Pipeliner"
#: The default contacts folder's well-known name (``contactFolders/Contacts``).
DEFAULT_FOLDER_ALIAS = "Contacts"
#: The extended properties read with every contact (Other phone, our Pipeliner stamp, our note
#: of a phone list's empty first slot).
EXPANDED_PROPERTIES: tuple[str, ...] = (
    *EXTENDED_PROPERTIES,
    PIPELINER_ID_PROPERTY_ID,
    EMPTY_SLOT_PROPERTY_ID,
)
#: Limits documented by Graph: ``$top`` of a list, ``odata.maxpagesize`` of delta, ``$batch``
#: size, and concurrent requests per app and mailbox.
MAX_PAGE_SIZE = 1000
MAX_DELTA_PAGE_SIZE = 200
MAX_BATCH_SIZE = 20
MAX_IN_FLIGHT = 4
#: ``$batch`` requests in flight per mailbox unless told otherwise: one, whose requests Graph
#: runs 4 at a time (more unordered batches at once would exceed the 4 concurrent requests).
BATCHES_IN_FLIGHT = 1
#: Contact properties read: identity, versions and the displayed name, then the field table's as
#: Graph's projection of it names them (``outlook.projection.SELECTED_PROPERTIES``).
CONTACT_FIELDS: tuple[str, ...] = (
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "parentFolderId",
    "displayName",
    *SELECTED_PROPERTIES,
)
#: What delta is asked for: which contacts changed, and their version (replays are skipped).
DELTA_FIELDS: tuple[str, ...] = ("id", "changeKey")
FOLDER_FIELDS: tuple[str, ...] = ("id", "displayName", "parentFolderId")
#: Folders listed per request (the default page is 10).
FOLDER_PAGE_SIZE = 100
#: How far up the parents of a folder given by id we look for the default folder.
MAX_FOLDER_DEPTH = 10
#: Fresh delta rounds tried in one call when the state expires while the folder is read (a
#: nextLink's skiptoken as much as a stored deltaLink: Graph keeps Outlook's state tokens in a
#: cache of bounded size, "the older delta tokens are deleted", and answers an expired one with
#: a 40X `syncStateNotFound`; concepts/delta-query-overview.md, "Token duration").
MAX_ROUND_STARTS = 3

_VERSION_SUFFIX = re.compile(r"/v1\.0(?:/.*)?$", re.IGNORECASE)
_OTHER_VERSION = re.compile(r"/(?:beta|v\d+(?:\.\d+)?)(?:/.*)?$", re.IGNORECASE)
_MAILBOX = re.compile(r"[^\s/?#\\]+")
#: Characters left readable in query values (OData syntax); everything else is %-encoded.
_QUERY_SAFE = ",()'/:$"
_SYNC_STATE_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})


# --------------------------------------------------------------------------- errors
# --------------------------------------------------------------------------- settings


def normalize_graph_url(url: str | None) -> str:
    """The Graph base URL as ``https://host[:port][/prefix]``, without ``/v1.0`` or trailing slash.

    Empty means :data:`DEFAULT_GRAPH_URL`. A pasted API URL (``…/v1.0/me/contacts``) is cut back
    to the host. ``https`` is required; plain ``http`` only for loopback hosts (local emulators).
    Raises :class:`GraphConfigError` naming ``graph_url``.
    """
    if url is None or (isinstance(url, str) and not url.strip()):
        return DEFAULT_GRAPH_URL
    example = f"e.g. {DEFAULT_GRAPH_URL}"
    if not isinstance(url, str):
        raise GraphConfigError(f"graph_url must be a string URL ({example}), got {url!r}")
    normalized = service_base_url(
        url,
        setting="graph_url",
        example=example,
        carries="access tokens",
        api_suffix=_VERSION_SUFFIX,
        error=GraphConfigError,
    )
    if _OTHER_VERSION.search(urlsplit(normalized).path):
        raise GraphConfigError(
            f"graph_url {redact_url(url.strip())!r} names another API version; this sync speaks "
            f"Graph {API_VERSION} only: give the host alone ({example})"
        )
    return normalized


def _int_setting(value: object, name: str, high: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise GraphConfigError(f"{name} must be an integer from 1 to {high} ({why}), got {value!r}")
    return value


@dataclass(frozen=True)
class GraphSettings:
    """Where and for which mailbox to reach Graph. Validated and normalised on construction.

    ``mailbox`` is ``"me"`` (delegated sign-in: the signed-in user's own mailbox) or a user id
    or UPN (app-only sign-in, ``/users/{mailbox}``).
    """

    graph_url: str = DEFAULT_GRAPH_URL
    mailbox: str = "me"
    ca_bundle: str | None = None
    page_size: int = MAX_PAGE_SIZE
    delta_page_size: int = MAX_DELTA_PAGE_SIZE
    batch_size: int = MAX_BATCH_SIZE
    #: ``$batch`` requests in flight: 1 (unordered, Graph runs 4 of its requests at once), or
    #: up to 4 ``dependsOn``-chained ones.
    max_in_flight: int = BATCHES_IN_FLIGHT
    #: Client-side budget per mailbox (:mod:`contactsync.outlook.pacing`; 0 or None: none of
    #: our own).
    requests_per_window: int | None = pacing.DEFAULT_REQUESTS_PER_WINDOW
    window_seconds: float = pacing.DEFAULT_WINDOW_SECONDS
    policy: HttpPolicy = field(default_factory=lambda: HttpPolicy(max_concurrency=MAX_IN_FLIGHT))

    def __post_init__(self) -> None:
        object.__setattr__(self, "graph_url", normalize_graph_url(self.graph_url))
        mailbox = self.mailbox.strip() if isinstance(self.mailbox, str) else ""
        if mailbox.lstrip("/").casefold() == "me":
            mailbox = "me"
        if not mailbox or not _MAILBOX.fullmatch(mailbox):
            raise GraphConfigError(
                f"mailbox {self.mailbox!r} is not usable: set it to 'me' (the signed-in user's "
                "own mailbox, with delegated sign-in) or to the user's id or user principal "
                "name (e.g. alex@contoso.com, with app-only sign-in)"
            )
        object.__setattr__(self, "mailbox", mailbox)
        object.__setattr__(self, "ca_bundle", ca_bundle_setting(self.ca_bundle, GraphConfigError))
        _int_setting(self.page_size, "page_size", MAX_PAGE_SIZE, "Graph's maximum $top")
        _int_setting(
            self.delta_page_size,
            "delta_page_size",
            MAX_DELTA_PAGE_SIZE,
            "Graph's maximum odata.maxpagesize for contact delta",
        )
        _int_setting(self.batch_size, "batch_size", MAX_BATCH_SIZE, "Graph's $batch limit")
        _int_setting(
            self.max_in_flight,
            "max_in_flight",
            MAX_IN_FLIGHT,
            "Graph allows 4 concurrent requests per app and mailbox",
        )
        limit = self.requests_per_window
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise GraphConfigError(
                f"graph_requests_per_window must be an integer, 0 or more, got {limit!r}"
            )
        seconds = self.window_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise GraphConfigError(f"graph_window_seconds must be positive, got {seconds!r}")
        if not isinstance(self.policy, HttpPolicy):
            raise GraphConfigError(
                f"policy must be an HttpPolicy, got {type(self.policy).__name__}"
            )

    @property
    def api_url(self) -> str:
        """``{graph_url}/v1.0``."""
        return f"{self.graph_url}/{API_VERSION}"

    @property
    def user_path(self) -> str:
        """``/me`` or ``/users/{mailbox}`` (relative to :attr:`api_url`)."""
        if self.mailbox == "me":
            return "/me"
        return f"/users/{quote(self.mailbox, safe='@')}"

    def describe_mailbox(self) -> str:
        if self.mailbox == "me":
            return "the signed-in user's mailbox (mailbox: me)"
        return f"mailbox {self.mailbox}"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Folder:
    """A personal contacts folder of the configured mailbox."""

    id: str
    display_name: str
    parent_folder_id: str | None


@dataclass(frozen=True)
class Located:
    """A contact found by id in the mailbox, and the personal contacts folder it is in now."""

    contact: dict[str, Any]
    folder: Folder


@dataclass(frozen=True)
class DeltaPage:
    """One page of a delta round.

    ``contacts`` are complete (extended properties expanded), each id at most once per page
    and never also in ``removed``. ``delta_link`` is set on the last page of the round only:
    store it to start the next round there. ``full_resync`` is True on the pages of a round
    restarted after the stored delta link expired (410): the caller must then treat linked
    contacts absent from those pages as deleted.
    """

    contacts: list[dict[str, Any]]
    removed: list[str]
    delta_link: str | None
    full_resync: bool


@dataclass(frozen=True)
class BatchResult:
    """The outcome of one write. ``index`` is its position in the caller's input; ``status``
    is the inner HTTP status (0 when the request got no answer or was not sent); ``body`` the
    answer's JSON (the created or updated contact); ``error`` is ``"code: message"``."""

    index: int
    ok: bool
    status: int
    id: str | None
    body: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class GraphStats(HttpStats):
    """:class:`~contactsync.http.HttpStats` plus what happened inside ``$batch`` requests."""

    #: Inner requests answered 429.
    inner_throttled: int = 0
    #: Inner requests sent again (after 429/503/5xx or a refreshed token).
    inner_retries: int = 0
    #: Calls of the token provider's ``refresh()`` after a 401.
    token_refreshes: int = 0
    #: ``$batch`` requests sent.
    batches: int = 0


# --------------------------------------------------------------------------- internals


class _ProviderAuth(AuthBase):
    """``Authorization: Bearer <token>`` from the provider, fresh for every attempt."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {_token(self._provider)}"
        return request


def _token(provider: Any) -> str:
    try:
        token = provider.token()
    except GraphError:
        raise
    except Exception as exc:
        raise GraphAuthError(
            f"could not get an access token for Microsoft Graph: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(token, str) or not token:
        raise GraphAuthError("the token provider returned no access token; sign in again")
    return token


def _query(params: Mapping[str, Any]) -> str:
    return "&".join(f"{k}={quote(str(v), safe=_QUERY_SAFE)}" for k, v in params.items())


def _segment(value: str) -> str:
    """An id as one path segment. ``=`` (base64 padding of Outlook ids) is a legal path
    character and stays as it is."""
    return quote(value, safe="=")


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _expand_clause() -> str:
    wanted = " or ".join(f"id eq {_odata_string(p)}" for p in EXPANDED_PROPERTIES)
    return f"singleValueExtendedProperties($filter={wanted})"


def _if_match(change_key: str) -> str:
    key = change_key.strip()
    if key.startswith(('W/"', '"')):
        return key
    return f'W/"{key}"'


def _digest(*parts: str | None) -> bytes:
    text = "\x00".join("" if p is None else p for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _folder_of(data: Any) -> Folder | None:
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str) or not data["id"]:
        return None
    parent = data.get("parentFolderId")
    return Folder(
        id=data["id"],
        display_name=str(data.get("displayName") or ""),
        parent_folder_id=parent if isinstance(parent, str) and parent else None,
    )


# --------------------------------------------------------------------------- client


class GraphClient(BatchExecutor):
    """The Graph operations the sync needs, for one mailbox. Thread-safe; a context manager.

    ``token_provider`` has ``token()`` (the current access token, refreshed by the provider when
    it knows it expired) and ``refresh()`` (get a new one now). ``http`` may be given (tests,
    shared pools): an :class:`~contactsync.http.HttpClient` on ``{graph_url}/v1.0`` without
    auth of its own (the bearer header is then added to each request); it is not closed by
    :meth:`close`.
    """

    def __init__(
        self,
        settings: GraphSettings,
        token_provider: Any,
        *,
        http: HttpClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(settings, GraphSettings):
            raise TypeError("settings must be a GraphSettings")
        if not callable(getattr(token_provider, "token", None)) or not callable(
            getattr(token_provider, "refresh", None)
        ):
            raise TypeError("token_provider must have token() and refresh() methods")
        self.settings = settings
        self._provider = token_provider
        self._owns_http = http is None
        #: With an injected HttpClient the token goes in each request's headers; our own
        #: client asks the provider at every attempt (a retry picks up a refreshed token).
        self._header_auth = http is not None
        self._http = http or HttpClient(
            settings.api_url,
            settings.policy,
            verify=settings.ca_bundle or True,
            auth=_ProviderAuth(token_provider),
            headers={"Accept": "application/json"},
        )
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        #: $batch pacing after throttling (see ``_execute``): requests per batch, and no new
        #: batch before ``_gate`` (this client's clock).
        self._pace_size = 0
        self._gate = 0.0
        #: Personal contacts folders by id, as :meth:`personal_folder` found them (None: none).
        self._personal: dict[str, Folder | None] = {}
        self._pool: ThreadPoolExecutor | None = None
        #: Graph's documented budget and concurrency, paced before sending (shared by every
        #: client of the mailbox in the process; a private one under an injected clock).
        limits = (settings.requests_per_window, settings.window_seconds, MAX_IN_FLIGHT)
        if clock is time.monotonic and sleep is time.sleep:
            self._pacer = pacing.mailbox_pacer(settings.api_url, settings.mailbox, *limits)
        else:
            self._pacer = pacing.MailboxPacer(*limits, clock=clock, sleep=sleep)

    # ------------------------------------------------------------- lifecycle

    @property
    def stats(self) -> GraphStats:
        """Request counts of the underlying HTTP client plus the ``$batch`` inner counters."""
        base = self._http.stats
        with self._lock:
            counts = dict(self._counts)
        return GraphStats(
            attempts=base.attempts,
            retries=base.retries,
            throttled=base.throttled,
            redirects=base.redirects,
            transport_errors=base.transport_errors,
            by_status=base.by_status,
            inner_throttled=counts.get("inner_throttled", 0),
            inner_retries=counts.get("inner_retries", 0),
            token_refreshes=counts.get("token_refreshes", 0),
            batches=counts.get("batches", 0),
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._owns_http:
            self._http.close()

    def _batch_pool(self) -> ThreadPoolExecutor:
        """The client's threads for ``$batch`` requests, started on first use and kept: the
        engine writes a run in many small calls, each of which started its own pool."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=MAX_IN_FLIGHT, thread_name_prefix="graph-batch"
                )
            return self._pool

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------- folders

    def resolve_folder(self, folder: str | None, *, create: bool = False) -> Folder:
        """The personal contacts folder named by the ``folder`` setting: an id, or a display name.

        Names are matched case-insensitively among the mailbox's default folder (also known as
        ``Contacts``) and its subfolders; two matches are ambiguous. An id may also name a
        deeper subfolder. With ``create``, a name found nowhere becomes a new subfolder of the
        default folder (empty means :data:`DEFAULT_FOLDER_NAME`). Raises
        :class:`GraphFolderError` otherwise, and for any folder that is not a personal folder of
        the configured mailbox.
        """
        wanted = folder.strip() if isinstance(folder, str) else ""
        wanted = wanted or DEFAULT_FOLDER_NAME
        default = self._default_folder(wanted)
        try:
            children = self._child_folders(default)
        except GraphAuthError as exc:
            if exc.status == 403:
                raise self._mailbox_denied(exc, wanted) from exc
            raise
        for candidate in (default, *children):
            if candidate.id == wanted:
                return candidate
        matches = self._by_name(wanted, default, children)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches)
            raise GraphFolderError(
                f"folder {wanted!r} is ambiguous: {len(matches)} personal contact folders of "
                f"{self.settings.describe_mailbox()} match it (ids {ids}). Set `folder` to the "
                "id of the one to sync, or rename one of them in Outlook."
            )
        by_id = self._folder_by_id(wanted, default)
        if by_id is not None:
            return by_id
        if create:
            return self._create_folder(wanted, default)
        names = ", ".join(repr(f.display_name) for f in (default, *children))
        raise GraphFolderError(
            f"folder {wanted!r} was not found among the personal contact folders of "
            f"{self.settings.describe_mailbox()} (available: {names}; 'Contacts' names the "
            "default folder; shared, delegated and public folders are not supported). Set "
            "`folder` to one of these names or to a folder id, or set `create_folder` to true "
            "to have the sync create it."
        )

    def _by_name(self, wanted: str, default: Folder, children: Sequence[Folder]) -> list[Folder]:
        key = wanted.casefold()
        found: list[Folder] = []
        if key in (DEFAULT_FOLDER_ALIAS.casefold(), default.display_name.casefold()):
            found.append(default)
        found += [c for c in children if c.display_name.casefold() == key]
        return found

    def _mailbox_denied(self, exc: GraphError, wanted: str) -> GraphError:
        """A 403 reading the mailbox's own folders: not its owner, or no permission."""
        if self.settings.mailbox != "me":
            return self._not_personal(
                wanted,
                f"Graph answered 403 {exc.code or ''} for {self.settings.mailbox}'s folders: the "
                "signed-in account is not that mailbox's owner (with app-only sign-in, the app "
                "lacks Contacts.ReadWrite for it)",
            )
        return GraphAuthError(
            f"Microsoft Graph denied access to the contacts of "
            f"{self.settings.describe_mailbox()} (403 {exc.code or ''}). Check that the app has "
            "the Contacts.ReadWrite permission (consented) for the signed-in user.",
            status=403,
            code=exc.code,
        )

    def _default_folder(self, wanted: str) -> Folder:
        # No $select: Graph documents OData options here, but the sandbox refuses them.
        path = f"{self.settings.user_path}/contactFolders/{DEFAULT_FOLDER_ALIAS}"
        try:
            response = self._request("GET", path)
        except GraphAuthError as exc:
            if exc.status == 403:
                raise self._mailbox_denied(exc, wanted) from exc
            raise
        except GraphError as exc:
            if exc.status == 404:
                raise GraphConfigError(
                    f"{self.settings.describe_mailbox()} was not found or has no mailbox "
                    f"({exc.code or '404'}). Check `mailbox`: 'me' for the signed-in user, or "
                    "the id or user principal name of a user with an Exchange Online mailbox.",
                    status=404,
                    code=exc.code,
                ) from exc
            raise
        found = _folder_of(_json_or_none(response))
        if found is None:
            raise GraphError(f"GET {path} returned no contact folder")
        return found

    def _child_folders(self, default: Folder) -> list[Folder]:
        path = f"{self.settings.user_path}/contactFolders/{_segment(default.id)}/childFolders"
        query = _query({"$select": ",".join(FOLDER_FIELDS), "$top": FOLDER_PAGE_SIZE})
        folders: list[Folder] = []
        for row in self._paged(f"{path}?{query}"):
            found = _folder_of(row)
            if found is not None:
                folders.append(found)
        return folders

    def _get_folder(self, folder_id: str) -> tuple[Folder | None, int, str | None]:
        """A folder by id: (folder, 200, None) or (None, status, code) for 400/403/404."""
        path = f"{self.settings.user_path}/contactFolders/{_segment(folder_id)}"
        response = self._request("GET", path, expected=(400, 403, 404))
        body = _json_or_none(response)
        if response.status_code >= 400:
            code, _ = _graph_error_of(body)
            return None, response.status_code, code
        return _folder_of(body), response.status_code, None

    def _folder_by_id(self, wanted: str, default: Folder) -> Folder | None:
        """``wanted`` as a folder id, checked to be under the default folder; None if no such id."""
        found, status, code = self._get_folder(wanted)
        if status == 403 or (code or "").casefold() == "erroraccessdenied":
            raise self._not_personal(wanted, f"Graph answered 403 {code or ''}".strip())
        if found is None:
            return None
        if found.id == default.id:
            return default
        seen = {found.id}
        current = found
        for _ in range(MAX_FOLDER_DEPTH):
            parent = current.parent_folder_id
            if parent == default.id:
                return found
            if not parent or parent in seen:
                break
            seen.add(parent)
            current, status, code = self._get_folder(parent)
            if current is None:
                break
        raise self._not_personal(
            found.display_name or wanted,
            "it is not the default contacts folder of this mailbox nor one of its subfolders",
        )

    def _not_personal(self, name: str, why: str) -> GraphFolderError:
        mailbox = self.settings.mailbox
        return GraphFolderError(
            f"folder {name!r} is not a personal folder of {mailbox}; shared, delegated and "
            f"public folders are not supported ({why}). Set `folder` to the default contacts "
            f"folder ('Contacts') or one of its subfolders in {mailbox}'s own mailbox, or to a "
            "new name with `create_folder` true.",
            status=403,
        )

    def _create_folder(self, name: str, default: Folder) -> Folder:
        path = f"{self.settings.user_path}/contactFolders/{_segment(default.id)}/childFolders"
        response = self._request(
            "POST", path, json={"displayName": name}, expected=(400, 409), idempotent=False
        )
        body = _json_or_none(response)
        if response.status_code < 300:
            created = _folder_of(body)
            if created is None:
                raise GraphError(f"POST {path} created a folder but returned no id")
            log.info("created contacts folder %r in %s", name, self.settings.mailbox)
            return created
        code, message = _graph_error_of(body)
        if (code or "").casefold() == "errorfolderexists":
            # Someone (another run) created it meanwhile: use theirs.
            matches = self._by_name(name, default, self._child_folders(default))
            if len(matches) == 1:
                return matches[0]
        raise GraphFolderError(
            f"could not create the contacts folder {name!r} in "
            f"{self.settings.describe_mailbox()}: "
            f"{_describe(code, message, response.status_code)}. Set `folder` to an existing "
            "folder, or choose another name.",
            status=response.status_code,
            code=code,
        )

    # ------------------------------------------------------------- reading

    def list_contacts(self, folder: Folder) -> Iterator[dict[str, Any]]:
        """Every contact of the folder, ``page_size`` per request, extended properties expanded."""
        for page in self._list_pages(folder):
            yield from page

    def _contacts_path(self, folder: Folder) -> str:
        return f"{self.settings.user_path}/contactFolders/{_segment(folder.id)}/contacts"

    def _contact_query(self, **extra: Any) -> dict[str, Any]:
        return {"$select": ",".join(CONTACT_FIELDS), **extra, "$expand": _expand_clause()}

    def _list_pages(self, folder: Folder) -> Iterator[list[dict[str, Any]]]:
        query = _query(self._contact_query(**{"$top": self.settings.page_size}))
        yield from self._paged_pages(f"{self._contacts_path(folder)}?{query}")

    def get_contacts(self, folder: Folder, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The folder's contacts with these ids (extended properties expanded), by id.

        Read through ``$batch`` GETs; ids that do not exist in the folder (404) are absent.
        Raises :class:`GraphError` if any other read fails.
        """
        read = self._read_by_id("get_contacts", self._contacts_path(folder), ids, absent=(404,))
        return {contact_id: body for contact_id, body in read.items() if body is not None}

    def locate_contacts(self, ids: Sequence[str]) -> dict[str, Located]:
        """Where the mailbox's contacts with these ids are now, by id: each found one with the
        personal contacts folder it lives in (``parentFolderId``).

        Read by id from the whole mailbox (``GET /contacts/{id}``, through ``$batch``), never
        through a folder's URL: whether Graph honours the folder segment of
        ``contactFolders/{f}/contacts/{id}`` is not documented, so the folder is checked here.
        Absent: an id that does not exist (404), or a contact in a folder that is not a personal
        contacts folder of the mailbox (a deleted contact in Deleted Items is not "moved").
        """
        read = self._read_by_id(
            "locate_contacts", f"{self.settings.user_path}/contacts", ids, absent=(400, 404)
        )
        found: dict[str, Located] = {}
        for contact_id, body in read.items():
            parent = body.get("parentFolderId") if body is not None else None
            home = self.personal_folder(parent) if isinstance(parent, str) and parent else None
            if body is not None and home is not None:
                found[contact_id] = Located(body, home)
        return found

    def _read_by_id(
        self, caller: str, base: str, ids: Sequence[str], absent: tuple[int, ...]
    ) -> dict[str, dict[str, Any] | None]:
        """Contacts read by id under ``base`` through ``$batch`` GETs (extended properties
        expanded), by id; an answer whose status is in ``absent`` reads as None. Raises
        :class:`GraphError` if any other read fails."""
        if isinstance(ids, str):
            raise TypeError(f"{caller} takes a sequence of ids, not a single string")
        unique = list(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
        query = _query(self._contact_query())
        ops = [
            _Op(
                index=n,
                method="GET",
                url=f"{base}/{_segment(contact_id)}?{query}",
                headers={"Prefer": PREFER_IMMUTABLE_ID},
            )
            for n, contact_id in enumerate(unique)
        ]
        outcomes = self._execute(ops) if ops else {}
        read: dict[str, dict[str, Any] | None] = {}
        for n, contact_id in enumerate(unique):
            outcome = outcomes[n]
            if outcome.status == 200 and isinstance(outcome.body, dict):
                read[contact_id] = outcome.body
            elif outcome.status in absent:
                read[contact_id] = None
            else:
                raise self._outcome_error(f"reading contact {contact_id}", outcome)
        return read

    def personal_folder(self, folder_id: str) -> Folder | None:
        """The personal contacts folder with this id (its current name), or None when there is
        none: deleted, unknown, or not the default contacts folder nor one below it. Answers
        are kept for the client's life (one run)."""
        with self._lock:
            if folder_id in self._personal:
                return self._personal[folder_id]
        default = self._personal.get(DEFAULT_FOLDER_ALIAS) or self._default_folder(folder_id)
        found: Folder | None = None
        if folder_id in (default.id, DEFAULT_FOLDER_ALIAS):
            found = default
        else:
            candidate, _status, _code = self._get_folder(folder_id)
            current, seen = candidate, {folder_id}
            for _ in range(MAX_FOLDER_DEPTH):
                if current is None:
                    break
                parent = current.parent_folder_id
                if parent == default.id:
                    found = candidate
                    break
                if not parent or parent in seen:
                    break
                seen.add(parent)
                current, _status, _code = self._get_folder(parent)
        with self._lock:
            self._personal[DEFAULT_FOLDER_ALIAS] = default
            self._personal[folder_id] = found
        return found

    def find_by_email(self, folder: Folder, address: str) -> list[dict[str, Any]]:
        """Contacts of the folder with this e-mail address in any slot."""
        if not isinstance(address, str) or not address.strip():
            raise ValueError("find_by_email needs a non-empty e-mail address")
        condition = f"emailAddresses/any(a:a/address eq {_odata_string(address.strip())})"
        return self._find(folder, condition)

    def find_by_stamp(self, folder: Folder, pipeliner_id: str) -> list[dict[str, Any]]:
        """Contacts of the folder stamped with this Pipeliner id (our extended property)."""
        if not isinstance(pipeliner_id, str) or not pipeliner_id.strip():
            raise ValueError("find_by_stamp needs a non-empty Pipeliner id")
        condition = (
            "singleValueExtendedProperties/Any(ep: ep/id eq "
            f"{_odata_string(PIPELINER_ID_PROPERTY_ID)} and ep/value eq "
            f"{_odata_string(pipeliner_id.strip())})"
        )
        return self._find(folder, condition)

    def _find(self, folder: Folder, condition: str) -> list[dict[str, Any]]:
        query = _query(self._contact_query(**{"$filter": condition, "$top": 100}))
        return list(self._paged(f"{self._contacts_path(folder)}?{query}"))

    # ------------------------------------------------------------- delta

    def iter_delta(self, folder: Folder, delta_link: str | None) -> Iterator[DeltaPage]:
        """The pages of one delta round of the folder, from ``delta_link`` (None: initial round).

        Delta is asked only which contacts changed (``$select=id,changeKey``, the contact delta
        page documents no ``$expand``); the changed contacts are then read with their extended
        properties: by ``$batch`` GETs (20 per request) in an incremental round, by listing the
        folder (``page_size`` per request) in an initial round. A contact deleted between the
        two reads is reported as removed. Within a round, an exact replay (same id and
        changeKey) is skipped, and an id appears at most once per page (its last state wins).

        An expired ``delta_link`` (410) or one of another host restarts the round from
        scratch, and those pages carry ``full_resync=True``. A state token that expires while a
        round from scratch pages through delta starts that round again (nothing of it was
        yielded yet), at most :data:`MAX_ROUND_STARTS` times in all. The last page carries the
        new ``delta_link``; a round that is not read to the end yields none.
        """
        state: dict[bytes, bytes | None] = {}
        if delta_link is not None:
            try:
                yield from self._incremental_round(folder, delta_link, state)
                return
            except SyncStateExpired as exc:
                log.warning(
                    "the delta link of folder %r expired (%s); reading the folder again",
                    folder.display_name,
                    exc.code or exc.status,
                )
            except _ForeignLink as exc:
                log.warning("%s; reading the folder again", exc)
            state.clear()
            yield from self._fresh_round(folder, state, full_resync=True)
            return
        yield from self._fresh_round(folder, state, full_resync=False)

    def _fresh_round(
        self, folder: Folder, state: dict[bytes, bytes | None], *, full_resync: bool
    ) -> Iterator[DeltaPage]:
        """:meth:`_initial_round`, started again when its delta state expires on the way."""
        for start in range(1, MAX_ROUND_STARTS + 1):
            try:
                # The round pages delta to the end before it yields anything: a restart
                # repeats nothing the caller has seen.
                yield from self._initial_round(folder, state, full_resync=full_resync)
                return
            except SyncStateExpired as exc:
                if start == MAX_ROUND_STARTS:
                    raise SyncStateExpired(
                        f"the delta state of folder {folder.display_name!r} expired "
                        f"{MAX_ROUND_STARTS} times in a row while the folder was read ({exc}); "
                        "Microsoft Graph is dropping its sync state faster than the folder can "
                        "be paged: run again later",
                        status=exc.status,
                        code=exc.code,
                    ) from exc
                log.warning(
                    "the delta state of folder %r expired while paging (%s); starting the "
                    "round again",
                    folder.display_name,
                    exc.code or exc.status,
                )
                state.clear()

    def _delta_headers(self) -> dict[str, str]:
        return {
            "Prefer": f"{PREFER_IMMUTABLE_ID}, odata.maxpagesize={self.settings.delta_page_size}"
        }

    def _delta_pages(self, start: str) -> Iterator[tuple[list[Any], str | None]]:
        """(items, deltaLink) per delta page; deltaLink only on the last one."""
        url: str | None = start
        seen: set[str] = set()
        while url is not None:
            if url in seen:
                raise GraphError(
                    f"delta paging returned the same @odata.nextLink twice "
                    f"({redact_url(url)}); stopped to avoid a loop"
                )
            seen.add(url)
            try:
                response = self._request("GET", url, headers=self._delta_headers())
            except OriginRefused as exc:
                raise _ForeignLink(str(exc)) from exc
            body = _json_or_none(response)
            if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
                raise GraphError(f"GET {redact_url(url)} returned no 'value' list")
            final = body.get("@odata.deltaLink")
            url = body.get("@odata.nextLink")
            if url is None and not isinstance(final, str):
                raise GraphError(
                    f"GET {redact_url(start)}: a delta page had neither @odata.nextLink nor "
                    "@odata.deltaLink"
                )
            yield body["value"], final if url is None else None

    def _initial_delta_url(self, folder: Folder) -> str:
        query = _query({"$select": ",".join(DELTA_FIELDS)})
        return f"{self._contacts_path(folder)}/delta?{query}"

    def _initial_round(
        self, folder: Folder, state: dict[bytes, bytes | None], *, full_resync: bool
    ) -> Iterator[DeltaPage]:
        """Delta to the end (for the link), then the folder's contents by listing it.

        Delta first: whatever changes after its snapshot comes again in the next round, so
        the listing (taken later) can only be newer, never miss a change.
        """
        link: str | None = None
        try:
            for _items, final in self._delta_pages(self._initial_delta_url(folder)):
                link = final or link
        except _ForeignLink as exc:  # a nextLink to another host: never follow it
            raise GraphError(str(exc)) from exc
        pages = self._list_pages(folder)
        current = next(pages, [])
        while True:
            following = next(pages, None)
            contacts: dict[str, dict[str, Any]] = {}
            for contact in current:
                contact_id = contact.get("id") if isinstance(contact, dict) else None
                if not isinstance(contact_id, str):
                    continue
                key, version = _digest(contact_id), _digest(contact.get("changeKey"))
                if state.get(key) == version:
                    continue
                state[key] = version
                contacts.pop(contact_id, None)
                contacts[contact_id] = contact
            last = following is None
            yield DeltaPage(list(contacts.values()), [], link if last else None, full_resync)
            if last:
                return
            current = following

    def _incremental_round(
        self, folder: Folder, delta_link: str, state: dict[bytes, bytes | None]
    ) -> Iterator[DeltaPage]:
        for items, final in self._delta_pages(delta_link):
            latest: dict[str, str | None] = {}  # id -> changeKey, or None when removed
            removed_flag: dict[str, bool] = {}
            for item in items:
                if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                    continue
                item_id = item["id"]
                latest.pop(item_id, None)
                removed_flag.pop(item_id, None)
                latest[item_id] = item.get("changeKey")
                removed_flag[item_id] = "@removed" in item
            changed: list[str] = []
            removed: list[str] = []
            for item_id, change_key in latest.items():
                key = _digest(item_id)
                if removed_flag[item_id]:
                    if key in state and state[key] is None:
                        continue
                    state[key] = None
                    removed.append(item_id)
                else:
                    version = _digest(change_key) if change_key else None
                    if version is not None and state.get(key) == version:
                        continue
                    state[key] = version if version is not None else b"?"
                    changed.append(item_id)
            found = self.get_contacts(folder, changed) if changed else {}
            contacts = []
            for item_id in changed:
                if item_id in found:
                    contacts.append(found[item_id])
                else:  # deleted (or moved away) since delta listed it
                    state[_digest(item_id)] = None
                    removed.append(item_id)
            yield DeltaPage(contacts, removed, final, False)

    # ------------------------------------------------------------- writing

    def create_contacts(
        self, folder: Folder, bodies: Sequence[Mapping[str, Any]]
    ) -> list[BatchResult]:
        """Create contacts in the folder; one result per body, in input order.

        A create is sent again only after a 429/503 answer (Graph did not do it). If a whole
        ``$batch`` gets no answer, its creates are reported failed as "may or may not have been
        created" and never repeated (the stamp lets the next run find them).
        """
        results: dict[int, BatchResult] = {}
        ops: list[_Op] = []
        path = self._contacts_path(folder)
        for index, body in enumerate(bodies):
            if not isinstance(body, Mapping) or not body:
                results[index] = BatchResult(
                    index, False, 0, None, None, f"not a contact body: {type(body).__name__}"
                )
                continue
            ops.append(
                _Op(
                    index=index,
                    method="POST",
                    url=path,
                    body=dict(body),
                    headers={"Content-Type": "application/json", "Prefer": PREFER_IMMUTABLE_ID},
                    create=True,
                )
            )
        for op, outcome in self._run_writes(ops):
            results[op.index] = self._result(op.index, outcome, None, ok_statuses=(200, 201))
        return [results[i] for i in range(len(bodies))]

    def update_contacts(
        self, folder: Folder, updates: Sequence[tuple[str, Mapping[str, Any], str | None]]
    ) -> list[BatchResult]:
        """PATCH contacts: ``(id, body, changeKey or None)``; one result per update, in order.

        With a changeKey the PATCH carries ``If-Match``; a contact changed since answers 412
        (result ``status`` 412): read it again and re-plan.
        """
        results: dict[int, BatchResult] = {}
        ops: list[_Op] = []
        path = self._contacts_path(folder)
        for index, update in enumerate(updates):
            problem = None
            try:
                contact_id, body, change_key = update
            except (TypeError, ValueError):
                problem = "an update is (id, body, changeKey or None)"
                contact_id, body, change_key = None, None, None
            if problem is None and not (isinstance(contact_id, str) and contact_id.strip()):
                problem = f"not a contact id: {contact_id!r}"
            if problem is None and not (isinstance(body, Mapping) and body):
                problem = "an update needs a non-empty body"
            if problem is None and change_key is not None and not isinstance(change_key, str):
                problem = f"changeKey must be a string or None, got {type(change_key).__name__}"
            if problem is not None:
                known = contact_id if isinstance(contact_id, str) else None
                results[index] = BatchResult(index, False, 0, known, None, problem)
                continue
            headers = {"Content-Type": "application/json", "Prefer": PREFER_IMMUTABLE_ID}
            if change_key:
                headers["If-Match"] = _if_match(change_key)
            ops.append(
                _Op(
                    index=index,
                    method="PATCH",
                    url=f"{path}/{_segment(contact_id.strip())}",
                    body=dict(body),
                    headers=headers,
                )
            )
        for op, outcome in self._run_writes(ops):
            known = str(updates[op.index][0]).strip()
            results[op.index] = self._result(op.index, outcome, known, ok_statuses=(200, 204))
        return [results[i] for i in range(len(updates))]

    def delete_contacts(self, folder: Folder, ids: Sequence[str]) -> list[BatchResult]:
        """Delete contacts; one result per id, in order. 404 counts as done (already gone)."""
        if isinstance(ids, str):
            raise TypeError("delete_contacts takes a sequence of ids, not a single string")
        results: dict[int, BatchResult] = {}
        ops: list[_Op] = []
        path = self._contacts_path(folder)
        for index, contact_id in enumerate(ids):
            if not (isinstance(contact_id, str) and contact_id.strip()):
                results[index] = BatchResult(
                    index, False, 0, None, None, f"not a contact id: {contact_id!r}"
                )
                continue
            ops.append(
                _Op(
                    index=index,
                    method="DELETE",
                    url=f"{path}/{_segment(contact_id.strip())}",
                    headers={"Prefer": PREFER_IMMUTABLE_ID},
                )
            )
        for op, outcome in self._run_writes(ops):
            known = ids[op.index].strip()
            results[op.index] = self._result(op.index, outcome, known, ok_statuses=(200, 204, 404))
        return [results[i] for i in range(len(ids))]

    def _run_writes(self, ops: list[_Op]) -> list[tuple[_Op, _Outcome]]:
        if not ops:
            return []
        outcomes = self._execute(ops)
        return [(op, outcomes[op.index]) for op in ops]

    def _result(
        self, index: int, outcome: _Outcome, known: str | None, *, ok_statuses: Sequence[int]
    ) -> BatchResult:
        body = outcome.body if isinstance(outcome.body, dict) else None
        ok = outcome.status in ok_statuses and outcome.error is None
        if ok:
            new_id = body.get("id") if body and isinstance(body.get("id"), str) else None
            return BatchResult(index, True, outcome.status, new_id or known, body, None)
        error = outcome.error
        if error is None:
            code, message = _graph_error_of(outcome.body)
            error = _describe(code, message, outcome.status)
        return BatchResult(index, False, outcome.status, known, body, _scrub(error))

    def _outcome_error(self, what: str, outcome: _Outcome) -> GraphError:
        code, message = _graph_error_of(outcome.body)
        detail = outcome.error or _describe(code, message, outcome.status)
        kind: type[GraphError] = GraphError
        if outcome.status == 429:
            kind = GraphThrottled
        elif outcome.status in (401, 403):
            kind = GraphAuthError
        return kind(f"{what} failed: {detail}", status=outcome.status or None, code=code)

    # ------------------------------------------------------------- $batch
    # ------------------------------------------------------------- plumbing

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        if self._header_auth:
            headers["Authorization"] = f"Bearer {_token(self._provider)}"
        return headers

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _refresh_after_401(self, used: str | None) -> None:
        """Refresh the token for a 401 of a request sent with ``used`` (the Authorization
        header), unless another thread already refreshed it since."""
        with self._refresh_lock:
            if used is not None and used != f"Bearer {_token(self._provider)}":
                return  # refreshed meanwhile: just retry with the new token
            try:
                self._provider.refresh()
            except GraphError:
                raise
            except Exception as exc:
                # A provider that is down or throttling needs patience, not a new sign-in.
                advice = "Try again later" if getattr(exc, "transient", False) else "Sign in again"
                raise GraphAuthError(
                    f"Microsoft Graph refused the access token (401) and refreshing it failed: "
                    f"{type(exc).__name__}: {exc}. {advice}.",
                    status=401,
                ) from exc
            self._count("token_refreshes")
            log.info("access token refused (401); refreshed it once")

    def _auth_error(self, code: str | None, message: str | None) -> GraphAuthError:
        detail = _describe(code, message, 401)
        return GraphAuthError(
            f"Microsoft Graph refused the access token for {self.settings.describe_mailbox()} "
            f"even after refreshing it once (401 {detail}). Sign in again (delegated: run the "
            "device-code sign-in; app-only: check client_id, the client secret and the tenant).",
            status=401,
            code=code,
        )

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        expected: Sequence[int] = (),
    ) -> requests.Response:
        """One request with the Prefer header; a 401 refreshes the token once and retries."""
        for attempt in (1, 2):
            try:
                grant = self._pacer.acquire(1, 1)
                try:
                    return self._http.request(
                        method,
                        path_or_url,
                        json=json,
                        headers=self._headers({"Prefer": PREFER_IMMUTABLE_ID, **(headers or {})}),
                        idempotent=idempotent,
                        expected=expected,
                    )
                finally:
                    self._pacer.release(grant)
            except HttpStatusError as exc:
                if exc.status == 401 and attempt == 1:
                    self._refresh_after_401(_auth_header(exc.response))
                    continue
                self._raise_status(exc, method)
            except OriginRefused:
                raise
            except BudgetExceeded as exc:
                kind = GraphThrottled if "(last: 429" in str(exc) else GraphError
                raise kind(f"Microsoft Graph did not answer in time: {exc}", status=None) from exc
            except TransportError as exc:
                hint = (
                    "Check ca_bundle (the CA certificates that signed the server's certificate; "
                    "empty for the system store) and graph_url."
                    if "TLS failed" in str(exc)
                    else "Check graph_url and the network path to it."
                )
                raise GraphError(
                    f"could not reach Microsoft Graph at {self.settings.graph_url}: {exc} {hint}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_status(self, exc: HttpStatusError, method: str) -> NoReturn:
        status = exc.status
        body = _json_or_none(exc.response)
        code, message = _graph_error_of(body)
        detail = _describe(code, message, status) if code or message else exc.body_excerpt
        where = f"{method} {exc.url}"
        if status == 401:
            raise self._auth_error(code, message) from exc
        if status == 403:
            raise GraphAuthError(
                f"{where}: Microsoft Graph denied access to {self.settings.describe_mailbox()} "
                f"(403 {detail}). Check the app's Contacts.ReadWrite permission and `mailbox`.",
                status=status,
                code=code,
            ) from exc
        if status == 410 or (code or "").casefold() in _SYNC_STATE_CODES:
            raise SyncStateExpired(
                f"{where}: the delta link expired ({status} {detail})", status=status, code=code
            ) from exc
        if status == 429:
            raise GraphThrottled(
                f"{where}: Microsoft Graph kept throttling {self.settings.describe_mailbox()} "
                f"(429 {detail}) until the retry policy gave up; try again later.",
                status=status,
                code=code,
            ) from exc
        raise GraphError(
            f"{where} failed with {status}: {detail}", status=status, code=code
        ) from exc

    def _paged(self, first: str) -> Iterator[dict[str, Any]]:
        for page in self._paged_pages(first):
            yield from page

    def _paged_pages(self, first: str) -> Iterator[list[dict[str, Any]]]:
        """The ``value`` of each page of a collection, following ``@odata.nextLink``."""
        url: str | None = first
        seen: set[str] = set()
        while url is not None:
            if url in seen:
                raise GraphError(
                    f"paging returned the same @odata.nextLink twice ({redact_url(url)}); "
                    "stopped to avoid a loop"
                )
            seen.add(url)
            try:
                response = self._request("GET", url)
            except OriginRefused as exc:
                raise GraphError(
                    f"Microsoft Graph sent a next-page link to another host; refused to follow "
                    f"it with our token: {exc}"
                ) from exc
            body = _json_or_none(response)
            if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
                raise GraphError(f"GET {redact_url(url)} returned no 'value' list")
            yield [row for row in body["value"] if isinstance(row, dict)]
            next_link = body.get("@odata.nextLink")
            url = next_link if isinstance(next_link, str) and next_link else None


class _ForeignLink(Exception):
    """A stored delta link points to another origin than ``graph_url``."""
