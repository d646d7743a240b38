"""`contactsync-sandbox`: run the emulators (`serve`), load and capture seeds (`check`,
`export`), and point Meltano at them as one user (`env`).

`serve` prints one JSON object (the `Sandbox.info()` dict) as its first stdout line, so scripts
can read its URLs and CA path without parsing logs; logs go to stderr. It also writes that object
to `<state dir>/sandbox.json`, where `env` and `export` find it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from . import instance
from .client import SandboxControlError
from .fixture import SeedError, load_seed_files, seed_dir_files, write_seed
from .handle import STATE_DIR_VARIABLE, UnknownUser, connect
from .plugin_env import FORMATS, JOBS, SYNC_OPTIONS, render
from .runner import DEFAULT_PORTS, Sandbox
from .seed import default_seed
from .server import LOOPBACK, NonLoopbackHostError, PortInUseError, require_loopback
from .signin import SignInError
from .tls import DEFAULT_STATE_DIR, CAError

log = logging.getLogger("contactsync_sandbox")
#: Seconds `env` and `export` wait for a sandbox started in the background a moment ago.
DEFAULT_WAIT = 30.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "default-seed":
        print(json.dumps(default_seed(), indent=2))
        return 0
    if args.command == "check":
        return _check(args)
    if args.command == "export":
        return _export(args)
    if args.command == "env":
        return _env(args)
    try:
        host = require_loopback(args.host)
    except NonLoopbackHostError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s", level=logging.WARNING
    )
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        seed = _seed(args)
    except SeedError as exc:
        return _fail(f"the seed cannot be loaded:\n{_problems(exc)}", status=2)
    return _serve(host, Path(args.state_dir), args.free_ports, seed)


def _seed(args: argparse.Namespace) -> dict[str, Any] | None:
    """The seed of `--seed-dir` and `--seed` (merged in that order), or None for the default."""
    files: list[Path] = []
    for directory in args.seed_dir or []:
        files += seed_dir_files(directory)
    files += [Path(f) for f in args.seed or []]
    return load_seed_files(files) if files else None


def _serve(host: str, state_dir: Path, free_ports: bool, seed: dict[str, Any] | None) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sandbox = Sandbox(state_dir, free_ports=free_ports, host=host, seed=seed)
    try:
        sandbox.start()
    except (PortInUseError, CAError) as exc:
        print(f"contactsync-sandbox: {exc}", file=sys.stderr)
        return 1
    published: dict[str, Any] = {}
    try:
        sys.stdout.write(sandbox.info_json() + "\n")
        sys.stdout.flush()
        published = instance.publish(state_dir, sandbox.info())
        for name, url in sandbox.info()["urls"].items():
            log.info("%s listening on %s (control API: %s/_sandbox)", name, url, url)
        log.info("CA to trust: %s. Ctrl-C stops.", sandbox.info()["ca_path"])
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    finally:
        if published:
            instance.withdraw(state_dir, published["instance"])
        sandbox.stop()
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        seed = _seed(args)
    except SeedError as exc:
        return _fail(f"the seed cannot be loaded:\n{_problems(exc)}", status=2)
    if seed is None:
        return _fail("give --seed FILE or --seed-dir DIR", status=2)
    pipeliner, microsoft = seed["pipeliner"], seed["microsoft"]
    contacts = len(pipeliner.get("contacts", []))
    if pipeliner.get("demo_contacts"):
        contacts += int(pipeliner["demo_contacts"].get("count", 300))
    boxes = microsoft["mailboxes"]
    outlook = sum(_folder_contacts(b.get("contacts_folder") or {}) for b in boxes)
    print(
        f"seed ok: {len(pipeliner['users'])} Pipeliner users, {contacts} Pipeliner contacts, "
        f"{len(boxes)} mailboxes, {outlook} Outlook contacts"
    )
    return 0


def _folder_contacts(folder: dict[str, Any]) -> int:
    children = folder.get("childFolders") or []
    return len(folder.get("contacts") or []) + sum(_folder_contacts(c) for c in children)


def _export(args: argparse.Namespace) -> int:
    try:
        with connect(args.state_dir, wait=args.wait) as handle:
            seed = handle.export()
    except (instance.SandboxNotRunning, SandboxControlError) as exc:
        return _fail(str(exc))
    write_seed(
        seed,
        out_file=Path(args.output) if args.output else None,
        out_dir=Path(args.out_dir) if args.out_dir else None,
    )
    return 0


def _env(args: argparse.Namespace) -> int:
    try:
        with connect(args.state_dir, wait=args.wait) as handle:
            env = handle.env(
                args.user,
                job=args.job,
                folder=args.folder,
                app_only=args.app_only,
                sync_option=args.option,
                data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
            )
    except (instance.SandboxNotRunning, SandboxControlError, UnknownUser) as exc:
        return _fail(str(exc))
    except SignInError as exc:
        return _fail(f"cannot sign {args.user} in: {exc}")
    except ValueError as exc:
        return _fail(str(exc), status=2)
    how = "app-only (client secret)" if args.app_only else "signed in (device code)"
    print(f"# contactsync sandbox: {args.user}, {how}", file=sys.stderr)
    print(render(env, args.format))
    return 0


def _problems(exc: SeedError) -> str:
    return "\n".join(f"  {problem}" for problem in exc.problems)


def _fail(message: str, status: int = 1) -> int:
    print(f"contactsync-sandbox: {message}", file=sys.stderr)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactsync-sandbox",
        description="Local HTTPS emulators of the services contactsync talks to.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ports = ", ".join(f"{name} {port}" for name, port in DEFAULT_PORTS.items())
    serve = commands.add_parser(
        "serve",
        help="run the emulators in the foreground",
        description=f"Run the emulators in the foreground on 127.0.0.1 (default ports: {ports}). "
        "The first stdout line is a JSON object with the URLs and the CA path; the same object "
        "goes to <state dir>/sandbox.json while it runs.",
    )
    _state_dir(serve, "where the local CA and the running sandbox's sandbox.json live")
    serve.add_argument(
        "--free-ports", action="store_true", help="bind free ports instead of the fixed defaults"
    )
    serve.add_argument(
        "--host",
        default=LOOPBACK,
        help="loopback address to bind (default and only sensible value: 127.0.0.1)",
    )
    _seed_options(serve, "start from this data instead of the default seed (also on reset)")
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request")
    commands.add_parser("default-seed", help="print the default seed (users, keys, ids) as JSON")

    check = commands.add_parser(
        "check",
        help="validate seed files without starting anything",
        description="Load seed files as `serve --seed` would and report every problem by "
        "file, row and field (exit status 2), or a summary.",
    )
    _seed_options(check, "the seed to check")

    export = commands.add_parser(
        "export",
        help="write the running sandbox's data as a seed",
        description="Write the data of the sandbox running for --state-dir (Pipeliner space, "
        "users, contacts; Outlook mailboxes, folders, contacts) as a seed that `serve --seed` "
        "loads back unchanged. Sign-in sessions are left out.",
    )
    _state_dir(export, "the state directory the sandbox was started with")
    where = export.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="FILE", help="one seed file (default: stdout)")
    where.add_argument(
        "--out-dir",
        metavar="DIR",
        help="pipeliner.json and microsoft.json in DIR (for `serve --seed-dir DIR`)",
    )
    _wait(export)

    env = commands.add_parser(
        "env",
        help="print the Meltano environment of one user's runs against the sandbox",
        description="Sign USER in (a device code the sandbox approves, or app-only) and print "
        "the Meltano environment variables that point contactsync's plugins at the running "
        "sandbox as that user: service URLs, CA bundle, token cache, folder, ledger, reports, "
        'Meltano state. In a shell: eval "$(contactsync-sandbox env --user EMAIL)" && meltano '
        "run two-way-your-contacts",
    )
    env.add_argument("--user", required=True, metavar="EMAIL", help="a Pipeliner user's e-mail")
    env.add_argument(
        "--job",
        metavar="JOB",
        help=f"the job you will run ({', '.join(JOBS)}, or your own): its reports get their "
        "own directory, and one-way-all-contacts gets no sync option",
    )
    env.add_argument(
        "--folder", default="Pipeliner", help="Outlook contacts folder (default: Pipeliner)"
    )
    env.add_argument("--option", choices=SYNC_OPTIONS, help="sync_option (default: owner)")
    env.add_argument(
        "--app-only",
        action="store_true",
        help="use the app's client secret (an administrator's runs) instead of signing in",
    )
    env.add_argument(
        "--format", choices=FORMATS, default="export", help="export lines (default), dotenv, json"
    )
    env.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the user's token cache, ledger, Meltano state and reports go "
        "(default: the sandbox's session directory, new on each start)",
    )
    _state_dir(env, "the state directory the sandbox was started with")
    _wait(env)
    return parser


def _state_dir(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--state-dir",
        default=os.environ.get(STATE_DIR_VARIABLE) or str(DEFAULT_STATE_DIR),
        help=f"{text} (default: ${STATE_DIR_VARIABLE}, else ./.sandbox)",
    )


def _seed_options(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument(
        "--seed", action="append", metavar="FILE", help=f"{text}: a seed file (repeatable)"
    )
    parser.add_argument(
        "--seed-dir",
        action="append",
        metavar="DIR",
        help="every *.json seed file of DIR, merged in name order",
    )


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"wait this long for the sandbox to start (default: {DEFAULT_WAIT:g})",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
