"""`contactsync activate`: a user turns on their own sync (sign-in, folder, sync type, option)."""

from __future__ import annotations

import argparse
import os

from contactsync.ops import space_secrets
from contactsync.ops.cli._accounts import (
    CheckFailed,
    personal_folder,
    pipeliner_user_id,
    sign_in,
    token_provider,
)
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
from contactsync.ops.users import RegistryError, UserSync, normalize_email, state_suffix_for
from contactsync.outlook.auth import AuthError


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "activate",
        help="a user: activate your contact sync (sign in, folder, sync type, option)",
        description=(
            "Activate the contact sync of one user of the space (after `contactsync enable`). "
            "Signs the user in to Microsoft 365 with a device code (open the page shown, enter "
            "the code, pick your account and Accept) unless the space uses app-only access, "
            "checks the folder is a personal contacts folder of the user's mailbox (or creates "
            "it), finds the user in Pipeliner by e-mail, and stores the settings. Re-activating "
            "a deactivated user resumes the same sync (same links and state), with the "
            "previous settings unless new ones are given."
        ),
        epilog="Exit codes: 0 activated, 1 failed (the message says why), 2 bad arguments.",
    )
    add_user_option(parser)
    add_sync_options(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="give up when the sign-in is not completed in time (default 900)",
    )
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
    with project.registry() as registry:
        try:
            space = registry.require_space()
            previous = registry.get(email)
        except RegistryError as exc:
            return fail("activate", str(exc))
        if previous is not None and previous.active:
            return fail(
                "activate",
                f"{email} is already active; change settings with `contactsync configure "
                f"--user {email} ...`, or deactivate first",
            )
        folder = args.folder or args.create_folder or (previous.folder_id if previous else None)
        if not folder:
            parser.error(
                "choose the folder: --folder NAME|ID (an existing personal contacts folder) or "
                "--create-folder [NAME] (a new one, default 'Pipeliner')"
            )
        sync_type, option = type_and_option(
            parser,
            args.sync_type,
            args.option,
            (previous.sync_type, previous.sync_option) if previous else None,
        )
        try:
            secrets = space_secrets.resolve(space.secrets_file, os.environ, app_only=space.app_only)
            client_id = pipeliner_user_id(space, secrets, email)
            cache = None if space.app_only else project.token_cache(email)
            provider = token_provider(space, secrets, email, cache)
            try:
                how = sign_in(
                    provider,
                    echo=lambda message: print(message, flush=True),
                    timeout=args.timeout,
                    interactive=True,
                )
                found = personal_folder(
                    space, provider, email, folder, create=bool(args.create_folder)
                )
            finally:
                provider.close()
        except (space_secrets.SecretsError, CheckFailed, AuthError) as exc:
            return fail("activate", f"{exc}; nothing was stored")
        except KeyboardInterrupt:
            return fail("activate", "interrupted; nothing was stored")
        user = UserSync(
            email=email,
            sync_type=sync_type,
            sync_option=option,
            folder_id=found.id,
            folder_name=found.display_name,
            mailbox=email,
            token_cache=str(cache) if cache else None,
            pipeliner_user_id=client_id,
            state_suffix=previous.state_suffix if previous else state_suffix_for(email),
            active=True,
            activated_at=None,
            deactivated_at=None,
            last_run=None,
        )
        try:
            registry.save(user)
        except RegistryError as exc:
            return fail("activate", str(exc))
    again = "Re-activated" if previous else "Activated"
    shown = sync_type + (f" ({option})" if option else "")
    print(
        f"{again} the contact sync of {email} (signed in: {how}): folder "
        f"{found.display_name!r}, {shown}. It runs with `contactsync run --user {email}` "
        "(or --all)."
    )
    return EXIT_OK
