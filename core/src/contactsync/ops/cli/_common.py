"""What every `contactsync` command shares: the parser class, environment defaults, the project
(Meltano project directory, its `.contactsync/` data directory, the registry database)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from contactsync.ops.users import Registry
from contactsync.sync.report import describe

PROG = "contactsync"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SYNC_TYPES = ("two_way_your_contacts", "one_way_your_contacts", "one_way_all_contacts")
SYNC_OPTIONS = ("owner", "owner_or_editor")
DEFAULT_FOLDER = "Pipeliner"

Commands = argparse._SubParsersAction  # the `add_subparsers` result each module adds to


class Parser(argparse.ArgumentParser):
    """argparse, with `error` raising instead of exiting, so `main` returns the code."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: error: {message}")


class UsageError(Exception):
    pass


def env_default(*names: str) -> str | None:
    """The first non-empty of these environment variables."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def fail(command: str, message: str) -> int:
    print(f"{PROG} {command}: {message}", file=sys.stderr)
    return EXIT_FAILED


def add_project_options(parser: argparse.ArgumentParser) -> None:
    """--project-dir and --db, which every registry command takes."""
    group = parser.add_argument_group("project")
    group.add_argument(
        "--project-dir",
        default=env_default("MELTANO_PROJECT_ROOT"),
        metavar="DIR",
        help="the Meltano project (with meltano.yml); default: the nearest one above the "
        "current directory (env MELTANO_PROJECT_ROOT)",
    )
    group.add_argument(
        "--data-dir",
        default=env_default("CONTACTSYNC_DATA_DIR"),
        metavar="DIR",
        help="contactsync's files: token caches, secrets, reports, logs, working copies; "
        "default <project>/.contactsync (env CONTACTSYNC_DATA_DIR)",
    )
    group.add_argument(
        "--db",
        default=env_default("CONTACTSYNC_LEDGER_URL"),
        metavar="URL",
        help="database of the ledger and the users' registry: a SQLite file or a SQLAlchemy URL "
        "(postgresql://...); default <data dir>/ledger.sqlite "
        "(env CONTACTSYNC_LEDGER_URL; the plugins' ledger_url)",
    )


@dataclass(frozen=True)
class Project:
    """The Meltano project a command works on, and where contactsync keeps its files."""

    root: Path
    data_dir: Path
    db_url: str  # absolute SQLite path, or a database URL

    def token_cache(self, email: str) -> Path:
        return self.data_dir / "tokens" / f"{email}.json"

    def registry(self) -> Registry:
        return Registry(self.db_url)


def find_project(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "meltano.yml").is_file():
            return folder
    return None


def project_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Project:
    """The project from --project-dir/--db; relative paths resolved against the project."""
    if args.project_dir:
        root = Path(args.project_dir).expanduser().resolve()
        if not (root / "meltano.yml").is_file():
            parser.error(f"--project-dir {root} has no meltano.yml")
    else:
        found = find_project(Path.cwd().resolve())
        if found is None:
            parser.error(
                "no meltano.yml in this directory or above: run from the contactsync project, "
                "or set --project-dir (env MELTANO_PROJECT_ROOT)"
            )
        root = found
    data = Path(args.data_dir).expanduser() if args.data_dir else Path(".contactsync")
    data = data if data.is_absolute() else root / data
    db = args.db or str(data / "ledger.sqlite")
    if "://" not in db:
        path = Path(db).expanduser()
        db = str(path if path.is_absolute() else (root / path))
    return Project(root=root, data_dir=data, db_url=db)


def add_user_option(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--user",
        default=env_default("CONTACTSYNC_USER_EMAIL"),
        metavar="EMAIL",
        help="the user's e-mail in Pipeliner, also their Microsoft 365 sign-in (UPN) "
        "(env CONTACTSYNC_USER_EMAIL; the plugins' user_email)"
        + ("; required" if required else ""),
    )


def add_sync_options(parser: argparse.ArgumentParser) -> None:
    """--folder / --create-folder, --sync-type, --option: what activate and configure take."""
    folder = parser.add_mutually_exclusive_group()
    folder.add_argument(
        "--folder",
        metavar="NAME|ID",
        help="an existing personal contacts folder of the user's mailbox: 'Contacts' (the "
        "default folder), a subfolder's name, or a folder id (the plugins' folder)",
    )
    folder.add_argument(
        "--create-folder",
        nargs="?",
        const=DEFAULT_FOLDER,
        metavar="NAME",
        help=f"a new folder under Contacts (default name {DEFAULT_FOLDER!r}); an existing "
        "folder of that name is used as it is",
    )
    parser.add_argument(
        "--sync-type",
        choices=SYNC_TYPES,
        help="what is synced and which way (the plugins' sync_type)",
    )
    parser.add_argument(
        "--option",
        "--sync-option",
        dest="option",
        choices=SYNC_OPTIONS,
        help="for the 'your contacts' types: owned contacts, or owned + editor (the plugins' "
        "sync_option; not for one_way_all_contacts)",
    )


def type_and_option(
    parser: argparse.ArgumentParser,
    sync_type: str | None,
    option: str | None,
    previous: tuple[str, str | None] | None,
) -> tuple[str, str | None]:
    """The sync type and option after applying the arguments to the previous settings.

    An option never goes with one_way_all_contacts; a 'your contacts' type without one syncs
    the owner's contacts (the product's default)."""
    new_type = sync_type or (previous[0] if previous else SYNC_TYPES[0])
    if new_type == "one_way_all_contacts":
        if option:
            parser.error(
                "--option (sync_option) does not apply to one_way_all_contacts: it syncs every "
                "contact the user can see; leave --option out"
            )
        return new_type, None
    kept = previous[1] if previous and previous[1] else None
    return new_type, option or kept or "owner"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table (no dependency): columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
        for r in (headers, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


LEG_NAMES = {"pipeliner->outlook": "to Outlook", "outlook->pipeliner": "to Pipeliner"}


def describe_counts(counts: Mapping[str, Mapping[str, int]]) -> str:
    """``to Outlook: 3 created, 1 updated; to Pipeliner: nothing`` from per-leg counts."""
    parts = [f"{LEG_NAMES.get(leg, leg)}: {describe(values)}" for leg, values in counts.items()]
    return "; ".join(parts) or "-"
