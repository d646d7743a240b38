"""The plugins' settings, declared once as JSON schema so every plugin documents them alike.

Plain dictionaries (no Singer import): the taps, targets and mapper assemble their
``config_jsonschema`` from these groups, and ``--about`` prints them. Secrets carry
``"secret": true`` and ``"writeOnly": true``, which singer-sdk and Meltano treat as sensitive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import contactsync.outlook  # noqa: F401 - names the address-book side (conflict_policy's values)
from contactsync.http import HttpPolicy
from contactsync.pipeliner.api import PipelinerClient, PipelinerSettings, ResolvedUser
from contactsync.sync.link import Partition
from contactsync.sync.merge import ConflictPolicy, policy_names

if TYPE_CHECKING:  # the Outlook side is imported only by the Outlook plugins
    from contactsync.outlook.graph_api import Folder, GraphClient, GraphSettings
    from contactsync.sync.ledger import PartitionLedger

Schema = dict[str, Any]


def _string(description: str, **extra: Any) -> Schema:
    return {"type": ["string"], "description": description, **extra}


def _secret(description: str) -> Schema:
    return _string(description, secret=True, writeOnly=True)


PIPELINER_CONNECTION: Mapping[str, Schema] = {
    "service_url": _string(
        "Pipeliner API service URL, e.g. https://eu-central.api.pipelinersales.com "
        "(https; plain http only for a loopback sandbox)."
    ),
    "space_id": _string("Pipeliner space id."),
    "api_username": _string("Username of the space's API application keys."),
    "api_password": _secret("Password of the space's API application keys."),
    "ca_bundle": _string("Path to a PEM bundle of CAs to trust instead of the system's."),
}

SYNC_USER: Mapping[str, Schema] = {
    "user_id": _string("Pipeliner Client id of the user whose contacts are synced."),
    "user_email": _string("E-mail of that user (used when user_id is not set)."),
}

HTTP_LIMITS: Mapping[str, Schema] = {
    "max_attempts": {
        "type": ["integer"],
        "minimum": 1,
        "default": 6,
        "description": "Attempts per request, retries included (429, 5xx, dropped connections).",
    },
    "request_budget_seconds": {
        "type": ["number"],
        "exclusiveMinimum": 0,
        "default": 300,
        "description": "Longest time one request may take, retries and waits included.",
    },
    "max_concurrency": {
        "type": ["integer"],
        "minimum": 1,
        "default": 4,
        "description": "Requests in flight at once per host.",
    },
    "rate_per_second": {
        "type": ["number", "null"],
        "exclusiveMinimum": 0,
        "description": "Requests per second per host (unset: no limit of our own).",
    },
}

#: What every plugin logs while it works (the SDK's metrics come on top of it).
PROGRESS: Mapping[str, Schema] = {
    "progress_interval_seconds": {
        "type": ["number"],
        "exclusiveMinimum": 0,
        "default": 30,
        "description": "Seconds between progress lines (records so far, rate) during long reads "
        "and writes.",
    },
}

LINK_PARTITION: Mapping[str, Schema] = {
    "mailbox": _string(
        "Outlook mailbox of the sync (user id, UPN, or 'me'); part of the link scope.",
        default="me",
    ),
    "folder": _string(
        "Outlook contacts folder (display name or id); part of the link scope.",
        default="Pipeliner",
    ),
}

#: A dry run plans and reports, and consumes nothing the next real run needs: no API write, no
#: ledger write, no folder created, and no Singer STATE (Meltano saves what a target emits, so
#: the bookmark and Graph's delta link stay where they were).
DRY_RUN: Mapping[str, Schema] = {
    "dry_run": {
        "type": ["boolean"],
        "default": False,
        "description": "Plan and report, write nothing: no API write, no ledger change, no "
        "folder created, and no state saved (the next real run reads the same changes again).",
    },
}

SYNC_WRITES: Mapping[str, Schema] = {
    "ledger_url": _string(
        "Where links live: a SQLAlchemy URL (postgresql://...) or a SQLite file path. "
        "Default: .contactsync/ledger.sqlite in the working directory.",
        secret=True,
        writeOnly=True,
    ),
    "conflict_policy": {
        "type": ["string"],
        "enum": policy_names(),
        "default": str(ConflictPolicy.parse(None)),
        "description": "Who wins when both sides changed the same field differently.",
    },
    "max_delete_ratio": {
        "type": ["number"],
        "minimum": 0,
        "maximum": 1,
        "default": 0.5,
        "description": "Refuse a run that would delete more than this share of linked contacts.",
    },
    "allow_mass_delete": {
        "type": ["boolean"],
        "default": False,
        "description": "Let a run exceed max_delete_ratio (after checking the source is right).",
    },
    **DRY_RUN,
    "report_path": _string("Where to write the run report as JSON (default: none)."),
}


def schema(*groups: Mapping[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    """A config JSON schema made of ``groups``."""
    properties: Schema = {}
    for group in groups:
        properties.update(group)
    return {"type": "object", "properties": properties, "required": list(required)}


def http_policy(config: Mapping[str, Any]) -> HttpPolicy:
    """The HTTP policy from the request-limit settings."""
    return HttpPolicy(
        max_attempts=int(config.get("max_attempts") or 6),
        total_budget=float(config.get("request_budget_seconds") or 300),
        max_concurrency=int(config.get("max_concurrency") or 4),
        rate_per_second=config.get("rate_per_second"),
    )


def pipeliner_settings(config: Mapping[str, Any]) -> PipelinerSettings:
    """Connection settings from a plugin config; errors name the setting to fix."""
    return PipelinerSettings(
        service_url=config.get("service_url") or "",
        space_id=config.get("space_id") or "",
        api_username=config.get("api_username") or "",
        api_password=config.get("api_password") or "",
        ca_bundle=config.get("ca_bundle"),
        page_size=int(config.get("page_size") or 100),
        policy=http_policy(config),
    )


class SettingError(ValueError):
    """A setting is missing or wrong; the message names it and says what to do."""


SYNC_SCOPE: Mapping[str, Schema] = {
    "sync_type": {
        "type": ["string"],
        "enum": ["one_way_your_contacts", "one_way_all_contacts", "two_way_your_contacts"],
        "default": "two_way_your_contacts",
        "description": "What is synced, and which way (see the README's table).",
    },
    "sync_option": {
        "type": ["string", "null"],
        "enum": ["owner", "owner_or_editor", None],
        "description": "For the 'your contacts' types: owned contacts only, or owned + editor.",
    },
}


GRAPH_CONNECTION: Mapping[str, Schema] = {
    "graph_url": _string(
        "Microsoft Graph base URL (default https://graph.microsoft.com).",
        default="https://graph.microsoft.com",
    ),
    "create_folder": {
        "type": ["boolean"],
        "default": False,
        "description": "Create the folder (default name Pipeliner) when it does not exist.",
    },
    "list_page_size": {
        "type": ["integer"],
        "minimum": 1,
        "maximum": 1000,
        "default": 1000,
        "description": "Contacts per request when listing the folder ($top, at most 1000).",
    },
    "delta_page_size": {
        "type": ["integer"],
        "minimum": 1,
        "maximum": 200,
        "default": 200,
        "description": "Contacts per delta page (odata.maxpagesize, at most 200).",
    },
    "graph_requests_per_window": {
        "type": ["integer"],
        "minimum": 0,
        "default": 10000,
        "description": (
            "Requests this process sends to the mailbox in any graph_window_seconds, each "
            "request inside a $batch counted (Graph's documented Outlook limit: 10,000 per 10 "
            "minutes per app and mailbox); 0: no budget of our own, pace by Graph's 429s only."
        ),
    },
    "graph_window_seconds": {
        "type": ["number"],
        "exclusiveMinimum": 0,
        "default": 600,
        "description": "The window of graph_requests_per_window, in seconds.",
    },
}


def resolve_sync_user(client: PipelinerClient, config: Mapping[str, Any]) -> ResolvedUser:
    """The Pipeliner user whose contacts are synced, by ``user_id`` or ``user_email``."""
    if not (config.get("user_id") or config.get("user_email")):
        raise SettingError("set user_id or user_email: whose contacts are synced?")
    return client.resolve_user(user_id=config.get("user_id"), email=config.get("user_email"))


def graph_settings(config: Mapping[str, Any]) -> GraphSettings:
    """Graph client settings from a plugin config."""
    from contactsync.outlook.graph_api import (  # Outlook side only
        GraphSettings,
        normalize_graph_url,
    )

    return GraphSettings(
        graph_url=normalize_graph_url(config.get("graph_url") or "https://graph.microsoft.com"),
        mailbox=config.get("mailbox") or "me",
        ca_bundle=config.get("ca_bundle"),
        page_size=int(config.get("list_page_size") or 1000),
        delta_page_size=int(config.get("delta_page_size") or 200),
        requests_per_window=_int_or(config.get("graph_requests_per_window"), 10_000),
        window_seconds=float(config.get("graph_window_seconds") or 600),
        policy=http_policy(config),
    )


def _int_or(value: Any, default: int) -> int:
    """An integer setting whose 0 means something (unlike ``or``, which would drop it)."""
    return default if value is None or value == "" else int(value)


def folder_check(config: Mapping[str, Any]) -> Callable[[PartitionLedger], str | None]:
    """The address book's check that the folder read is the one the sync is bound to."""
    configured = link_partition(config).folder

    def check(ledger: PartitionLedger) -> str | None:
        from contactsync.outlook.folders import folder_changed  # Outlook side: when needed

        return folder_changed(ledger, configured)

    return check


def link_partition(config: Mapping[str, Any]) -> Partition:
    """The ledger scope both targets of a user's sync compute alike from their settings."""
    user = config.get("user_id") or (config.get("user_email") or "").lower()
    if not user:
        raise SettingError("set user_id or user_email: whose contacts are synced?")
    if not config.get("space_id"):
        raise SettingError("set space_id: the Pipeliner space is part of the link scope")
    return Partition(
        user=user,
        space=config["space_id"],
        mailbox=config.get("mailbox") or "me",
        folder=config.get("folder") or "Pipeliner",
    )


#: The mailbox part of an import's link scope: no Outlook mailbox has this name.
IMPORT_MAILBOX = "(import)"


def import_partition(config: Mapping[str, Any], source: str) -> Partition:
    """The ledger scope of records imported from ``source`` (a tap, not the sync): the user's
    and space's, but apart from every folder's sync, so that a sync's complete listing never
    takes an imported contact for one deleted on its side, and never links it by its key."""
    sync = link_partition(config)
    return Partition(user=sync.user, space=sync.space, mailbox=IMPORT_MAILBOX, folder=source)


def graph_client(config: Mapping[str, Any]) -> GraphClient:
    """A Graph client signed in as the settings say (delegated token cache, or app-only)."""
    from contactsync.outlook.auth import AuthSettings, TokenProvider
    from contactsync.outlook.graph_api import GraphClient

    return GraphClient(graph_settings(config), TokenProvider(AuthSettings.from_config(config)))


def sync_folder(graph: GraphClient, config: Mapping[str, Any]) -> Folder | None:
    """The folder of the sync as the ``folder`` setting names it, created if missing with
    ``create_folder`` (for a name, never for an id: that is a folder that is gone); except in a
    dry run, which creates nothing: there a folder that a real run would create is None (it has
    no contacts yet)."""
    from contactsync.outlook.folders import resolve_by_setting  # Outlook side only

    return resolve_by_setting(
        graph,
        str(config.get("folder") or "Pipeliner"),
        create=bool(config.get("create_folder")),
        dry_run=bool(config.get("dry_run")),
    )


def normalize_text_settings(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Read settings given as text the way their schema means them, in place.

    Meltano hands a setting from an environment variable or `meltano config set` over as text
    unless its kind says otherwise, and its ``decimal`` kind cannot write such a value into the
    plugin's config at all; so meltano.yml declares our number settings as strings and "0.3" is
    read here as 0.3. A blank value of a setting that may be null is unset (a mapping's
    ``$CONTACTSYNC_SYNC_OPTION`` with the variable unset arrives as ""). Anything else stays as
    it is, and validation names it.
    """
    for name, prop in schema.get("properties", {}).items():
        value = config.get(name)
        declared = prop.get("type", [])
        types = set([declared] if isinstance(declared, str) else declared)
        if not isinstance(value, str):
            continue
        text = value.strip()
        if not text and "null" in types:
            config[name] = None
        elif "integer" in types and text.lstrip("-").isdigit():
            config[name] = int(text)
        elif "number" in types:
            with contextlib.suppress(ValueError):
                config[name] = float(text)


#: Settings that must be one value for a whole Meltano job, and the variable that carries it:
#: the tap, the mapper and both targets of a job read them through meltano.yml from there.
JOB_SETTINGS: Mapping[str, tuple[str, str | None]] = {
    "sync_option": ("CONTACTSYNC_SYNC_OPTION", None),
    "conflict_policy": ("CONTACTSYNC_CONFLICT_POLICY", "pipeliner_wins"),
}

#: Variables Meltano sets for the plugins it runs (its plugin-info variables).
_UNDER_MELTANO = ("MELTANO_EXTRACTOR_NAME", "MELTANO_MAPPER_NAME", "MELTANO_LOADER_NAME")


def job_setting_problems(
    plugin: str, config: Mapping[str, Any], environ: Mapping[str, str]
) -> list[str]:
    """Job-wide settings set on this plugin alone, under Meltano: refused, since they would
    apply to one leg or one plugin of the job only (a mapper's ``sync_option`` without the tap's
    re-read; a ``conflict_policy`` on the second leg, whose conflicts the first leg decided)."""
    if not any(environ.get(name) for name in _UNDER_MELTANO):
        return []  # a plain Singer pipeline: each plugin is configured on its own
    problems = []
    for name, (variable, default) in JOB_SETTINGS.items():
        if name not in config:
            continue
        mine = config.get(name) or default
        job = environ.get(variable, "").strip() or default
        if mine != job:
            problems.append(
                f"{name} {mine!r} is set on {plugin} alone, but one value must govern the whole "
                f"job (the job's is {job!r}): set {variable}={mine} for the job instead, and "
                f"remove {name} from {plugin}'s config (README: one setting per job)"
            )
    return problems
