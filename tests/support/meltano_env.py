"""Point the project's Meltano plugins at a sandbox through Meltano's setting environment
variables, in a private `.meltano` so that several `meltano run`s can go at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ALEX = "alex@contoso.example"

#: Plugins of meltano.yml by the API each talks to.
PIPELINER_PLUGINS = (
    "TAP_PIPELINER_CONTACTS",
    "TAP_PIPELINER_CONTACTS_ALL",
    "TARGET_PIPELINER_CONTACTS",
)
OUTLOOK_PLUGINS = (
    "TAP_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS_ONE_WAY",
)


def private_sys_dir(workdir: Path) -> Path:
    """A `.meltano` of our own (MELTANO_SYS_DIR_ROOT): Meltano writes each plugin's config and
    catalog to `.meltano/run/<plugin>/` and deletes them afterwards, so parallel runs in one
    project would pull files from under each other. The installed plugins are symlinked."""
    sys_dir = workdir / "meltano-sys"
    if not sys_dir.exists():
        sys_dir.mkdir(parents=True)
        for kind in ("extractors", "loaders", "mappers", "utilities"):
            if (ROOT / ".meltano" / kind).exists():
                (sys_dir / kind).symlink_to(ROOT / ".meltano" / kind)
    return sys_dir


def meltano_env(
    info: Mapping[str, Any], token_cache: Path, workdir: Path, folder: str, user: str = ALEX
) -> dict[str, str]:
    """The environment of one user's `meltano run` against the sandbox described by ``info``:
    own folder, ledger, Meltano state and reports under ``workdir``."""
    shared = {
        "CA_BUNDLE": info["ca_path"],
        "USER_EMAIL": user,
        "FOLDER": folder,
        "LEDGER_URL": str(workdir / "ledger.sqlite"),
    }
    apis = {
        "pipeliner": {"SERVICE_URL": info["pipeliner_url"]},
        "graph": {
            "AUTHORITY": info["authority"],
            "GRAPH_URL": info["graph_url"],
            "TOKEN_CACHE_PATH": str(token_cache),
        },
    }
    env = {
        **os.environ,
        "MELTANO_SYS_DIR_ROOT": str(private_sys_dir(workdir)),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
    }
    for api, plugins in (("pipeliner", PIPELINER_PLUGINS), ("graph", OUTLOOK_PLUGINS)):
        for plugin in plugins:
            for key, value in {**shared, **apis[api]}.items():
                env[f"{plugin}_{key}"] = value
            if plugin.startswith("TARGET_"):
                env[f"{plugin}_REPORT_PATH"] = str(workdir / f"{plugin.lower()}.json")
    return env
