"""`contactsync deactivate`: a user stops their own sync; nothing is deleted anywhere."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime

from contactsync.ops.cli._common import (
    EXIT_OK,
    Commands,
    add_project_options,
    add_user_option,
    fail,
    project_of,
)
from contactsync.ops.users import RegistryError, normalize_email


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "deactivate",
        help="a user: stop your contact sync (deletes nothing)",
        description=(
            "Stop one user's sync: `contactsync run --all` skips them from now on. Nothing is "
            "deleted: not the contacts in Pipeliner or Outlook, not the folder, not the links or "
            "the Meltano state, so `contactsync activate --user EMAIL` later resumes without "
            "duplicates. Other users are not affected."
        ),
        epilog="Exit codes: 0 deactivated (or already), 1 failed, 2 bad arguments.",
    )
    add_user_option(parser)
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.user:
        parser.error("missing --user EMAIL (or CONTACTSYNC_USER_EMAIL)")
    try:
        email = normalize_email(args.user)
    except RegistryError as exc:
        parser.error(str(exc))
    project = project_of(args, parser)
    try:
        with project.registry() as registry:
            user = registry.require(email)
            if not user.active:
                print(f"{email} is already deactivated.")
                return EXIT_OK
            registry.save(replace(user, active=False, deactivated_at=datetime.now(UTC)))
    except RegistryError as exc:
        return fail("deactivate", str(exc))
    print(
        f"Deactivated the contact sync of {email}. Nothing was deleted (folder "
        f"{user.folder_name!r}, its contacts, the links and the sync state are kept); "
        f"`contactsync activate --user {email}` resumes it."
    )
    return EXIT_OK
