"""`contactsync configure`: a user changes their folder, sync type or option; the next run
honours it (a wider scope re-reads Pipeliner, a narrower one removes the Outlook copies)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from contactsync.ops import space_secrets
from contactsync.ops.cli._accounts import CheckFailed, personal_folder, sign_in, token_provider
from contactsync.ops.cli._common import (
    EXIT_OK,
    Commands,
    add_project_options,
    add_sync_options,
    add_user_option,
    fail,
    project_of,
    type_and_option,
)
from contactsync.ops.users import RegistryError, normalize_email
from contactsync.outlook.auth import AuthError


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "configure",
        help="a user: change your folder, sync type or option",
        description=(
            "Change an activated (or deactivated) user's sync settings; the next run uses them. "
            "A new folder is checked like at activation (a personal contacts folder of the "
            "user's mailbox, or created with --create-folder); it starts a new sync into that "
            "folder, and the old folder keeps its contacts."
        ),
        epilog="Exit codes: 0 changed, 1 failed (the message says why), 2 bad arguments.",
    )
    add_user_option(parser)
    add_sync_options(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="when a new folder needs a new sign-in: give up after this long (default 900)",
    )
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.user:
        parser.error("missing --user EMAIL (or CONTACTSYNC_USER_EMAIL)")
    if not (args.folder or args.create_folder or args.sync_type or args.option):
        parser.error("nothing to change: give --folder, --create-folder, --sync-type or --option")
    try:
        email = normalize_email(args.user)
    except RegistryError as exc:
        parser.error(str(exc))
    project = project_of(args, parser)
    with project.registry() as registry:
        try:
            space = registry.require_space()
            user = registry.require(email)
        except RegistryError as exc:
            return fail("configure", str(exc))
        sync_type, option = type_and_option(
            parser, args.sync_type, args.option, (user.sync_type, user.sync_option)
        )
        changed = replace(user, sync_type=sync_type, sync_option=option)
        wanted = args.folder or args.create_folder
        if wanted:
            try:
                secrets = space_secrets.resolve(
                    space.secrets_file, os.environ, app_only=space.app_only
                )
                cache = Path(user.token_cache) if user.token_cache else None
                provider = token_provider(space, secrets, email, cache)
                try:
                    sign_in(provider, echo=print, timeout=args.timeout, interactive=True)
                    found = personal_folder(
                        space, provider, user.mailbox, wanted, create=bool(args.create_folder)
                    )
                finally:
                    provider.close()
            except (space_secrets.SecretsError, CheckFailed, AuthError) as exc:
                return fail("configure", f"{exc}; nothing was changed")
            changed = replace(changed, folder_id=found.id, folder_name=found.display_name)
        try:
            registry.save(changed)
        except RegistryError as exc:
            return fail("configure", str(exc))
    diffs = [
        f"{label} {before!r} -> {after!r}"
        for label, before, after in (
            ("sync_type", user.sync_type, changed.sync_type),
            ("sync_option", user.sync_option, changed.sync_option),
            ("folder", user.folder_name, changed.folder_name),
        )
        if before != after or (label == "folder" and user.folder_id != changed.folder_id)
    ]
    state = "" if user.active else " (the sync is deactivated: `contactsync activate` resumes it)"
    print(f"Configured {email}: {', '.join(diffs) or 'no change'}; the next run uses it{state}.")
    return EXIT_OK
