"""400 Outlook creates through `$batch` under Graph's documented concurrency model (issue 13).

Graph runs up to 4 requests of a batch without `dependsOn` in parallel, each counting against
the mailbox's 4 concurrent requests; with `dependsOn`, one at a time (throttling page,
"Outlook service limits for JSON batching"). The Graph emulator does that; each request takes
`--request-seconds` to execute (Outlook's time, not documented; the default is a guess of the
order seen against the service). Compared: the client as it was (4 unordered batches in flight),
as it is (one batch in flight), and 4 dependsOn-chained batches in flight; per mailbox, and
under the per-app reading of the limit. Prints one JSON line per case. Not part of `make test`.

    python -m bench.batch_concurrency [--creates 400] [--request-seconds 0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from contactsync.http import HttpPolicy
from contactsync.outlook.graph_api import GraphClient, GraphSettings
from contactsync.outlook.projection import to_graph
from contactsync_sandbox import tokens
from contactsync_sandbox.client import SandboxControl
from contactsync_sandbox.runner import Sandbox
from contactsync_sandbox.seed import default_seed

MICROSOFT = default_seed()["microsoft"]
ALEX = MICROSOFT["mailboxes"][0]
POLICY = HttpPolicy(max_attempts=20, total_budget=600.0, max_retry_after=60.0)


class Tokens:
    """App-only tokens minted straight into the in-process sandbox's registry."""

    def __init__(self) -> None:
        self._token = self.refresh()

    def refresh(self) -> str:
        self._token = tokens.REGISTRY.issue(
            client_id=MICROSOFT["app_registration"]["client_id"],
            tenant_id=MICROSOFT["tenant_id"],
            scopes=[".default"],
            lifetime=3600,
        ).token
        return self._token

    def token(self) -> str:
        return self._token


def run_case(
    info: dict[str, Any], control: SandboxControl, creates: int, in_flight: int, chained: bool
) -> dict[str, Any]:
    folder_name = f"Bench {in_flight} {chained} {time.monotonic_ns()}"
    settings = GraphSettings(
        graph_url=info["graph_url"],
        mailbox=ALEX["id"],
        ca_bundle=info["ca_path"],
        max_in_flight=in_flight,
        policy=POLICY,
    )
    with GraphClient(settings, Tokens()) as graph:
        folder = graph.resolve_folder(folder_name, create=True)
        if not chained:  # the client as it was: unordered batches, several in flight
            graph._batches_in_flight = lambda: (in_flight, False)  # type: ignore[method-assign]
        bodies = [
            to_graph({"first_name": f"Bench{n}", "email1": f"b{n}@bench.example"}, stamp=f"b{n}")
            for n in range(creates)
        ]
        before = control._call("GET", "/graph/stats")["mailboxes"].get(ALEX["id"], {})
        started = time.monotonic()
        results = graph.create_contacts(folder, bodies)
        seconds = time.monotonic() - started
        after = control._call("GET", "/graph/stats")["mailboxes"][ALEX["id"]]
        stats = graph.stats
    return {
        "batches_in_flight": in_flight,
        "depends_on_chains": chained,
        "created": sum(r.ok for r in results),
        "failed": sum(not r.ok for r in results),
        "inner_429": stats.inner_throttled,
        "emulator_throttled_concurrency": after["throttled_concurrency"]
        - before.get("throttled_concurrency", 0),
        "batches_sent": stats.batches,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=400)
    parser.add_argument("--request-seconds", type=float, default=0.1)
    args = parser.parse_args(argv)
    cases = [(4, False), (1, False), (4, True)]
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp), free_ports=True) as sandbox:
        info = sandbox.info()
        control = SandboxControl(info["urls"]["graph"], Path(info["ca_path"]))
        for scope in ("mailbox", "app"):
            control._call(
                "POST",
                "/graph/throttle",
                json={"request_seconds": args.request_seconds, "concurrency_scope": scope},
            )
            for in_flight, chained in cases:
                result = run_case(info, control, args.creates, in_flight, chained)
                print(json.dumps({"concurrency_scope": scope, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
