"""Whether a user's `meltano run` has anything to do, decided in-process before starting it
(issue #15): a quiet two-way run costs about 5 CPU seconds (Meltano and six plugin
processes), the same question asked here costs a few requests and a fraction of a second.

The check asks what the taps' quiet run would ask, with the same core functions, from the
bookmarks the user's job stored in Meltano's state, and persists nothing it learns (no
bookmark, no delta link), so a skipped run only postpones: the next real run reads from the
same bookmarks and sees everything the check saw, and everything it missed.

* Pipeliner: the user, role and units (``resolve_user``, as the tap) and one page of
  contacts modified since the bookmark (``iter_contacts``, the tap's query). A contact counts
  as a change unless the ledger links it at the revision it has now and it is still live and
  in the user's scope, or it is neither linked nor in scope (another user's contact: the
  space-wide query returns every user's edits). The tap's own ``full_read_reason`` (its scope
  fingerprint: units, role, the unit tree; the periodic full read) applies as is.
* Outlook (two-way): the bound folder by id (``folders.follow``: a deleted folder makes the
  run fail visibly) and Graph's delta from the stored link (``iter_delta``). A changed contact
  counts unless the ledger holds its ``changeKey``; a removal counts when it was linked; an
  expired link counts.

Anything in doubt runs the job: no stored state or bookmark, a failed or refused last run, a
settings fingerprint that differs from the last successful run's (the user's settings, the
space's, meltano.yml, the plugin variables of the environment, the code's version), pending
failures or owed work in the ledger (retries, deferred deletes, restores, removals), parked
records or moved links that changed since the last run, a last real run older than
``max_interval`` (``--full-check-every``), and any error while checking.

What the check cannot see, and the max interval (and the tap's daily full read) covers as a
real run always did: a change in Pipeliner that does not move a contact's ``modified`` (an
owner, sharing or unit change of the contact itself, a renamed account), as today's
incremental runs do not see it either until the full read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Boolean, Column, DateTime, MetaData, String, Table, select, text
from sqlalchemy.engine import Engine

from contactsync import __version__
from contactsync.pipeliner import full_read
from contactsync.sync.link import Link, LinkState, Side

log = logging.getLogger("contactsync.ops.precheck")

#: Default of ``--full-check-every``: a real run at least this often, whatever the check says.
DEFAULT_MAX_INTERVAL_SECONDS: Final = 3600.0
#: What `contactsync run` prints and records for a skipped run.
SKIPPED: Final = "skipped: nothing changed"
#: Meltano's state ids of each job: (extractor, loader) per task, the state id being
#: ``<environment>:<extractor>-to-<loader>:<suffix>``.
JOB_TASKS: Final = {
    "two-way-your-contacts": (
        ("tap-pipeliner-contacts", "target-outlook-contacts"),
        ("tap-outlook-contacts", "target-pipeliner-contacts"),
    ),
    "one-way-your-contacts": (("tap-pipeliner-contacts", "target-outlook-contacts-one-way"),),
    "one-way-all-contacts": (("tap-pipeliner-contacts-all", "target-outlook-contacts-one-way"),),
}
#: Variables of the environment that configure a run (their values go into the fingerprint;
#: secrets never do).
_SETTING_PREFIXES: Final = ("MELTANO_", "CONTACTSYNC_", "TAP_", "TARGET_", "PIPELINER_", "MS_")
_NOT_FINGERPRINTED: Final = ("PASSWORD", "SECRET", "MELTANO_SYS_DIR_ROOT", "MELTANO_DATABASE_URI")
#: The check's HTTP patience: an API that does not answer quickly makes the job run (and say
#: why), rather than the check wait for minutes.
_CHECK_LIMITS: Final = {"max_attempts": 2, "request_budget_seconds": 30}
#: Without a Pipeliner bookmark (no contact in the space when the tap last read it) the tap
#: lists the whole space; the check does too, up to this many contacts, else it runs the job.
NO_BOOKMARK_LISTING: Final = 200
#: Contacts weighed at once (a page of the API): a busy space stops at the first with work.
PAGE: Final = 100


@dataclass(frozen=True)
class Decision:
    """Run the job or not, and why (the reason is printed and logged)."""

    run: bool
    reason: str


def run_because(reason: str) -> Decision:
    return Decision(True, reason)


# --------------------------------------------------------------------------- what is stored

_metadata = MetaData()
precheck_table = Table(
    "contactsync_precheck",
    _metadata,
    Column("email", String(320), primary_key=True),
    Column("last_run_at", DateTime(timezone=True), nullable=False),  # the last real run's end
    Column("last_run_ok", Boolean, nullable=False),
    Column("fingerprint", String(64), nullable=False),  # of the settings it ran with
    Column("waiting", String(64), nullable=False),  # of the parked records and moved links
)


@dataclass(frozen=True)
class LastRun:
    """The user's last real `meltano run`, as the check compares against it."""

    at: datetime
    ok: bool
    fingerprint: str
    waiting: str


class Store:
    """The ``contactsync_precheck`` table, beside the registry's (same database)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ready = False
        self._guard = threading.Lock()

    def _ensure(self) -> None:
        with self._guard:
            if not self._ready:
                _metadata.create_all(self.engine, checkfirst=True)
                self._ready = True

    def get(self, email: str) -> LastRun | None:
        self._ensure()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(precheck_table).where(precheck_table.c.email == email)
            ).one_or_none()
        if row is None:
            return None
        at = row.last_run_at if row.last_run_at.tzinfo else row.last_run_at.replace(tzinfo=UTC)
        return LastRun(at, bool(row.last_run_ok), row.fingerprint, row.waiting)

    def put(self, email: str, last: LastRun) -> None:
        self._ensure()
        values = {
            "last_run_at": last.at,
            "last_run_ok": last.ok,
            "fingerprint": last.fingerprint,
            "waiting": last.waiting,
        }
        with self.engine.begin() as conn:
            done = conn.execute(
                precheck_table.update().where(precheck_table.c.email == email).values(**values)
            )
            if done.rowcount == 0:
                conn.execute(precheck_table.insert().values(email=email, **values))


# --------------------------------------------------------------------------- the decision (pure)


@dataclass(frozen=True)
class Waiting:
    """The ledger's work for the user's scope, as the check weighs it."""

    retries: int = 0  # failures to retry and held deletes: the next run replays them
    owed: int = 0  # links owing Outlook a restore or a removal
    digest: str = ""  # of the parked records and moved links: inert until they change


@dataclass(frozen=True)
class LocalFacts:
    """Everything the check knows before asking an API."""

    now: datetime
    last: LastRun | None
    fingerprint: str
    max_interval: float  # seconds; 0: always run
    states: Mapping[str, Mapping[str, Any] | None]  # the `contacts` bookmark per extractor
    waiting: Waiting = field(default_factory=Waiting)
    state_problem: str | None = None
    phase: float = 0.0  # seconds: where this user's full-check windows start (full_check_phase)


def full_check_phase(user: str, interval: float) -> float:
    """The user's offset of the full-check windows, in [0, ``interval``): stable across
    processes (a digest, not Python's salted ``hash``) and spread evenly over users."""
    return int.from_bytes(hashlib.sha256(user.encode()).digest()[:8]) / 2**64 * interval


def full_check_due(now: datetime, last: datetime, interval: float, phase: float) -> bool:
    """Whether a real run is due whatever the check says: once in each window of ``interval``
    seconds, each user's windows shifted by ``phase``, so that users whose last real runs fell
    in the same tick (activated together) come due in different ticks. Never sooner than half
    an interval after the last real run, never later than a whole one."""
    age = (now - last).total_seconds()
    if age < 0 or age >= interval:
        return True

    def window(at: datetime) -> int:
        return math.floor((at.timestamp() + phase) / interval)

    return age >= interval / 2 and window(now) != window(last)


def local_decision(facts: LocalFacts) -> Decision | None:
    """A reason to run found without any request, or None: the APIs must be asked."""
    last = facts.last
    if facts.max_interval <= 0:
        return run_because("the pre-check's maximum interval is 0")
    if last is None:
        return run_because("no earlier run on record")
    if not last.ok:
        return run_because("the last run failed")
    if last.fingerprint != facts.fingerprint:
        return run_because("the settings changed since the last run")
    if full_check_due(facts.now, last.at, facts.max_interval, facts.phase):
        age = facts.now - last.at
        return run_because(
            f"a full check is due (one every {facts.max_interval / 60:g} min; the last run is "
            f"{age.total_seconds() / 60:.0f} min old)"
        )
    if facts.state_problem:
        return run_because(facts.state_problem)
    for extractor, bookmark in facts.states.items():
        if not bookmark:
            return run_because(f"no bookmark of {extractor} in Meltano's state")
        if bookmark.get("progress_markers"):
            return run_because(f"{extractor}'s last read did not finish")
    if facts.waiting.retries:
        return run_because(f"{facts.waiting.retries} record(s) to retry in the ledger")
    if facts.waiting.owed:
        return run_because(f"{facts.waiting.owed} Outlook restore(s)/removal(s) owed")
    if facts.waiting.digest != last.waiting:
        return run_because("parked records or moved contacts changed since the last run")
    return None


def pipeliner_changes(
    contacts: Iterable[Mapping[str, Any]],
    links: Mapping[str, Link],
    in_scope: Any,  # (contact) -> bool: the user's relation is one the sync type includes
) -> list[str]:
    """Ids of the contacts read since the bookmark that the Pipeliner -> Outlook leg would act
    on: a linked one unless it is at the linked revision, live and in scope; an unlinked one if
    it is live and in scope (a new contact of the user's)."""
    changed = []
    for contact in contacts:
        contact_id = str(contact.get("id") or "")
        live = not contact.get("is_deleted")
        link = links.get(contact_id)
        if link is None:
            if live and in_scope(contact):
                changed.append(contact_id)
            continue
        revision = contact.get("revision")
        same = revision is not None and link.crm_version == str(revision)
        if not (same and live and in_scope(contact)):
            changed.append(contact_id)
    return changed


def after_bookmark(contacts: Iterable[Mapping[str, Any]], since: datetime) -> list[Any]:
    """The contacts modified after the bookmark. The tap reads ``modified >= bookmark`` and its
    bookmark is the newest ``modified`` it read, so a contact at the bookmark exactly is the one
    (or those) the last real run read as it is now; one without a readable ``modified`` counts."""
    from contactsync.pipeliner.api import parse_timestamp

    newer = []
    for contact in contacts:
        try:
            if parse_timestamp(contact["modified"]) <= since:
                continue
        except (KeyError, TypeError, ValueError):
            pass
        newer.append(contact)
    return newer


def outlook_changes(
    contacts: Iterable[Mapping[str, Any]],
    removed: Iterable[str],
    links: Mapping[str, Link],
) -> list[str]:
    """Ids from Graph's delta the Outlook -> Pipeliner leg would act on: a contact unless the
    ledger holds its ``changeKey`` (our own write, seen), a removal of a linked contact."""
    changed = []
    for contact in contacts:
        contact_id = str(contact.get("id") or "")
        link = links.get(contact_id)
        key = contact.get("changeKey")
        if link is None or key is None or link.book_version != key:
            changed.append(contact_id)
    changed += [i for i in removed if i in links]
    return changed


# --------------------------------------------------------------------------- fingerprints


def settings_fingerprint(
    job: str,
    settings: Mapping[str, Any],
    env: Mapping[str, str],
    project_dir: Path,
) -> str:
    """A digest of what configures the user's run: the user's and the space's settings, the
    project's meltano.yml and constraints, the run's setting variables (never a secret's
    value) and the code's version. A change of any makes the next run real."""
    digest = hashlib.sha256()
    facts = {
        "version": __version__,
        "job": job,
        "settings": {k: settings[k] for k in sorted(settings)},
        "env": {
            k: env[k]
            for k in sorted(env)
            if k.startswith(_SETTING_PREFIXES) and not any(n in k for n in _NOT_FINGERPRINTED)
        },
    }
    digest.update(json.dumps(facts, sort_keys=True, default=str).encode())
    for name in ("meltano.yml", "constraints.txt"):
        try:
            digest.update((project_dir / name).read_bytes())
        except OSError:
            digest.update(b"-")
    return digest.hexdigest()[:32]


def waiting_work(ledger: Any) -> Waiting:
    """The ledger's pending work of a partition (a ``PartitionLedger``): failures to retry and
    deletes held by a run that did not end count alike, the next run replays both."""
    retries = len(ledger.failures(parked=False)) + len(ledger.held_deletes())
    owed = sum(
        1 for state in (LinkState.RESTORE_BOOK, LinkState.LEAVING) for _ in ledger.iter_links(state)
    )
    parked = sorted(
        (f.side.value, f.record_id, f.attempts, str(f.parked_at))
        for f in ledger.failures(parked=True)
    )
    moved = sorted((lk.crm_id, lk.book_id or "") for lk in ledger.iter_links(LinkState.MOVED))
    text_ = json.dumps([parked, moved], default=str)
    return Waiting(retries, owed, hashlib.sha256(text_.encode()).hexdigest()[:32])


# --------------------------------------------------------------------------- Meltano's state


def state_ids(environment: str, job: str, suffix: str) -> dict[str, str]:
    """Meltano's state id per extractor of the job."""
    return {tap: f"{environment}:{tap}-to-{target}:{suffix}" for tap, target in JOB_TASKS[job]}


def default_environment(project_dir: Path) -> str | None:
    """meltano.yml's ``default_environment`` (a top-level key; read without a YAML parser)."""
    for line in (project_dir / "meltano.yml").read_text(encoding="utf-8").splitlines():
        if line.startswith("default_environment:"):
            return line.split(":", 1)[1].strip().strip("'\"") or None
    return None


_engines: dict[str, Engine] = {}
_engines_guard = threading.Lock()


def state_engine(uri: str) -> Engine:
    """One engine per Meltano system database for the process (PostgreSQL through psycopg 3,
    as Meltano and the ledger use it)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    with _engines_guard:
        if uri not in _engines:
            url = make_url(uri)
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            _engines[uri] = create_engine(url, poolclass=NullPool)
        return _engines[uri]


def read_bookmarks(uri: str, ids: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """The ``contacts`` bookmark per extractor from Meltano's ``state`` table, and why it cannot
    be trusted (a partial state: an unfinished run), if so."""
    found: dict[str, Any] = {tap: None for tap in ids}
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return found, None  # no state yet (and connecting would create the file)
    wanted = {state_id: tap for tap, state_id in ids.items()}
    with state_engine(uri).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT state_id, partial_state, completed_state FROM state "
                "WHERE state_id IN (" + ", ".join(f":s{i}" for i in range(len(wanted))) + ")"
            ),
            {f"s{i}": state_id for i, state_id in enumerate(wanted)},
        ).all()
    for state_id, partial, completed in rows:
        partial, completed = _json(partial), _json(completed)
        if partial and partial.get("singer_state"):
            return found, f"Meltano holds a partial state of {wanted[state_id]}"
        singer = (completed or {}).get("singer_state") or {}
        found[wanted[state_id]] = (singer.get("bookmarks") or {}).get("contacts")
    return found, None


def _json(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    parsed = json.loads(value)
    return parsed if isinstance(parsed, dict) else None


# --------------------------------------------------------------------------- asking the APIs


def check_pipeliner(
    config: Mapping[str, Any],
    bookmark: Mapping[str, Any],
    ledger: Any,
    sync_type: str,
    sync_option: str | None,
    now: datetime,
) -> Decision | None:
    """What tap-pipeliner-contacts' quiet run asks, and whether its answer has work."""
    from contactsync import settings as cs
    from contactsync.pipeliner.api import PipelinerClient, parse_timestamp
    from contactsync.pipeliner.scope import ContactSharing, SyncScope, relation, scope_fingerprint

    since_text = bookmark.get("replication_key_value")
    if not since_text and not bookmark.get(full_read.LAST_FULL_READ_KEY):
        return run_because("no complete Pipeliner read yet")
    with PipelinerClient(cs.pipeliner_settings(config)) as client:
        user = cs.resolve_sync_user(client, config).sync_user
        interval = config.get("full_read_interval")
        reason = full_read.full_read_reason(
            bookmark,
            has_bookmark=True,  # without one (a space with no contact yet), see below
            scope=str(bookmark.get(full_read.SCOPE_KEY) or ""),  # a scope change: fingerprint
            fingerprint=scope_fingerprint(user),
            interval_seconds=float(
                full_read.DEFAULT_INTERVAL_SECONDS if interval in (None, "") else interval
            ),
            now=now,
        )
        if reason is not None:
            return run_because(f"Pipeliner: {reason}")
        scope = SyncScope.parse(sync_type, sync_option)
        since = parse_timestamp(since_text) if since_text else None

        def changes(batch: list[Any]) -> list[str]:
            newer = after_bookmark(batch, since) if since is not None else batch
            links = ledger.get_many(Side.CRM, [str(c.get("id")) for c in newer])
            return pipeliner_changes(
                newer, links, lambda c: scope.includes(relation(ContactSharing.from_api(c), user))
            )

        listed: set[str] = set()
        batch: list[Any] = []
        changed: list[str] = []
        for contact in client.iter_contacts(modified_since=since, include_deleted=True):
            listed.add(str(contact.get("id")))
            batch.append(contact)
            if since is None and len(listed) > NO_BOOKMARK_LISTING:
                return run_because("no Pipeliner bookmark, and the space has contacts")
            if len(batch) >= PAGE:  # a busy space: stop at the first page with work
                changed = changes(batch)
                if changed:
                    break
                batch = []
        else:
            changed = changes(batch)
            if since is None and not client.last_read_complete:
                return run_because("no Pipeliner bookmark, and the listing did not complete")
    if since is None and not changed:
        # Without a bookmark the tap lists everything, and a linked contact the listing lacks
        # is taken for deleted: that too is work.
        changed = [lk.crm_id for lk in ledger.iter_links() if lk.crm_id not in listed]
    if changed:
        return run_because(f"{len(changed)} contact(s) changed in Pipeliner")
    return None


def check_outlook(
    config: Mapping[str, Any], bookmark: Mapping[str, Any], ledger: Any
) -> Decision | None:
    """What tap-outlook-contacts' quiet run asks, and whether its answer has work."""
    from contactsync.outlook import folders

    folder_id, link = bookmark.get("folder_id"), bookmark.get("delta_link")
    configured = str(config.get("folder") or "")
    if not (folder_id and link) or bookmark.get("folder_setting", configured) != configured:
        return run_because("no Outlook delta link for this folder yet")
    graph = _graph_client(config)
    try:
        folder = folders.follow(graph, folder_id, None, configured)
        contacts: list[Mapping[str, Any]] = []
        removed: list[str] = []
        for page in graph.iter_delta(folder, link):
            if page.full_resync:
                return run_because("Outlook: the delta link expired")
            contacts += page.contacts
            removed += page.removed
    finally:
        graph.close()
    ids = [str(c.get("id")) for c in contacts] + removed
    links = ledger.get_many(Side.BOOK, ids) if ids else {}
    changed = outlook_changes(contacts, removed, links)
    if changed:
        return run_because(f"{len(changed)} contact(s) changed in Outlook")
    return None


_providers: dict[Any, Any] = {}


def _graph_client(config: Mapping[str, Any]) -> Any:
    """The Graph client the tap would build; app-only, one token provider (one token) for
    every mailbox the process checks, where each plugin process gets its own."""
    from contactsync import settings as cs
    from contactsync.outlook.auth import AuthSettings, TokenProvider
    from contactsync.outlook.graph_api import GraphClient

    auth = AuthSettings.from_config(config)
    if not auth.app_only:
        return cs.graph_client(config)
    key = (auth.authority, auth.client_id, auth.client_secret, auth.ca_bundle)
    with _engines_guard:
        provider = _providers.setdefault(key, TokenProvider(auth))
    return GraphClient(cs.graph_settings(config), provider)


@dataclass(frozen=True)
class Request:
    """One user's check: the plugin settings the run would get, and where its state is."""

    email: str
    job: str
    sync_type: str
    sync_option: str | None
    state_suffix: str
    environment: str | None
    state_db_uri: str
    pipeliner: Mapping[str, Any]  # tap-pipeliner-contacts' settings (the run's values)
    outlook: Mapping[str, Any]  # tap-outlook-contacts' settings
    fingerprint: str
    max_interval: float
    project_dir: Path


def check(request: Request, store: Store, ledger: Any, now: datetime | None = None) -> Decision:
    """Run or skip, for a user whose ledger scope ``ledger`` (read-only) is held. Never
    raises: an error while checking is a reason to run."""
    now = now or datetime.now(UTC)
    try:
        environment = request.environment or default_environment(request.project_dir)
        if not environment:
            return run_because("no Meltano environment: cannot find the state")
        last = store.get(request.email)
        facts = LocalFacts(
            now=now,
            last=last,
            fingerprint=request.fingerprint,
            max_interval=request.max_interval,
            phase=full_check_phase(request.email, request.max_interval),
            states={},
            waiting=Waiting(digest=last.waiting if last else ""),
        )
        decided = local_decision(facts)  # the store alone: nothing else to read
        if decided is not None:
            return decided
        ids = state_ids(environment, request.job, request.state_suffix)
        bookmarks, problem = read_bookmarks(request.state_db_uri, ids)
        facts = replace(
            facts, states=bookmarks, waiting=waiting_work(ledger), state_problem=problem
        )
        decided = local_decision(facts)
        if decided is not None:
            return decided
        tap = next(iter(JOB_TASKS[request.job]))[0]
        decided = check_pipeliner(
            request.pipeliner,
            bookmarks[tap],
            ledger,
            request.sync_type,
            request.sync_option,
            now,
        )
        if decided is not None:
            return decided
        if "tap-outlook-contacts" in bookmarks:
            decided = check_outlook(request.outlook, bookmarks["tap-outlook-contacts"], ledger)
            if decided is not None:
                return decided
    except Exception as exc:  # in doubt, run: the run says what is wrong
        log.info("pre-check of %s failed, running: %s", request.email, exc, exc_info=True)
        return run_because(f"the pre-check could not decide ({type(exc).__name__}: {exc})"[:300])
    return Decision(False, SKIPPED)


def plugin_settings(env: Mapping[str, str], plugin: str) -> dict[str, Any]:
    """A plugin's settings as the run passes them (``<PLUGIN>_<SETTING>`` variables: the
    user's values from `contactsync run`, and any the operator set), with the check's HTTP
    limits. Settings only meltano.yml sets keep their defaults."""
    prefix = plugin.upper().replace("-", "_") + "_"
    config: dict[str, Any] = {
        key[len(prefix) :].lower(): value for key, value in env.items() if key.startswith(prefix)
    }
    return {**config, **_CHECK_LIMITS}
