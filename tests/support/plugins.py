"""Run our Singer plugins as real processes against the sandbox, and act in Pipeliner as a user."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contactsync_sandbox import actors, signin
from contactsync_sandbox.actors import OutlookActor
from contactsync_sandbox.client import SandboxControl
from contactsync_sandbox.seed import default_seed

__all__ = ["OutlookActor", "PipelinerActor", "approving", "sign_in"]

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


class PipelinerActor(actors.PipelinerActor):
    """`contactsync_sandbox.actors.PipelinerActor` knowing the default seed's users by name."""

    def __init__(self, control: SandboxControl) -> None:
        super().__init__(control, users=USERS)


def approving(sandbox: Any, upn: str) -> contextlib.AbstractContextManager[None]:
    """Approve the next device code as ``upn`` (the person picking the account, then Accept)."""
    return signin.approving(sandbox.control("identity"), upn)


def sign_in(sandbox: Any, cache_path: Path, upn: str = "alex@contoso.example") -> Path:
    """Device-code sign-in through the real MSAL flow, approved as ``upn`` in the sandbox."""
    return signin.sign_in(sandbox.info, upn, cache_path, sandbox.control("identity"))
