"""`contactsync status`: one row per user (active, sync type, folder, last run, counts, error),
and with ``--user`` the records of that user that need attention (parked: refused for their data
until they change), as the last run's reports list them."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from contactsync.ops.cli._common import (
    EXIT_OK,
    Commands,
    Project,
    add_project_options,
    describe_counts,
    fail,
    project_of,
    table,
)
from contactsync.ops.meltano_runs import REPORTS, user_scope
from contactsync.ops.precheck import SKIPPED
from contactsync.ops.users import RegistryError, SpaceConfig, UserSync, normalize_email
from contactsync.sync.ledger import Ledger, LedgerError


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
    parser.add_argument(
        "--user",
        metavar="EMAIL",
        help="also list that user's records that need attention, with what to do",
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


def folder_label(user: UserSync, current: str | None) -> str:
    """The folder by its current name (as the last run saw it), and the name it was set up by."""
    if not current or current == user.folder_name:
        return user.folder_name
    return f"{current} (renamed from {user.folder_name})"


def current_folder_names(
    project: Project, space: SpaceConfig, users: list[UserSync]
) -> dict[str, str]:
    """Each user's folder by its current name, as the sync's last run bound it (by id)."""
    try:
        with Ledger(project.db_url) as ledger:
            bindings = ledger.folder_bindings()
    except LedgerError:
        return {}
    names = {}
    for user in users:
        binding = bindings.get(user_scope(space, user))
        if binding is not None:
            names[user.email] = binding.display_name
    return names


def _status(status: str) -> str:
    return SKIPPED if status == "skipped" else status


def row(user: UserSync, current: str | None = None) -> list[str]:
    last = user.last_run
    return [
        user.email,
        "active" if user.active else "deactivated",
        user.sync_type,
        user.sync_option or "-",
        folder_label(user, current),
        f"{_when(last.finished_at)} {_status(last.status)}" if last else "never",
        describe_counts(last.counts) if last else "-",
        (last.error or "") if last else "",
    ]


HEADERS = ("user", "state", "sync type", "option", "folder", "last run", "counts", "error")


def needs_attention(reports: Path) -> list[dict[str, str]]:
    """The records the last run's reports of a user list as needing attention."""
    found: list[dict[str, str]] = []
    for name in sorted(set(REPORTS.values()), reverse=True):
        try:
            report = json.loads((reports / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found += [
            {"leg": str(report.get("leg")), "record_id": i["record_id"], "reason": i["reason"]}
            for i in report.get("issues") or ()
            if i.get("outcome") == "needs attention"
        ]
    return found


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    project = project_of(args, parser)
    if args.user:
        return _one_user(project, args)
    try:
        with project.registry() as registry:
            space = registry.require_space()
            users = registry.users()
    except RegistryError as exc:
        return fail("status", str(exc))
    current = current_folder_names(project, space, users)
    if args.json:
        out = {
            "space": _jsonable(asdict(space)),
            "users": [
                _jsonable(
                    {
                        **asdict(u),
                        "job": u.job,
                        "folder_current_name": current.get(u.email, u.folder_name),
                    }
                )
                for u in users
            ],
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
        print(table(HEADERS, [row(u, current.get(u.email)) for u in users]))
    return EXIT_OK


def _one_user(project: Project, args: argparse.Namespace) -> int:
    try:
        with project.registry() as registry:
            user = registry.require(normalize_email(args.user))
            space = registry.require_space()
    except RegistryError as exc:
        return fail("status", str(exc))
    current = current_folder_names(project, space, [user]).get(user.email)
    parked = needs_attention(project.data_dir / "reports" / user.state_suffix)
    if args.json:
        out = {
            **_jsonable({**asdict(user), "job": user.job}),
            "folder_current_name": current or user.folder_name,
            "needs_attention": parked,
        }
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(table(HEADERS, [row(user, current)]))
    if not parked:
        print(f"Nothing of {user.email} needs attention.")
        return EXIT_OK
    print(f"{len(parked)} record(s) of {user.email} need attention (not retried until changed):")
    for item in parked:
        print(f"  {item['leg']} {item['record_id']}: {item['reason']}")
    return EXIT_OK
