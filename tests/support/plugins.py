"""Run our Singer plugins as real processes against the sandbox, and act in Pipeliner as a user."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contactsync_sandbox.client import SandboxControl
from contactsync_sandbox.seed import default_seed

BIN = Path(sys.executable).parent
PIPELINER = default_seed()["pipeliner"]
USERS = {u["email"].split("@")[0]: u["id"] for u in PIPELINER["users"]}
UNITS = {u["name"]: u["id"] for u in PIPELINER["units"]}
ACCOUNTS = {a["name"]: a["id"] for a in PIPELINER["accounts"]}


def pipeliner_connection(info: Mapping[str, Any], user: str = "alex") -> dict[str, Any]:
    """The Pipeliner settings of every plugin that talks to the sandbox's Pipeliner as ``user``."""
    return {
        "service_url": info["pipeliner_url"],
        "space_id": info["pipeliner_space_id"],
        "api_username": info["pipeliner_api_username"],
        "api_password": info["pipeliner_api_password"],
        "ca_bundle": info["ca_path"],
        "user_email": f"{user}@contoso.example",
    }


@dataclass
class PluginRun:
    """What one plugin process did: exit code, Singer messages on stdout, log on stderr."""

    returncode: int
    messages: list[dict[str, Any]]
    stderr: str

    def records(self, stream: str = "contacts") -> list[dict[str, Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    @property
    def state(self) -> dict[str, Any] | None:
        states = [m["value"] for m in self.messages if m["type"] == "STATE"]
        return states[-1] if states else None


def run_plugin(
    executable: str,
    config: Mapping[str, Any],
    workdir: Path,
    *,
    stdin: Iterable[Mapping[str, Any]] | None = None,
    state: Mapping[str, Any] | None = None,
    args: Sequence[str] = (),
    timeout: float = 120,
) -> PluginRun:
    """Run ``executable`` from the project venv as a separate process, like Meltano would."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{executable}.config.json"
    config_path.write_text(json.dumps(config))
    cmd = [str(BIN / executable), "--config", str(config_path), *args]
    if state is not None:
        state_path = workdir / f"{executable}.state.json"
        state_path.write_text(json.dumps(state))
        cmd += ["--state", str(state_path)]
    lines = "".join(json.dumps(m) + "\n" for m in stdin) if stdin is not None else None
    proc = subprocess.run(
        cmd,
        input=lines,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return PluginRun(proc.returncode, messages, proc.stderr)


def start_plugin(
    executable: str, config: Mapping[str, Any], workdir: Path, stdin: Iterable[Mapping[str, Any]]
) -> subprocess.Popen[str]:
    """Start a plugin process fed ``stdin`` and leave it running (for tests that kill it)."""
    config_path = workdir / f"{executable}.config.json"
    config_path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        [str(BIN / executable), "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=workdir,
    )
    assert proc.stdin is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in stdin))
    proc.stdin.close()
    return proc


def wait_for(condition: Any, timeout: float = 60, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def singer_stream(records: Iterable[Mapping[str, Any]], schema: Mapping[str, Any]) -> list[dict]:
    """SCHEMA + RECORD messages of the ``contacts`` stream."""
    messages: list[dict[str, Any]] = [
        {"type": "SCHEMA", "stream": "contacts", "schema": schema, "key_properties": []}
    ]
    messages += [{"type": "RECORD", "stream": "contacts", "record": dict(r)} for r in records]
    return messages


@dataclass
class PipelinerActor:
    """A person using Pipeliner (through the sandbox's control API), and a reader of its state."""

    control: SandboxControl
    seeded: dict[str, Any] = field(default_factory=dict)

    def seed(self, contacts: Sequence[Mapping[str, Any]] = (), **extra: Any) -> None:
        """The default identities and accounts, and exactly these contacts."""
        seed = {k: v for k, v in PIPELINER.items() if k != "demo_contacts"}
        self.control.seed({**seed, "contacts": list(contacts), **extra})
        self.control.reset_counters()
        self.control.clear_faults()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self.control._call(method, f"/pipeliner{path}", json=body)

    def create(self, user: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/users/{USERS[user]}/contacts", fields)

    def edit(self, user: str, contact_id: str, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/users/{USERS[user]}/contacts/{contact_id}", fields)

    def delete(self, user: str, contact_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/users/{USERS[user]}/contacts/{contact_id}")

    def share(self, user: str, contact_id: str, **target: Any) -> dict[str, Any]:
        return self._call("POST", f"/users/{USERS[user]}/contacts/{contact_id}/share", target)

    def raw(self, contact_id: str) -> dict[str, Any]:
        return self._call("GET", f"/contacts/{contact_id}")

    def contacts(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        rows = self.control.state().get("contacts", [])
        return [c for c in rows if include_deleted or not c.get("is_deleted")]

    def requests(self, method: str, route_suffix: str) -> int:
        """How many requests hit the route ending with ``route_suffix``."""
        endpoints = self.control.counters().get("endpoints", {})
        return sum(
            v["requests"]
            for k, v in endpoints.items()
            if k.startswith(method + " ") and k.endswith(route_suffix)
        )


@dataclass
class OutlookActor:
    """A person using Outlook (the Graph emulator's control API as the mailbox owner)."""

    control: SandboxControl
    upn: str = "alex@contoso.example"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self.control._call(method, f"/graph{path}", json=body)

    def new_folder(self, name: str, parent: str = "Contacts") -> dict[str, Any]:
        return self._call(
            "POST", f"/mailboxes/{self.upn}/folders", {"displayName": name, "parent": parent}
        )

    def create(self, folder: str, **props: Any) -> dict[str, Any]:
        return self._call("POST", f"/mailboxes/{self.upn}/folders/{folder}/contacts", props)

    def edit(self, contact_id: str, **props: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/mailboxes/{self.upn}/contacts/{contact_id}", props)

    def delete(self, contact_id: str) -> None:
        url = f"{self.control.control_url}/graph/mailboxes/{self.upn}/contacts/{contact_id}"
        response = self.control.session.delete(url, timeout=self.control.timeout)
        assert response.status_code == 204, response.text  # no body to decode

    def contacts(self, folder: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/mailboxes/{self.upn}/folders/{folder}/contacts")["contacts"]

    def folders(self) -> list[dict[str, Any]]:
        return self._call("GET", f"/mailboxes/{self.upn}/folders")["folders"]

    def expire_delta_tokens(self) -> None:
        self._call("POST", "/expire-delta-tokens", {"mailbox": self.upn})

    def throttle(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "/throttle", settings)

    def storage(self, **options: Any) -> dict[str, Any]:
        """Where Graph's docs are silent: ``string_limits``, ``compact_empty_entries``."""
        return self._call("POST", "/storage", options)

    def throttled(self) -> int:
        """429s answered for budget or concurrency so far, inner $batch requests included."""
        stats = self._call("GET", "/stats")["mailboxes"].values()
        return sum(m["throttled_budget"] + m["throttled_concurrency"] for m in stats)

    def expire_access_tokens(self) -> None:
        self._call("POST", "/expire-tokens", {})

    def requests(self, method: str = "", contains: str = "") -> int:
        """Requests whose endpoint key starts with ``method`` and contains ``contains``."""
        endpoints = self.control.counters().get("endpoints", {})
        return sum(
            v["requests"]
            for k, v in endpoints.items()
            if k.startswith(method) and contains in k and "(no route)" not in k
        )


@contextlib.contextmanager
def approving(sandbox: Any, upn: str) -> Iterator[None]:
    """Approve the next device code as ``upn`` (the person picking the account, then Accept)."""
    identity = sandbox.control("identity")
    stop = threading.Event()

    def approve() -> None:
        while not stop.is_set():
            pending = identity._call("GET", "/identity/device", params={"status": "pending"})
            codes = [d["user_code"] for d in pending["device_codes"]]
            if codes:
                identity._call(
                    "POST", "/identity/device/approve", json={"user_code": codes[0], "upn": upn}
                )
                return
            stop.wait(0.05)

    approver = threading.Thread(target=approve, daemon=True)
    approver.start()
    try:
        yield
    finally:
        stop.set()
        approver.join(5)


def sign_in(sandbox: Any, cache_path: Path, upn: str = "alex@contoso.example") -> Path:
    """Device-code sign-in through the real MSAL flow, approved as ``upn`` in the sandbox."""
    from contactsync.auth import AuthSettings, TokenProvider

    info = sandbox.info
    settings = AuthSettings(
        authority=info["authority"],
        client_id=info["identity_client_id"],
        token_cache_path=str(cache_path),
        ca_bundle=info["ca_path"],
    )
    with approving(sandbox, upn):
        TokenProvider(settings).login_device_code(echo=lambda _: None, timeout=60)
    return cache_path
