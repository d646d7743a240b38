"""`contactsync link`: link a Pipeliner contact and an Outlook contact by hand.

The run report lists ambiguous matches ("… matches several contacts …; link or merge them by
hand"): the sync never guesses which contact is the copy of which. This command records the
pair the user picked in the ledger, as if the first sync had matched them, so that no copy is
created and the two are kept in sync from then on.
"""

from __future__ import annotations

import argparse
import contextlib

from contactsync import settings as cs
from contactsync.http import HttpError
from contactsync.ops.cli._common import (
    EXIT_OK,
    Commands,
    add_project_options,
    add_user_option,
    fail,
    project_of,
)
from contactsync.ops.cli._plugin_config import ConfigError, user_config
from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.api import PipelinerClient, PipelinerError
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.pipeliner.records import tap_record
from contactsync.pipeliner.scope import SyncScope
from contactsync.sync.engine import record_to_payload
from contactsync.sync.ledger import Ledger, LedgerError
from contactsync.sync.link import Link, Side
from contactsync.sync.plan import SourceRecord

#: Why the pending record exists (shown in the ledger and the next run's log).
REASON = "linked by hand (contactsync link): brought in line by the next run"


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "link",
        help="link a Pipeliner contact to an Outlook contact of the user's folder, by hand",
        description=(
            "Link a Pipeliner contact and a contact of the user's Outlook folder, for the "
            "ambiguous matches the run report lists. Both must exist, the Pipeliner contact in "
            "the user's sync scope, the Outlook one in the user's folder, neither linked yet. "
            "The next run brings them in line field by field: a field only one side has goes "
            "to the other; a field both have with different values is a conflict, decided by "
            "the job's conflict_policy. Nothing is written to either service by this command."
        ),
        epilog="Exit codes: 0 linked, 1 refused (the message says why), 2 bad arguments.",
    )
    add_user_option(parser)
    parser.add_argument("--pipeliner-id", required=True, metavar="ID", help="the Pipeliner id")
    parser.add_argument(
        "--outlook-id", required=True, metavar="ID", help="the Outlook (Graph) contact id"
    )
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.user:
        parser.error("--user EMAIL is required")
    project = project_of(args, parser)
    try:
        user, config = user_config(project, args.user)
    except ConfigError as exc:
        return fail("link", str(exc))
    pid, oid = args.pipeliner_id.strip(), args.outlook_id.strip()
    try:
        with contextlib.closing(PipelinerClient(cs.pipeliner_settings(config))) as pipeliner:
            contact = pipeliner.get_contact(pid)
            if contact is None or contact.get("is_deleted"):
                return fail("link", f"Pipeliner contact {pid} does not exist (or is deleted)")
            record = tap_record(contact, cs.resolve_sync_user(pipeliner, config).sync_user)
        scope = SyncScope.parse(user.sync_type, user.sync_option)
        if not scope.includes(record["_sync_user_relation"]):
            return fail(
                "link",
                f"Pipeliner contact {pid} is not in {user.email}'s sync scope ({user.sync_type}"
                f"{', ' + user.sync_option if user.sync_option else ''}): it would not be synced",
            )
        with contextlib.closing(cs.graph_client(config)) as graph:
            folder = graph.resolve_folder(user.folder_id)
            copy = graph.get_contacts(folder, [oid]).get(oid)
        if copy is None or copy.get("parentFolderId") not in (None, folder.id):
            return fail("link", f"Outlook contact {oid} is not in the folder {user.folder_name!r}")
    except (HttpError, PipelinerError, ValueError) as exc:
        return fail("link", str(exc))
    ours, theirs = from_pipeliner(contact), from_graph(copy)
    agreed = {k: v if v == theirs.get(k) else None for k, v in ours.items()}
    key = cs.link_partition(config)
    try:
        with (
            Ledger(project.db_url) as ledger,
            ledger.open_partition(key, owner="contactsync link") as s,
        ):
            for side, record_id in ((Side.CRM, pid), (Side.BOOK, oid)):
                if (existing := s.get(side, record_id)) is not None:
                    other = existing.book_id if side is Side.CRM else existing.crm_id
                    return fail("link", f"{side} contact {record_id} is already linked to {other}")
            s.put(Link(crm_id=pid, book_id=oid, agreed=agreed))
            pending = SourceRecord(pid, ours, version=str(contact.get("revision") or ""))
            s.record_failure(Side.CRM, pid, record_to_payload(pending), REASON)
    except LedgerError as exc:
        return fail("link", str(exc))
    differ = sorted(k for k, v in agreed.items() if v is None and (ours[k] or theirs.get(k)))
    print(
        f"Linked Pipeliner contact {pid} and Outlook contact {oid} for {user.email}. "
        + (
            f"The next run brings {', '.join(differ)} in line."
            if differ
            else "They agree on every field."
        )
    )
    return EXIT_OK
