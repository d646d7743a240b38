"""The `contactsync` command line as the orchestrator sees it: list the registry, run one user.

The orchestrator never imports contactsync or Meltano: it lives in its own virtualenv (Dagster's
dependency tree and Meltano's move independently) and calls the project's `contactsync`
executable, so per-user settings, isolated working copies, the shared state database and the
run record in the registry are exactly those of `contactsync run` on a laptop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Lines of a run's output kept for the failure message (the whole output goes to the log).
TAIL_LINES = 40
#: `contactsync run`'s progress line when a user's run ends ("[1/1] EMAIL: done in ...").
_DONE = re.compile(
    r"^\[\d+/\d+\] (?P<email>\S+): (?P<what>done in .*|skipped: .*|FAILED after .*|REFUSED: .*)$"
)
#: Its counts: "to Outlook: 3 created, 1 updated; to Pipeliner: no change".
_LEG = re.compile(r"(?P<leg>to \w+): (?P<counts>[^;]*)")
_COUNT = re.compile(r"(?P<n>\d+) (?P<name>[a-z_]+)")


class ContactsyncError(Exception):
    """`contactsync` could not be run, or said something unexpected."""


@dataclass(frozen=True)
class RegistryUser:
    """One row of `contactsync status --json`: what the orchestrator needs of it."""

    email: str
    active: bool
    sync_type: str
    job: str
    updated_at: str | None
    last_run: Mapping[str, Any] | None


@dataclass(frozen=True)
class UserRun:
    """What one `contactsync run --user EMAIL` did, read from its output (no second call)."""

    email: str
    returncode: int
    output_tail: str
    summary: str = ""  # "done in 4.2 s; …", "skipped: nothing changed …", "FAILED after ...: why"
    # or "REFUSED: why"

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def counts(self) -> dict[str, int]:
        """``{"to Outlook created": 3, ...}`` from the summary (empty when it has none)."""
        found: dict[str, int] = {}
        for leg in _LEG.finditer(self.summary):
            for count in _COUNT.finditer(leg["counts"]):
                found[f"{leg['leg']} {count['name']}"] = int(count["n"])
        return found


@dataclass(frozen=True)
class Contactsync:
    """How to call `contactsync`: the executable, the project, extra environment.

    Empty fields fall back to the environment of the process, so a deployment configures the
    orchestrator once with the same variables the CLI reads (MELTANO_PROJECT_ROOT,
    CONTACTSYNC_LEDGER_URL, MELTANO_DATABASE_URI, CONTACTSYNC_DATA_DIR, the secrets).
    """

    executable: str = ""
    project_dir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 3600.0

    def resolved_project_dir(self) -> str:
        return self.project_dir or os.environ.get("MELTANO_PROJECT_ROOT", "")

    def resolved_executable(self) -> str:
        """$CONTACTSYNC_BIN, else the project venv's, else `contactsync` on PATH."""
        if self.executable:
            return self.executable
        if os.environ.get("CONTACTSYNC_BIN"):
            return os.environ["CONTACTSYNC_BIN"]
        project = self.resolved_project_dir()
        beside = Path(project) / ".venv" / "bin" / "contactsync" if project else None
        if beside is not None and beside.exists():
            return str(beside)
        found = shutil.which("contactsync")
        if not found:
            raise ContactsyncError(
                "cannot find the `contactsync` executable: set CONTACTSYNC_BIN or "
                "MELTANO_PROJECT_ROOT (a project with .venv/bin/contactsync)"
            )
        return found

    def _command(self, *args: str) -> list[str]:
        project = self.resolved_project_dir()
        tail = ["--project-dir", project] if project else []
        return [self.resolved_executable(), *args, *tail]

    def _env(self) -> dict[str, str]:
        # The project venv's Python must not see the orchestrator venv's variables.
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(self.env)
        env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        return env

    def users(self) -> list[RegistryUser]:
        """Every user of the registry (`contactsync status --json`)."""
        try:
            done = subprocess.run(
                self._command("status", "--json"),
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ContactsyncError(f"`contactsync status` could not run: {exc}") from exc
        if done.returncode != 0:
            raise ContactsyncError(
                f"`contactsync status` failed ({done.returncode}): {done.stderr.strip()[-500:]}"
            )
        try:
            rows = json.loads(done.stdout)["users"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ContactsyncError(f"`contactsync status --json` printed no users: {exc}") from exc
        return [
            RegistryUser(
                email=row["email"],
                active=bool(row["active"]),
                sync_type=row["sync_type"],
                job=row.get("job", ""),
                updated_at=row.get("updated_at"),
                last_run=row.get("last_run"),
            )
            for row in rows
        ]

    def run_user(self, email: str, log: Callable[[str], None] = lambda _: None) -> UserRun:
        """`contactsync run --user EMAIL`, its output passed line by line to ``log``."""
        command = self._command("run", "--user", email, "--timeout", f"{self.timeout_seconds:g}")
        tail: list[str] = []
        summary = ""
        try:
            with subprocess.Popen(
                command,
                env=self._env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as process:
                assert process.stdout is not None
                for line in process.stdout:
                    line = line.rstrip("\n")
                    log(line)
                    tail = [*tail[-(TAIL_LINES - 1) :], line]
                    done = _DONE.match(line)
                    if done and done["email"] == email:
                        summary = done["what"]
                code = process.wait()
        except OSError as exc:
            raise ContactsyncError(f"cannot start {command[0]}: {exc.strerror}") from exc
        return UserRun(email=email, returncode=code, output_tail="\n".join(tail), summary=summary)
