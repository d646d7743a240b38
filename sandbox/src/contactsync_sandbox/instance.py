"""The running sandbox of a state directory.

`serve` writes `<state dir>/sandbox.json` (its JSON line, plus its pid and an instance id) once
every server listens, and removes it when it stops; `env`, `export` and
`contactsync_sandbox.connect()` find the sandbox there, so they work with `--free-ports` too and
can wait for a sandbox started a moment ago in the background (`serve ... &`). One sandbox per
state directory.

Files made for one run of the sandbox (token caches, ledgers, Meltano state, reports of `env`)
live in `<state dir>/sessions/<instance>/`: a restarted sandbox has forgotten every sign-in and
holds its seed again, so `serve` deletes older sessions when it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

INFO_FILE = "sandbox.json"
SESSIONS_DIR = "sessions"


class SandboxNotRunning(RuntimeError):
    """No sandbox is running for that state directory (the message says what to do)."""


def publish(state_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Announce a started sandbox; returns its info with `pid`, `instance` and `session_dir`."""
    instance = uuid.uuid4().hex[:12]
    sessions = state_dir / SESSIONS_DIR
    if sessions.is_dir():
        for old in sessions.iterdir():
            shutil.rmtree(old, ignore_errors=True)
    published = {
        **info,
        "pid": os.getpid(),
        "instance": instance,
        "state_dir": str(state_dir.resolve()),
        "session_dir": str((sessions / instance).resolve()),
    }
    path = state_dir / INFO_FILE
    temp = path.with_name(f".{INFO_FILE}.{instance}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(published, handle, sort_keys=True)
    temp.replace(path)
    return published


def withdraw(state_dir: Path, instance: str) -> None:
    """Remove `sandbox.json` if it still announces this instance."""
    path = state_dir / INFO_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("instance") == instance:
            path.unlink()


def find(state_dir: Path | str, wait: float = 0.0) -> dict[str, Any]:
    """The info of the sandbox running for `state_dir`, waiting up to `wait` seconds for one to
    start; SandboxNotRunning otherwise."""
    path = Path(state_dir) / INFO_FILE
    deadline = time.monotonic() + wait
    stale: int | None = None
    while True:
        info = _read(path)
        if info is not None and _alive(info.get("pid")):
            return info
        if info is not None:
            stale = info.get("pid")
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if stale is not None:
        raise SandboxNotRunning(
            f"the sandbox that wrote {path} (pid {stale}) is no longer running; start it again "
            f"with `contactsync-sandbox serve --state-dir {state_dir}`"
        )
    raise SandboxNotRunning(
        f"no sandbox is running with the state directory {state_dir} (no {path}); start one "
        f"with `contactsync-sandbox serve --state-dir {state_dir}` (or pass the --state-dir "
        "it was started with)"
    )


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
