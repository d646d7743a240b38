"""`contactsync`: commands run by people around the sync (the sync itself runs in Meltano).

Subcommands:

* ``login`` - sign in once with the device code, ahead of runs; the token cache file it
  writes (mode 0600) is what the Outlook tap and target use to stay signed in.

Every option also comes from an environment variable (``CONTACTSYNC_...``), so a shell or a
Meltano environment can set them once. Exit codes: 0 success, 1 the command failed (the
message says why), 2 bad arguments.

Adding a subcommand: write ``_add_<name>(commands)`` that creates its parser with
``set_defaults(run=<function returning an exit code>, command_parser=<its parser>)`` and list
it in ``SUBCOMMANDS``; the function is called as ``run(args, command_parser)`` and reports bad
arguments with ``command_parser.error(...)`` (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from contactsync import __version__
from contactsync.auth import AuthConfigError, AuthError, AuthSettings, TokenProvider

PROG = "contactsync"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, with `error` raising instead of exiting, so `main` returns the code."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def _env_default(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


# --------------------------------------------------------------------------- login


LOGIN_OPTIONS = (
    # (flag, dest, environment variable, help)
    (
        "--authority",
        "authority",
        "CONTACTSYNC_AUTHORITY",
        "authority with the tenant, e.g. https://login.microsoftonline.com/<tenant id or domain>",
    ),
    (
        "--client-id",
        "client_id",
        "CONTACTSYNC_CLIENT_ID",
        "Application (client) ID of the app registration",
    ),
    (
        "--token-cache",
        "token_cache",
        "CONTACTSYNC_TOKEN_CACHE",
        "token cache file to write (mode 0600); the plugins' token_cache_path",
    ),
)


def _add_login(commands: argparse._SubParsersAction[_Parser]) -> None:
    parser = commands.add_parser(
        "login",
        help="sign in once with a device code, ahead of runs",
        description=(
            "Sign in to Microsoft 365 with a device code: the command prints a page to open and "
            "a code to enter there; pick your Microsoft account and click Accept. The tokens "
            "are kept in the token cache file (mode 0600), from which every later run signs in "
            "silently (and keeps the refresh token up to date). App-only setups (client "
            "secret) need no login."
        ),
        epilog=(
            "Exit codes: 0 signed in, 1 sign-in failed (the message says why), 2 bad arguments."
        ),
    )
    for flag, dest, env, text in LOGIN_OPTIONS:
        parser.add_argument(
            flag,
            dest=dest,
            default=_env_default(env),
            metavar=dest.upper().replace("_", "-"),
            help=f"{text} (env {env}; required)",
        )
    parser.add_argument(
        "--ca-bundle",
        default=_env_default("CONTACTSYNC_CA_BUNDLE"),
        metavar="PATH",
        help="PEM file of the CAs to trust for the authority (env CONTACTSYNC_CA_BUNDLE)",
    )
    parser.add_argument(
        "--account",
        default=_env_default("CONTACTSYNC_ACCOUNT"),
        metavar="UPN",
        help="the account that must sign in, e.g. alex@contoso.example (env CONTACTSYNC_ACCOUNT)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="give up when sign-in is not completed in time (default 900)",
    )
    parser.set_defaults(run=_login, command_parser=parser)


def _login(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    missing = [
        f"{flag} (or {env})" for flag, dest, env, _ in LOGIN_OPTIONS if not getattr(args, dest)
    ]
    if missing:
        parser.error("missing " + ", ".join(missing))
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    try:
        settings = AuthSettings(
            authority=args.authority,
            client_id=args.client_id,
            token_cache_path=args.token_cache,
            ca_bundle=args.ca_bundle,
            account=args.account,
        )
    except AuthConfigError as exc:
        parser.error(str(exc))
    provider = TokenProvider(settings)
    try:
        account = provider.login_device_code(
            echo=lambda message: print(message, flush=True), timeout=args.timeout
        )
    except AuthError as exc:
        print(f"{PROG} login: sign-in failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG} login: interrupted; nothing was saved", file=sys.stderr)
        return EXIT_FAILED
    finally:
        provider.close()
    path = Path(settings.token_cache_path or "")
    mode = stat.S_IMODE(path.stat().st_mode)
    print(f"Signed in as {account['username']}; token cache: {path} (mode {mode:04o})")
    return EXIT_OK


# --------------------------------------------------------------------------- main

SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[_Parser]], None], ...] = (_add_login,)


def build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=(
            "contactsync: Pipeliner CRM <-> Outlook contacts sync. The sync runs in Meltano "
            "(meltano run ...); these commands prepare and inspect it."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log details to stderr (never tokens)"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            level=logging.DEBUG if args.verbose else logging.WARNING,
        )
        code: int = args.run(args, args.command_parser)
        return code
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
