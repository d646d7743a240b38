"""`contactsync-sandbox`: run the emulators in the foreground (`make sandbox`).

The first line on stdout is one JSON object (the `Sandbox.info()` dict) so that scripts can
start the sandbox and read its URLs and CA path without parsing logs; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .runner import DEFAULT_PORTS, Sandbox
from .seed import default_seed
from .server import LOOPBACK, NonLoopbackHostError, PortInUseError, require_loopback
from .tls import DEFAULT_STATE_DIR, CAError

log = logging.getLogger("contactsync_sandbox")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "default-seed":
        print(json.dumps(default_seed(), indent=2))
        return 0
    try:
        host = require_loopback(args.host)
    except NonLoopbackHostError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s", level=logging.WARNING
    )
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return _serve(host, args.state_dir, args.free_ports)


def _serve(host: str, state_dir: str, free_ports: bool) -> int:
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sandbox = Sandbox(state_dir, free_ports=free_ports, host=host)
    try:
        sandbox.start()
    except (PortInUseError, CAError) as exc:
        print(f"contactsync-sandbox: {exc}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(sandbox.info_json() + "\n")
        sys.stdout.flush()
        for name, url in sandbox.info()["urls"].items():
            log.info("%s listening on %s (control API: %s/_sandbox)", name, url, url)
        log.info("CA to trust: %s. Ctrl-C stops.", sandbox.info()["ca_path"])
        while not stop.wait(0.5):
            pass
        log.info("stopping")
    finally:
        sandbox.stop()
    return 0


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
        "The first stdout line is a JSON object with the URLs and the CA path.",
    )
    serve.add_argument(
        "--state-dir",
        default=str(DEFAULT_STATE_DIR),
        help="where the local CA lives (default: ./.sandbox)",
    )
    serve.add_argument(
        "--free-ports", action="store_true", help="bind free ports instead of the fixed defaults"
    )
    serve.add_argument(
        "--host",
        default=LOOPBACK,
        help="loopback address to bind (default and only sensible value: 127.0.0.1)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request")
    commands.add_parser("default-seed", help="print the default seed (users, keys, ids) as JSON")
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
