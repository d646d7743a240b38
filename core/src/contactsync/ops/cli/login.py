"""`contactsync login`: sign in once with the device code, ahead of runs; the token cache file
it writes (mode 0600) is what the Outlook tap and target use to stay signed in."""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path

from contactsync.ops.cli._common import EXIT_FAILED, EXIT_OK, PROG, Commands, env_default
from contactsync.outlook.auth import AuthConfigError, AuthError, AuthSettings, TokenProvider

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


def add(commands: Commands) -> None:
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
            default=env_default(env),
            metavar=dest.upper().replace("_", "-"),
            help=f"{text} (env {env}; required)",
        )
    parser.add_argument(
        "--ca-bundle",
        default=env_default("CONTACTSYNC_CA_BUNDLE"),
        metavar="PATH",
        help="PEM file of the CAs to trust for the authority (env CONTACTSYNC_CA_BUNDLE)",
    )
    parser.add_argument(
        "--account",
        default=env_default("CONTACTSYNC_ACCOUNT"),
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
