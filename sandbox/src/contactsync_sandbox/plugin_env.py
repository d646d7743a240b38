"""The Meltano environment variables that point contactsync's plugins at a sandbox, for one user.

Meltano reads a plugin's setting from `<PLUGIN NAME>_<SETTING>` and from
`<PLUGIN NAMESPACE>_<SETTING>`. The variables here use the namespaces, so they reach every plugin
of a project built on contactsync's plugins whatever it is called, inheriting ones
(`target-outlook-contacts-one-way`) included; a plugin-name variable set on top still wins.
Variables win over `meltano.yml`, so a project's own environments need no sandbox entries.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The jobs of contactsync's meltano.yml, and the sync type each runs.
JOBS: Mapping[str, str] = {
    "two-way-your-contacts": "two_way_your_contacts",
    "one-way-your-contacts": "one_way_your_contacts",
    "one-way-all-contacts": "one_way_all_contacts",
}
#: The run report of each leg, and the namespace of the target that writes it.
LEGS: Mapping[str, str] = {
    "pipeliner-to-outlook": "TARGET_OUTLOOK_CONTACTS",
    "outlook-to-pipeliner": "TARGET_PIPELINER_CONTACTS",
}
#: The settings each plugin namespace declares that a sandbox run needs.
PIPELINER_SETTINGS = ("SERVICE_URL", "SPACE_ID", "API_USERNAME", "API_PASSWORD", "CA_BUNDLE")
#: Outlook plugins get TOKEN_CACHE_PATH (a person signed in) or CLIENT_SECRET (app-only).
OUTLOOK_SETTINGS = (
    "AUTHORITY",
    "CLIENT_ID",
    "TOKEN_CACHE_PATH",
    "CLIENT_SECRET",
    "CA_BUNDLE",
    "GRAPH_URL",
    "MAILBOX",
    "FOLDER",
    "CREATE_FOLDER",
)
NAMESPACES: Mapping[str, tuple[str, ...]] = {
    "TAP_PIPELINER_CONTACTS": (*PIPELINER_SETTINGS, "USER_EMAIL"),
    "TARGET_PIPELINER_CONTACTS": (
        *PIPELINER_SETTINGS,
        "USER_EMAIL",
        "MAILBOX",
        "FOLDER",
        "LEDGER_URL",
        "REPORT_PATH",
    ),
    "TAP_OUTLOOK_CONTACTS": OUTLOOK_SETTINGS,
    "TARGET_OUTLOOK_CONTACTS": (
        *OUTLOOK_SETTINGS,
        "SPACE_ID",
        "USER_EMAIL",
        "LEDGER_URL",
        "REPORT_PATH",
    ),
}
#: The plugins that read `sync_option` (not the one-way-all job's: it has none).
OPTION_NAMESPACES = ("CONTACTSYNC_MAPPER", "TAP_PIPELINER_CONTACTS", "TARGET_PIPELINER_CONTACTS")
SYNC_OPTIONS = ("owner", "owner_or_editor")
FORMATS = ("export", "dotenv", "json")


@dataclass(frozen=True)
class UserFiles:
    """Where one user's sandbox runs keep their files (all under one directory)."""

    root: Path

    @classmethod
    def under(cls, data_dir: Path, user: str) -> UserFiles:
        return cls(data_dir / re.sub(r"[^A-Za-z0-9@._-]", "_", user.lower()))

    @property
    def token_cache(self) -> Path:
        return self.root / "token-cache.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def meltano_db(self) -> Path:
        return self.root / "meltano.db"

    def report_dir(self, job: str | None) -> Path:
        return self.root / "reports" / job if job else self.root / "reports"

    def report(self, leg: str, job: str | None) -> Path:
        if leg not in LEGS:
            raise ValueError(f"unknown leg {leg!r}; the legs are {', '.join(LEGS)}")
        return self.report_dir(job) / f"{leg}.json"


def plugin_env(
    info: Mapping[str, Any],
    user: str,
    files: UserFiles,
    *,
    job: str | None = None,
    folder: str = "Pipeliner",
    app_only: bool = False,
    sync_option: str | None = None,
) -> dict[str, str]:
    """The variables of `user`'s runs against the sandbox described by `info` (its JSON line)."""
    if sync_option is not None and sync_option not in SYNC_OPTIONS:
        raise ValueError(f"sync option {sync_option!r} is not one of {', '.join(SYNC_OPTIONS)}")
    if sync_option and JOBS.get(job or "") == "one_way_all_contacts":
        raise ValueError(f"the job {job} syncs every contact: it takes no sync option")
    values = {
        "SERVICE_URL": info["pipeliner_url"],
        "SPACE_ID": info["pipeliner_space_id"],
        "API_USERNAME": info["pipeliner_api_username"],
        "API_PASSWORD": info["pipeliner_api_password"],
        "CA_BUNDLE": info["ca_path"],
        "USER_EMAIL": user,
        "AUTHORITY": info["authority"],
        "CLIENT_ID": info["identity_client_id"],
        "GRAPH_URL": info["graph_url"],
        # Delegated: the signed-in person's own mailbox; app-only: the mailbox by its UPN.
        "MAILBOX": user if app_only else "me",
        "FOLDER": folder,
        "CREATE_FOLDER": "true",
        "LEDGER_URL": str(files.ledger),
    }
    for leg, namespace in LEGS.items():
        values[f"{namespace}_REPORT_PATH"] = str(files.report(leg, job))
    if app_only:
        values["CLIENT_SECRET"] = info["identity_client_secret"]
    else:
        values["TOKEN_CACHE_PATH"] = str(files.token_cache)
    env = {
        "MELTANO_DATABASE_URI": f"sqlite:///{files.meltano_db}",
        "MELTANO_RUN_STATE_ID_SUFFIX": user,
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for namespace, settings in NAMESPACES.items():
        for setting in settings:
            value = values.get(f"{namespace}_{setting}", values.get(setting))
            if value is not None:
                env[f"{namespace}_{setting}"] = value
    if sync_option:
        for namespace in OPTION_NAMESPACES:
            env[f"{namespace}_SYNC_OPTION"] = sync_option
    return env


def render(env: Mapping[str, str], fmt: str) -> str:
    """`export` lines for a shell's `eval`, `dotenv` lines (`$GITHUB_ENV`, `--env-file`), or
    one JSON object."""
    if fmt == "json":
        return json.dumps(dict(env), indent=2, sort_keys=True)
    if fmt == "dotenv":
        for key, value in env.items():
            if "\n" in value or "\r" in value:
                raise ValueError(f"{key} holds a line break: it cannot be written as dotenv")
        return "\n".join(f"{key}={value}" for key, value in env.items())
    if fmt == "export":
        return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())
    raise ValueError(f"unknown format {fmt!r}; the formats are {', '.join(FORMATS)}")
