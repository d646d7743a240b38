"""`contactsync conflicts`: the values that lost a conflict, to see and, if wanted, restore.

When both sides changed the same field of a contact, the job's ``conflict_policy`` keeps one
value; the run keeps the other in the ledger (never in a log) and its report names the contact
and the field. This command lists those values for one user, and ``--restore ID`` puts a lost
value back: it writes it to the side whose value was kept (checking the user's rights there, as
a run does), and the next run carries it to the other side like any edit.
"""

from __future__ import annotations

import argparse
import contextlib
import json

from contactsync import settings as cs
from contactsync.http import HttpError
from contactsync.ops.cli._common import (
    EXIT_OK,
    Commands,
    add_project_options,
    add_user_option,
    fail,
    project_of,
    table,
)
from contactsync.ops.cli._plugin_config import ConfigError, user_config
from contactsync.pipeliner.api import PipelinerError
from contactsync.pipeliner.scope import SyncScope
from contactsync.sync.engine import Destination
from contactsync.sync.ledger import Ledger, LedgerError, LostValue, PartitionLedger
from contactsync.sync.link import Side
from contactsync.sync.plan import Action, Kind


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "conflicts",
        help="list the values that lost a conflict, and restore one",
        description=(
            "When Pipeliner and Outlook both changed the same field of a contact, the job's "
            "conflict_policy kept one value and the run saved the other. This lists the saved "
            "values of a user (newest first). --restore ID writes the saved value to the side "
            "that kept the other one (with the user's rights there); the next run brings the "
            "other side in line."
        ),
        epilog="Exit codes: 0 done, 1 refused (the message says why), 2 bad arguments.",
    )
    add_user_option(parser)
    parser.add_argument("--restore", metavar="ID", help="put back the lost value of conflict ID")
    parser.add_argument(
        "--all", action="store_true", help="list restored conflicts too, not only open ones"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.user:
        parser.error("--user EMAIL is required")
    try:
        user, config = user_config(project_of(args, parser), args.user)
    except ConfigError as exc:
        return fail("conflicts", str(exc))
    project = project_of(args, parser)
    try:
        with (
            Ledger(project.db_url) as ledger,
            ledger.open_partition(
                cs.link_partition(config), owner="contactsync conflicts"
            ) as scope,
        ):
            if args.restore:
                return _restore(scope, config, args.restore.strip())
            lost = scope.lost_values(restored=None if args.all else False)
    except LedgerError as exc:
        return fail("conflicts", str(exc))
    if args.json:
        print(json.dumps([_as_dict(item) for item in lost], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not lost:
        print(f"No conflicts to show for {user.email}.")
        return EXIT_OK
    rows = [
        (
            item.conflict_id,
            item.crm_id,
            item.field,
            f"{item.kept_side}: {item.kept_value or '(empty)'}",
            f"{item.kept_side.other}: {item.lost_value or '(empty)'}",
            item.decided_at.strftime("%Y-%m-%d %H:%M"),
            "restored" if item.restored_at else "",
        )
        for item in lost
    ]
    print(table(("id", "pipeliner contact", "field", "kept", "lost", "decided", ""), rows))
    print(f"Restore a lost value: contactsync conflicts --user {user.email} --restore ID")
    return EXIT_OK


def _as_dict(item: LostValue) -> dict[str, object]:
    return {
        "id": item.conflict_id,
        "pipeliner_id": item.crm_id,
        "field": item.field,
        "kept_side": str(item.kept_side),
        "kept_value": item.kept_value,
        "lost_side": str(item.kept_side.other),
        "lost_value": item.lost_value,
        "policy": item.policy,
        "decided_at": item.decided_at.isoformat(),
        "restored_at": item.restored_at.isoformat() if item.restored_at else None,
    }


def _restore(scope: PartitionLedger, config: dict[str, object], conflict_id: str) -> int:
    found = [c for c in scope.lost_values(restored=None) if c.conflict_id == conflict_id]
    if not found:
        return fail("conflicts", f"no conflict {conflict_id!r} for this user (see the list)")
    item = found[0]
    if item.restored_at is not None:
        return fail("conflicts", f"conflict {conflict_id} was restored already")
    link = scope.get(Side.CRM, item.crm_id)
    target = item.crm_id if item.kept_side is Side.CRM else (link and link.book_id)
    if link is None or not target:
        return fail(
            "conflicts",
            f"Pipeliner contact {item.crm_id} is no longer synced with an Outlook copy; "
            "nothing to restore into",
        )
    try:
        with _destination(config, item.kept_side) as dest:
            dest.fetch([target])
            [result] = dest.apply(
                [
                    Action(
                        Kind.UPDATE,
                        item.crm_id,
                        target,
                        fields={item.field: item.lost_value},
                        reason="a lost conflict value restored by hand",
                    )
                ]
            )
    except (HttpError, PipelinerError, ValueError) as exc:
        return fail("conflicts", str(exc))
    if not result.ok:
        return fail("conflicts", f"{item.kept_side} refused the write: {result.error}")
    scope.mark_restored(conflict_id)
    print(
        f"Restored {item.field} of Pipeliner contact {item.crm_id} in {item.kept_side}; "
        "the next run brings the other side in line."
    )
    return EXIT_OK


@contextlib.contextmanager
def _destination(config: dict[str, object], side: Side):  # noqa: ANN202 - a context manager
    """The sync's own writer of ``side`` (rights checks and field placement included)."""
    if side is Side.CRM:
        from contactsync.pipeliner.api import PipelinerClient
        from contactsync.pipeliner.destination import PipelinerDestination

        with PipelinerClient(cs.pipeliner_settings(config)) as client:
            scope = SyncScope.parse(str(config["sync_type"]), config.get("sync_option"))  # type: ignore[arg-type]
            yield PipelinerDestination(client, cs.resolve_sync_user(client, config), scope)
        return
    from contactsync.outlook.destination import OutlookDestination

    with contextlib.closing(cs.graph_client(config)) as graph:
        folder = graph.resolve_folder(str(config["folder"]))
        dest: Destination = OutlookDestination(graph, folder)
        yield dest
