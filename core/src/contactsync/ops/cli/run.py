"""`contactsync run`: each active user's Meltano job with their settings and state suffix."""

from __future__ import annotations

import argparse
import os
import threading

from contactsync.ops import space_secrets
from contactsync.ops.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    Commands,
    add_project_options,
    describe_counts,
    env_default,
    fail,
    project_of,
    table,
)
from contactsync.ops.meltano_runs import RunResult, RunSetup, run_users
from contactsync.ops.precheck import DEFAULT_MAX_INTERVAL_SECONDS
from contactsync.ops.users import RegistryError, UserSync, normalize_email


def add(commands: Commands) -> None:
    parser = commands.add_parser(
        "run",
        help="run the sync of one user, or of every active user",
        description=(
            "Run `meltano run --state-id-suffix=<user> <job>` for each chosen active user, the "
            "job following the user's sync type (two-way-your-contacts, one-way-your-contacts, "
            "one-way-all-contacts) and the settings coming from the registry as Meltano "
            "environment variables. Each run uses its own working copy of the project (so runs "
            "can go in parallel), all sharing one Meltano system database (the state) and the "
            "ledger. Progress is printed as runs start and end, then a summary table; each "
            "user's last run, counts and error are kept for `contactsync status`. Before "
            "starting a user's run, a pre-check asks Pipeliner and Outlook what the taps would "
            "(from the bookmarks in Meltano's state) and skips the run when provably nothing "
            "changed: recorded as `skipped: nothing changed`."
        ),
        epilog="Exit codes: 0 every run succeeded, 1 some failed (see the table), 2 bad arguments.",
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--user",
        action="append",
        metavar="EMAIL",
        help="this user (repeat for several)",
    )
    who.add_argument("--all", action="store_true", help="every active user")
    parser.add_argument(
        "--parallel",
        type=int,
        default=int(env_default("CONTACTSYNC_PARALLEL") or 1),
        metavar="K",
        help="run up to K users at once (env CONTACTSYNC_PARALLEL; default 1)",
    )
    parser.add_argument(
        "--environment",
        default=env_default("MELTANO_ENVIRONMENT"),
        metavar="NAME",
        help="Meltano environment (env MELTANO_ENVIRONMENT; default: the project's default)",
    )
    parser.add_argument(
        "--state-db",
        default=env_default("MELTANO_DATABASE_URI"),
        metavar="URI",
        help="Meltano system database holding every user's state, shared by all runs "
        "(env MELTANO_DATABASE_URI; default sqlite:///<project>/.meltano/meltano.db)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="stop a user's run after this long (default 3600)",
    )
    parser.add_argument(
        "--full-check-every",
        type=float,
        default=float(
            env_default("CONTACTSYNC_FULL_CHECK_EVERY") or DEFAULT_MAX_INTERVAL_SECONDS / 60
        ),
        metavar="MINUTES",
        help="run a user's job at least this often even when the pre-check finds nothing to do; "
        "each user's window is shifted by a fixed offset, so users do not all come due in "
        "one tick (env CONTACTSYNC_FULL_CHECK_EVERY; default 60; 0 turns the pre-check off)",
    )
    parser.add_argument(
        "--no-precheck",
        action="store_true",
        default=(env_default("CONTACTSYNC_PRECHECK") or "").lower() in ("0", "false", "no", "off"),
        help="always run the job, without asking the APIs first (env CONTACTSYNC_PRECHECK=false)",
    )
    add_project_options(parser)
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (args.user or args.all):
        parser.error("choose --user EMAIL or --all")
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if args.full_check_every < 0:
        parser.error("--full-check-every must be 0 or more minutes")
    project = project_of(args, parser)
    try:
        wanted = [normalize_email(u) for u in args.user or ()]
    except RegistryError as exc:
        parser.error(str(exc))
    registry = project.registry()
    try:
        space = registry.require_space()
        if args.all:
            users = [u for u in registry.users() if u.active]
        else:
            users = [registry.require(email) for email in dict.fromkeys(wanted)]
            inactive = [u.email for u in users if not u.active]
            if inactive:
                return fail(
                    "run",
                    f"{', '.join(inactive)} deactivated: `contactsync activate --user EMAIL` first",
                )
        secrets = space_secrets.resolve(space.secrets_file, os.environ, app_only=space.app_only)
    except (RegistryError, space_secrets.SecretsError) as exc:
        registry.close()
        return fail("run", str(exc))
    if not users:
        registry.close()
        print("No active user: nothing to run (users activate with `contactsync activate`).")
        return EXIT_OK
    state_db = args.state_db or f"sqlite:///{project.root / '.meltano' / 'meltano.db'}"
    setup = RunSetup(
        project_dir=project.root,
        data_dir=project.data_dir,
        ledger_url=project.db_url,
        state_db_uri=state_db,
        environment=args.environment,
        timeout=args.timeout,
        precheck=not args.no_precheck and args.full_check_every > 0,
        full_check_every=args.full_check_every * 60,
    )
    total, finished = len(users), 0
    printing = threading.Lock()

    def progress(event: str, user: UserSync, result: RunResult | None) -> None:
        nonlocal finished
        with printing:
            if result is None:
                print(f"[{finished}/{total}] {user.email}: {user.job} started", flush=True)
                return
            finished += 1
            if result.skipped:
                what = f"{result.skipped} (checked in {result.seconds:.1f} s)"
            elif result.ok:
                what = f"done in {result.seconds:.1f} s; {describe_counts(result.counts)}"
                if result.ran_because:
                    what += f" (ran: {result.ran_because})"
            elif result.refused:
                what = f"REFUSED: {result.error}"
            else:
                what = (
                    f"FAILED after {result.seconds:.1f} s: {result.error} (log: {result.log_path})"
                )
            print(f"[{finished}/{total}] {user.email}: {what}", flush=True)
            try:  # the registry tells `status` (and the next operator) what happened
                registry.record_run(user.email, result.record())
            except RegistryError as exc:
                print(f"  (could not record the run: {exc})", flush=True)

    try:
        parallel = min(args.parallel, total)
        print(f"Running {total} user(s), {parallel} at a time", flush=True)
        results = run_users(setup, space, secrets, users, parallel=parallel, on_event=progress)
    finally:
        registry.close()
    rows = [
        [
            r.email,
            r.job,
            r.status if r.ok else r.status.upper(),
            f"{r.seconds:.1f}",
            "nothing changed" if r.skipped else describe_counts(r.counts),
            _short(r.error),
        ]
        for r in results
    ]
    print(table(("user", "job", "result", "seconds", "counts", "error"), rows))
    failed = sum(not r.ok for r in results)
    refused = sum(r.refused for r in results)
    skipped = sum(bool(r.skipped) for r in results)
    print(
        f"{total - failed} succeeded, {failed} failed"
        + (f" ({refused} refused)" if refused else "")
        + (f"; {skipped} skipped: nothing changed" if skipped else "")
    )
    for r in results:
        if not r.ok and not r.refused:
            print(f"log of {r.email}: {r.log_path}")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def _short(error: str | None) -> str:
    """The cause as the failing plugin said it; very long ones cut (the log has it whole)."""
    if not error:
        return ""
    return error if len(error) <= 300 else f"{error[:297]}..."
