"""`contactsync status`: one row per user (active, sync type, folder, last run, counts, error)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from contactsync.cli._common import (
    EXIT_OK,
    Commands,
    add_project_options,
    describe_counts,
    fail,
    project_of,
    table,
)
from contactsync.users import RegistryError, UserSync


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "status",
        help="the space and one row per user: active, sync type, folder, last run, errors",
        description="Show the space's sync settings and every user's sync and last run.",
        epilog="Exit codes: 0 shown, 1 failed (e.g. not enabled yet), 2 bad arguments.",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (for scripts and orchestrators)"
    )
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def row(user: UserSync) -> list[str]:
    last = user.last_run
    return [
        user.email,
        "active" if user.active else "deactivated",
        user.sync_type,
        user.sync_option or "-",
        user.folder_name,
        f"{_when(last.finished_at)} {last.status}" if last else "never",
        describe_counts(last.counts) if last else "-",
        (last.error or "") if last else "",
    ]


HEADERS = ("user", "state", "sync type", "option", "folder", "last run", "counts", "error")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    project = project_of(args, parser)
    try:
        with project.registry() as registry:
            space = registry.require_space()
            users = registry.users()
    except RegistryError as exc:
        return fail("status", str(exc))
    if args.json:
        out = {
            "space": _jsonable(asdict(space)),
            "users": [_jsonable({**asdict(u), "job": u.job}) for u in users],
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    mode = "app-only" if space.app_only else "delegated sign-in"
    active = sum(u.active for u in users)
    print(
        f"Pipeliner space {space.space_id} at {space.service_url}; Microsoft {mode}; "
        f"{len(users)} user(s), {active} active"
    )
    if users:
        print(table(HEADERS, [row(u) for u in users]))
    return EXIT_OK
