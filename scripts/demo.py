"""`make demo`: the two-way sync on the sandbox, through `meltano run`, twice, and what it did.

1. start the sandbox (default ports, seeded: 300 Pipeliner contacts across four users, and
   Alex's mailbox with some contacts already in the Pipeliner folder);
2. sign Alex in with the device-code flow (the sandbox plays the "pick the account, Accept" step);
3. `meltano run two-way-your-contacts`, then print both legs' run reports;
4. edit both sides as users would (Pipeliner and Outlook), run again, print the reports;
5. check that both sides agree on every in-scope contact; stop the sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from contactsync.outlook.auth import AuthSettings, TokenProvider
from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.api import PipelinerClient, PipelinerSettings
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition
from contactsync.sync.report import describe
from contactsync_sandbox.client import SandboxControl

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MELTANO = str(BIN / "meltano")
STATE = ROOT / ".contactsync"
USER = "alex@contoso.example"
REPORTS = {
    "Pipeliner -> Outlook": STATE / "reports" / "target-outlook-contacts.json",
    "Outlook -> Pipeliner": STATE / "reports" / "target-pipeliner-contacts.json",
}


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def start_sandbox() -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [str(BIN / "contactsync-sandbox"), "serve", "--state-dir", str(ROOT / ".sandbox")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("the sandbox did not start (is another one using ports 8701-8709?)")
    return proc, json.loads(line)


def sign_in(info: dict[str, Any], identity: SandboxControl) -> None:
    settings = AuthSettings(
        authority=info["authority"],
        client_id=info["identity_client_id"],
        token_cache_path=str(STATE / "token-cache.json"),
        ca_bundle=info["ca_path"],
    )

    def accept() -> None:  # what the user does in the browser: pick the account, Accept
        for _ in range(200):
            pending = identity._call("GET", "/identity/device", params={"status": "pending"})
            if pending["device_codes"]:
                code = pending["device_codes"][0]["user_code"]
                print(f"   (sandbox: {USER} picks the account and accepts code {code})")
                identity._call(
                    "POST", "/identity/device/approve", json={"user_code": code, "upn": USER}
                )
                return
            time.sleep(0.1)

    threading.Thread(target=accept, daemon=True).start()
    TokenProvider(settings).login_device_code(echo=lambda m: print("   " + m), timeout=60)


def meltano_run(job: str) -> None:
    env = {
        **os.environ,
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        # The demo's Meltano state lives beside its ledger, so a new demo starts from scratch.
        "MELTANO_DATABASE_URI": f"sqlite:///{STATE / 'meltano.db'}",
    }
    cmd = [MELTANO, "run", f"--state-id-suffix={USER}", job]
    print("   $ " + " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-4000:])
        raise SystemExit(f"meltano run {job} failed (exit {done.returncode})")


def print_reports() -> None:
    for leg, path in REPORTS.items():
        report = json.loads(path.read_text())
        read = report["counts"].get("read", 0)
        print(f"   {leg}: {read} read; {describe(report['counts'])}")
        for issue in report["issues"][:5]:
            print(f"     - {issue['outcome']} {issue['record_id']}: {issue['reason']}")


def edit_both_sides(pipeliner: SandboxControl, graph: SandboxControl) -> None:
    links = _links()
    pid, oid = next(iter(links.items()))
    alex = "c0000000-0000-4000-8000-000000000001"
    pipeliner._call(
        "PATCH", f"/pipeliner/users/{alex}/contacts/{pid}", json={"phone1": "+1 425 555 0199"}
    )
    print(f"   Pipeliner: Alex changes the business phone of {pid}")
    graph._call("PATCH", f"/graph/mailboxes/{USER}/contacts/{oid}", json={"jobTitle": "CTO"})
    print(f"   Outlook: Alex changes the job title of the same contact ({oid})")
    created = pipeliner._call(
        "POST",
        f"/pipeliner/users/{alex}/contacts",
        json={
            "first_name": "Nora",
            "last_name": "Demo",
            "email1": "nora.demo@contoso.example",
            "position": "Buyer",
        },
    )
    print(f"   Pipeliner: Alex creates Nora Demo ({created['id']})")
    graph._call(
        "POST",
        f"/graph/mailboxes/{USER}/folders/Pipeliner/contacts",
        json={
            "givenName": "Omar",
            "surname": "Outlook",
            "emailAddresses": [{"address": "omar@fabrikam.example", "name": "Omar"}],
        },
    )
    print("   Outlook: Alex adds Omar Outlook to the Pipeliner folder")


def _links() -> dict[str, str]:
    scope = Partition(USER, "5a5a5a5a-0000-4000-8000-000000000001", "me", "Pipeliner")
    with Ledger(str(STATE / "ledger.sqlite")) as ledger, ledger.open_partition(scope) as links:
        return {lk.crm_id: lk.book_id for lk in links.iter_links() if lk.book_id}


def check_agreement(info: dict[str, Any], graph: SandboxControl) -> None:
    """Read both sides through their APIs, as the sync does, and compare every linked pair."""
    settings = PipelinerSettings(
        service_url=info["pipeliner_url"],
        space_id=info["pipeliner_space_id"],
        api_username=info["pipeliner_api_username"],
        api_password=info["pipeliner_api_password"],
        ca_bundle=info["ca_path"],
    )
    with PipelinerClient(settings) as client:
        contacts = {c["id"]: c for c in client.iter_contacts(include_deleted=False)}
    folder = graph._call("GET", f"/graph/mailboxes/{USER}/folders/Pipeliner/contacts")
    outlook = {c["id"]: c for c in folder["contacts"]}
    links = _links()
    differ = {
        pid: sorted(
            k
            for k, v in from_pipeliner(contacts[pid]).items()
            if from_graph(outlook.get(oid, {})).get(k) != v
        )
        for pid, oid in links.items()
        if pid not in contacts or from_pipeliner(contacts[pid]) != from_graph(outlook.get(oid, {}))
    }
    unlinked = set(outlook) - set(links.values())
    print(
        f"   {len(links)} linked contacts, {len(outlook)} in the Outlook folder, "
        f"{len(differ)} disagreeing, {len(unlinked)} Outlook contacts not linked"
    )
    for pid, keys in list(differ.items())[:5]:
        print(f"     {pid}: {', '.join(keys)}")
    if differ or unlinked:
        raise SystemExit("the two sides do not agree")
    print("   both sides agree on every field of every linked contact")


def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    say("starting the sandbox (Pipeliner, Microsoft Graph, identity provider) on 127.0.0.1")
    proc, info = start_sandbox()
    try:
        ca = info["ca_path"]
        pipeliner = SandboxControl(info["pipeliner_url"], ca)
        graph = SandboxControl(info["graph_url"], ca)
        identity = SandboxControl(info["urls"]["identity"], ca)
        for control in (pipeliner, graph, identity):
            control.reset()
        say(f"signing {USER} in (device code)")
        sign_in(info, identity)
        say("first run: meltano run two-way-your-contacts")
        meltano_run("two-way-your-contacts")
        print_reports()
        say("a few edits on both sides")
        edit_both_sides(pipeliner, graph)
        say("second run: meltano run two-way-your-contacts")
        meltano_run("two-way-your-contacts")
        print_reports()
        say("do both sides agree?")
        check_agreement(info, graph)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        say("sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
