"""`contactsync`: commands run by people around the sync (the sync itself runs in Meltano).

* ``login`` - a person signs in once with the device code (token cache for the plugins);
* ``enable`` - the administrator enables the sync for the Pipeliner space;
* ``activate`` / ``configure`` / ``deactivate`` - a user manages their own sync;
* ``status`` - one row per user; ``run`` - the users' Meltano jobs, in parallel if asked;
* ``link`` - link an ambiguous match by hand;
* ``conflicts`` - the values that lost a conflict, and restoring one.

Every option also comes from an environment variable, so a shell, a Meltano environment or an
orchestrator can set them once. Exit codes: 0 success, 1 the command failed (the message says
why), 2 bad arguments.

Adding a subcommand: a module with ``add(commands)`` that creates its parser with
``set_defaults(run=<function returning an exit code>, command_parser=<its parser>)``, listed
in ``SUBCOMMANDS``; the function is called as ``run(args, command_parser)`` and reports bad
arguments with ``command_parser.error(...)`` (exit 2).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from contactsync import __version__
from contactsync.ops.cli import (
    activate,
    configure,
    conflicts,
    deactivate,
    enable,
    link,
    login,
    run,
    status,
)
from contactsync.ops.cli._common import EXIT_OK, EXIT_USAGE, PROG, Commands, Parser, UsageError

SUBCOMMANDS: tuple[Callable[[Commands], None], ...] = (
    login.add,
    enable.add,
    activate.add,
    configure.add,
    deactivate.add,
    status.add,
    run.add,
    link.add,
    conflicts.add,
)


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description=(
            "contactsync: Pipeliner CRM <-> Outlook contacts sync. The sync runs in Meltano; "
            "these commands set it up for a Pipeliner space and its users, and run it. "
            "Administrator: enable. Each user: activate, configure, deactivate. "
            "Operator: status, run."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log details to stderr (never tokens)"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, required=True
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
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK


__all__ = ["SUBCOMMANDS", "build_parser", "main"]
