"""Point the project's Meltano plugins at a sandbox through Meltano's setting environment
variables, in a private `.meltano` so that several `meltano run`s can go at once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contactsync_sandbox.plugin_env import UserFiles, plugin_env

ROOT = Path(__file__).resolve().parents[2]
ALEX = "alex@contoso.example"

#: The targets of meltano.yml (each writes its own report).
TARGETS = (
    "TARGET_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS_ONE_WAY",
    "TARGET_PIPELINER_CONTACTS",
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
    own folder, ledger, Meltano state and reports under ``workdir`` (``contactsync-sandbox
    env``'s variables, with the token cache the caller signed in and reports named by plugin)."""
    env = {
        **os.environ,
        **plugin_env(info, user, UserFiles(workdir), folder=folder),
        "MELTANO_SYS_DIR_ROOT": str(private_sys_dir(workdir)),
    }
    for namespace in ("TAP_OUTLOOK_CONTACTS", "TARGET_OUTLOOK_CONTACTS"):
        env[f"{namespace}_TOKEN_CACHE_PATH"] = str(token_cache)
    for plugin in TARGETS:
        env[f"{plugin}_REPORT_PATH"] = str(workdir / f"{plugin.lower()}.json")
    return env
