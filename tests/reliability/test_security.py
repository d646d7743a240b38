"""Security: no secret in any log line, report, Singer message or state, or ledger row; token
caches private (0600); in one_way_all_contacts nothing the user cannot see reaches their folder
(a property over random sharing); the sandbox on loopback only; a redirect to another host
refused by both API clients.

Also covered elsewhere: secrets in error messages of bad settings (the bad_settings tests of
tests/plugins and tests/reliability/test_settings.py), the HTTP policy's redirect rules
(tests/unit/test_http.py), the cache file's mode at sign-in (tests/unit/test_auth.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync.outlook.projection import pipeliner_stamp
from contactsync_sandbox import tokens
from contactsync_sandbox.runner import Sandbox
from tests.reliability.conftest import AMERICAS, EUROPE, Sync, contact, person
from tests.support.plugins import PIPELINER, USERS, run_plugin

ALEX = "alex@contoso.example"
PASSWORD_MARKER = "Marker-pw-3c9e1b77-not-a-secret"
USERNAME_MARKER = "contactsync-marker-key"
CLIENT_SECRET = "sandbox-client-secret-not-a-secret"  # the sandbox app's, unique as a marker


def _secret_values(obj: Any) -> Iterator[str]:
    """Every ``secret`` of an MSAL token cache (access, refresh and id tokens)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "secret" and isinstance(value, str):
                yield value
            else:
                yield from _secret_values(value)


def _ledger_rows(path: Path) -> str:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
        )


def test_no_secret_reaches_a_log_report_message_state_or_ledger(
    clean_sandbox: Any, token_cache: Path, tmp_path: Path, record_outcome: Any
) -> None:
    # App-only two-way sync with a Pipeliner key whose password is a marker.
    app = Sync(clean_sandbox, token_cache, tmp_path / "app")
    app.mailbox = ALEX
    app.tee_dir = tmp_path / "app" / "messages"
    keys = [*PIPELINER["application_keys"]]
    keys.append({"api_username": USERNAME_MARKER, "api_password": PASSWORD_MARKER})
    app.pipeliner.seed([contact(n) for n in range(1, 6)], application_keys=keys)
    app.outlook.new_folder(app.folder)
    app.outlook.create(app.folder, **person(1))
    pipeliner_key = {"api_username": USERNAME_MARKER, "api_password": PASSWORD_MARKER}
    app_only = {"client_secret": CLIENT_SECRET, "token_cache_path": None}
    app.extra = {
        "tap-pipeliner-contacts": pipeliner_key,
        "target-pipeliner-contacts": pipeliner_key,
        "tap-outlook-contacts": app_only,
        "target-outlook-contacts": app_only,
    }
    app.run_ok()

    # A delegated leg (the signed-in cache) whose access token dies mid-way: a refresh.
    delegated = Sync(clean_sandbox, token_cache, tmp_path / "delegated")
    delegated.tee_dir = tmp_path / "delegated" / "messages"
    delegated.outlook.new_folder(delegated.folder)
    clean_sandbox.control("identity")._call("POST", "/identity/expire-access-tokens")
    leg = delegated.leg("pipeliner_to_outlook")
    assert leg.ok, leg.stderr[-3000:]
    assert len(delegated.outlook_contacts()) == len(delegated.in_scope_pipeliner())

    markers = {PASSWORD_MARKER, CLIENT_SECRET}
    markers |= {g.token for g in tokens.REGISTRY.grants()}  # every access token issued
    listing = clean_sandbox.control("identity")._call("GET", "/identity/refresh-tokens")
    markers |= set(_secret_values(listing)) | {
        t.get("refresh_token") or t.get("token") for t in listing.get("refresh_tokens", [])
    }
    markers |= set(_secret_values(json.loads(token_cache.read_text())))
    markers = {m for m in markers if m and len(m) >= 12}
    assert len(markers) >= 4

    haystacks: dict[str, str] = {}
    for sync in (app, delegated):
        for n, run in enumerate(sync.legs):
            for name, text in run.logs.items():
                haystacks[f"{sync.workdir.name} log {n} {name}"] = text
            haystacks[f"{sync.workdir.name} report {n}"] = json.dumps(run.report)
            haystacks[f"{sync.workdir.name} target state {n}"] = json.dumps(run.state)
        haystacks[f"{sync.workdir.name} states"] = json.dumps(sync.states)
        for path in (sync.tee_dir or sync.workdir).glob("*.jsonl"):
            haystacks[f"messages {path.name}"] = path.read_text()
        haystacks[f"{sync.workdir.name} ledger"] = _ledger_rows(sync.workdir / "ledger.sqlite")
    # Each leg's tap output (the targets map in-process: no mapper output on a pipe).
    assert sum(k.startswith("messages") for k in haystacks) == 3
    lines = sum(text.count("\n") + 1 for text in haystacks.values())
    found = sorted({where for where, text in haystacks.items() for m in markers if m in text})
    record_outcome(
        section="security",
        cell="secrets in logs, reports, messages, states, ledger",
        injected=len(markers),
        outcome=f"{len(markers)} markers × {len(haystacks)} sources, {lines} lines; "
        f"{len(found)} found",
        survived=not found,
    )
    assert not found, found
    assert any("refresh" in text or "401" in text for text in haystacks.values())
    # The cache the delegated leg refreshed is still private.
    assert stat.S_IMODE(token_cache.stat().st_mode) == 0o600


def test_token_caches_are_private(clean_sandbox: Any, tmp_path: Path, record_outcome: Any) -> None:
    from tests.support.plugins import sign_in

    old = os.umask(0o022)
    try:
        cache = sign_in(clean_sandbox, tmp_path / "new" / "cache.json")
    finally:
        os.umask(old)
    modes = {"after sign-in": stat.S_IMODE(cache.stat().st_mode)}
    # A cache someone made world-readable is made private again by the next run.
    cache.chmod(0o644)
    sync = Sync(clean_sandbox, cache, tmp_path / "sync")
    sync.outlook.new_folder(sync.folder)
    clean_sandbox.control("identity")._call("POST", "/identity/expire-access-tokens")
    run = run_plugin("tap-outlook-contacts", sync.config("tap-outlook-contacts"), tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    modes["after a run on a 0644 cache"] = stat.S_IMODE(cache.stat().st_mode)
    strays = [p for p in cache.parent.iterdir() if p != cache and not p.name.endswith(".lock")]
    record_outcome(
        section="security",
        cell="token cache mode",
        outcome=", ".join(f"{k}: {v:o}" for k, v in modes.items()),
        survived=set(modes.values()) == {0o600},
    )
    assert set(modes.values()) == {0o600}, modes
    for stray in strays:  # lock or temporary files: private too
        assert stat.S_IMODE(stray.stat().st_mode) & 0o077 == 0, stray


# --- one_way_all_contacts: never a contact the user cannot see ----------------------------------

OWNERS = ("alex", "megan", "lynne", "nestor")
UNIT_OF = {"alex": EUROPE, "megan": EUROPE, "nestor": EUROPE, "lynne": AMERICAS}


def _visible_to_alex(c: dict[str, Any]) -> bool:
    """Alex (Sales Rep, member of Sales Europe) sees a contact he owns, one shared with him or
    his unit, an all-view/all-edit one, and a standard one of his own unit (tap test cases)."""
    return (
        c["owner"] == "alex"
        or c["share_mode"] in (2, 3)
        or c["client"] == "alex"
        or c["unit_share"] == EUROPE
        or (c["share_mode"] == 0 and c["unit"] == EUROPE)
    )


sharing = st.fixed_dictionaries(
    {
        "owner": st.sampled_from(OWNERS),
        "unit": st.sampled_from((EUROPE, AMERICAS)),
        "share_mode": st.sampled_from((0, 1, 2, 3)),
        "client": st.sampled_from((None, "alex", "megan")),
        "client_role": st.sampled_from((1, 2)),
        "unit_share": st.sampled_from((None, EUROPE, AMERICAS)),
    }
)


def test_one_way_all_never_brings_a_contact_the_user_cannot_see(
    clean_sandbox: Any, token_cache: Path, tmp_path_factory: Any, record_outcome: Any
) -> None:
    """A Hypothesis property over random sharing, run inside this test so that its figures reach
    the report whichever xdist worker runs it."""
    seen: list[dict[str, int]] = []

    @settings(
        max_examples=10,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(contacts=st.lists(sharing, min_size=3, max_size=7))
    def never_leaks(contacts: list[dict[str, Any]]) -> None:
        workdir = tmp_path_factory.mktemp("all")
        sync = Sync(clean_sandbox, token_cache, workdir, sync_type="one_way_all_contacts")
        seeded = [
            contact(n, c["owner"], unit_id=c["unit"], share_mode=c["share_mode"])
            for n, c in enumerate(contacts, start=1)
        ]
        sync.pipeliner.seed(seeded)
        ids = {row["email1"]: row["id"] for row in sync.pipeliner.contacts()}
        for n, c in enumerate(contacts, start=1):
            cid = ids[f"p{n}@rel.example"]
            if c["client"]:
                sync.pipeliner.share(
                    c["owner"], cid, client_id=USERS[c["client"]], role=c["client_role"]
                )
            if c["unit_share"]:
                sync.pipeliner.share(
                    c["owner"], cid, unit_id=c["unit_share"], role=c["client_role"]
                )
        sync.outlook.new_folder(sync.folder)
        leg = sync.leg("pipeliner_to_outlook")
        assert leg.ok, leg.stderr[-3000:]
        copies = {pipeliner_stamp(c) for c in sync.outlook_contacts()}
        visible = {
            ids[f"p{n}@rel.example"] for n, c in enumerate(contacts, 1) if _visible_to_alex(c)
        }
        leaked = copies - visible
        seen.append({"contacts": len(contacts), "visible": len(visible), "leaked": len(leaked)})
        assert not leaked, [
            c for n, c in enumerate(contacts, 1) if ids[f"p{n}@rel.example"] in leaked
        ]
        assert copies == visible  # and everything visible arrives

    try:
        never_leaks()
    finally:
        record_outcome(
            section="security",
            cell="one_way_all_contacts over random sharing (Hypothesis)",
            outcome=f"{len(seen)} examples, {sum(s['contacts'] for s in seen)} contacts, "
            f"{sum(s['contacts'] - s['visible'] for s in seen)} invisible to the user",
            lost=0,
            survived=bool(seen) and not any(s["leaked"] for s in seen),
        )


# --- the sandbox on loopback only ---------------------------------------------------------------


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port``, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # LISTEN
                found.append(address)
    return found


def test_the_sandbox_listens_on_loopback_only(sandbox: Any, record_outcome: Any) -> None:
    from urllib.parse import urlsplit

    addresses = {}
    for name, url in sandbox.info["urls"].items():
        port = urlsplit(url).port
        addresses[name] = _listening(port)
        assert addresses[name], f"{name} is not listening on {port}?"
        assert set(addresses[name]) == {"0100007F"}, (name, addresses[name])  # 127.0.0.1
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(sandbox.ca_path.parent, free_ports=True, host="0.0.0.0")
    record_outcome(
        section="security",
        cell="sandbox listens on loopback only",
        outcome=f"{len(addresses)} emulators on 127.0.0.1; 0.0.0.0 refused",
        survived=True,
    )


# --- a redirect to another host -----------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    hits: list[tuple[str, str | None]]
    location: str | None = None

    def _answer(self) -> None:
        self.hits.append((self.path, self.headers.get("Authorization")))
        if self.location:
            self.send_response(302)
            self.send_header("Location", self.location + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b'{"success": true, "data": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _serve(sandbox: Any, location: str | None) -> tuple[ThreadingHTTPServer, list[Any]]:
    hits: list[Any] = []
    handler = type("Handler", (_Recorder,), {"hits": hits, "location": location})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = sandbox.sandbox.ca.server_context("127.0.0.1", "localhost")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


@pytest.mark.parametrize("plugin", ["tap-pipeliner-contacts", "tap-outlook-contacts"])
def test_a_service_url_redirecting_to_another_host_is_refused(
    plugin: str, sandbox: Any, token_cache: Path, tmp_path: Path, record_outcome: Any
) -> None:
    other, other_hits = _serve(sandbox, None)
    # Same machine, another origin: `localhost` and another port.
    redirector, hits = _serve(sandbox, f"https://localhost:{other.server_address[1]}")
    url = f"https://127.0.0.1:{redirector.server_address[1]}"
    try:
        sync = Sync(sandbox, token_cache, tmp_path)
        config = sync.config(plugin)
        config.update({"service_url": url} if "pipeliner" in plugin else {"graph_url": url})
        config["api_password"] = PASSWORD_MARKER if "pipeliner" in plugin else None
        config = {k: v for k, v in config.items() if v is not None}
        run = run_plugin(plugin, config, tmp_path, timeout=60)
    finally:
        redirector.shutdown()
        other.shutdown()
    refused = run.returncode != 0 and "redirect" in run.stderr.lower()
    record_outcome(
        section="security",
        cell=f"{plugin}: service URL redirecting to another host",
        outcome=f"exit {run.returncode}, {len(other_hits)} requests reached the other host",
        survived=refused and not other_hits,
    )
    assert hits, "the plugin never reached the redirecting server"
    assert run.returncode != 0
    assert "redirect" in run.stderr.lower(), run.stderr[-2000:]
    assert other_hits == []  # never followed: no credential left for the other host
    assert PASSWORD_MARKER not in run.stderr
