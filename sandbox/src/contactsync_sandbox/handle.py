"""`SandboxHandle`: one object to drive a sandbox from tests and scripts.

The pytest fixtures yield one for the sandbox they start; `connect()` gives one for a sandbox
running in another process (`contactsync-sandbox serve`). Through it a test seeds its own data,
gets the Meltano environment of a user (signed in), reads both sides as plain records and the
run reports, and injects faults, all over the sandbox's control API.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from . import instance
from .actors import OutlookActor, PipelinerActor
from .client import SandboxControl, sandbox_session
from .fixture import build_seed, load_seed_files, seed_dir_files
from .plugin_env import JOBS, LEGS, UserFiles, plugin_env
from .runner import SEED_SECTIONS
from .signin import sign_in
from .tls import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from .runner import Sandbox

#: Names a test may use for the emulators it injects faults into.
SERVICES: Mapping[str, str] = {
    "pipeliner": "pipeliner",
    "graph": "graph",
    "outlook": "graph",
    "identity": "identity",
    "login": "identity",
    "echo": "echo",
}
FAULT_KINDS = ("429", "5xx", "latency", "drop")
#: The state directory of `connect()` and of the CLI's commands when none is given.
STATE_DIR_VARIABLE = "CONTACTSYNC_SANDBOX_STATE_DIR"


class UnknownUser(LookupError):
    """The user is not both a Pipeliner user and a mailbox of the sandbox."""


class SandboxHandle:
    """URLs, the CA, control clients, and the helpers of a sandbox described by `info`."""

    def __init__(
        self,
        info: Mapping[str, Any],
        sandbox: Sandbox | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.info: dict[str, Any] = dict(info)
        self.ca_path = Path(self.info["ca_path"])
        self.data_dir = data_dir
        self._controls: dict[str, SandboxControl] = {}
        self._runs: dict[str, tuple[UserFiles, str | None]] = {}

    # ------------------------------------------------------------------ basics

    def url(self, name: str) -> str:
        return str(self.info["urls"][name])

    def control(self, name: str) -> SandboxControl:
        """The control-API client of emulator `name` (cached)."""
        if name not in self._controls:
            self._controls[name] = SandboxControl(self.url(name), self.ca_path)
        return self._controls[name]

    def session(self) -> requests.Session:
        """A new requests Session trusting the sandbox CA (and ignoring REQUESTS_CA_BUNDLE)."""
        return sandbox_session(self.ca_path)

    def reset(self) -> None:
        """Every emulator back to its start seed, with no faults and zero counters."""
        for name in self.info["urls"]:
            self.control(name).reset()
        self._runs.clear()
        self.refresh_info()

    def close(self) -> None:
        for control in self._controls.values():
            control.close()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ data in

    def seed(self, seed: Path | str | Mapping[str, Any]) -> dict[str, Any]:
        """Replace the data with a seed file, a directory of them, or a seed dict (short forms
        and defaults as for `serve --seed`); faults cleared, counters zeroed. Returns the
        complete seed. Sign-ins end: the identity emulator starts again from the seed."""
        if isinstance(seed, Mapping):
            complete = build_seed([("the seed", seed)])
        else:
            path = Path(seed)
            complete = load_seed_files(seed_dir_files(path) if path.is_dir() else [path])
        for name, section in SEED_SECTIONS.items():
            if name in self.info["urls"]:
                control = self.control(name)
                control.seed(complete[section])
                control.clear_faults()
                control.reset_counters()
        self._runs.clear()
        self.refresh_info()
        return complete

    def refresh_info(self) -> dict[str, Any]:
        """Re-read each emulator's part of `info` (the space, keys and tenant of its data now)."""
        for name in self.info["urls"]:
            self.info.update(self.control(name)._call("GET", "/info"))
        return self.info

    # ------------------------------------------------------------------ Meltano

    def env(
        self,
        user: str,
        *,
        job: str | None = None,
        folder: str = "Pipeliner",
        app_only: bool = False,
        sync_option: str | None = None,
        data_dir: Path | None = None,
    ) -> dict[str, str]:
        """The Meltano environment variables of `user`'s runs (`contactsync-sandbox env`),
        after signing them in (device code approved by the sandbox) unless `app_only`. Their
        files (token cache, ledger, Meltano state, reports) go to `<data_dir>/<user>/`."""
        self.check_user(user)
        root = data_dir or self.data_dir
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="contactsync-sandbox-"))
            self.data_dir = root
        files = UserFiles.under(Path(root), user)
        files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = plugin_env(
            self.info,
            user,
            files,
            job=job,
            folder=folder,
            app_only=app_only,
            sync_option=sync_option,
        )
        if not app_only:
            with self._faults_set_aside("identity"):
                sign_in(self.info, user, files.token_cache, self.control("identity"))
        self._runs[user.lower()] = (files, job)
        return env

    def check_user(self, user: str) -> None:
        """UnknownUser unless `user` is the e-mail of a Pipeliner user and of a mailbox."""
        emails = sorted(str(u.get("email")) for u in self.pipeliner_users())
        if user.lower() not in (e.lower() for e in emails):
            raise UnknownUser(
                f"{user} is not a Pipeliner user of the sandbox (users: {', '.join(emails)})"
            )
        boxes = self.control("graph")._call("GET", "/graph/mailboxes")["mailboxes"]
        upns = sorted(str(b["user_principal_name"]) for b in boxes)
        if user.lower() not in (u.lower() for u in upns):
            raise UnknownUser(
                f"{user} has no mailbox in the sandbox (mailboxes: {', '.join(upns) or 'none'}); "
                "add one under microsoft.mailboxes of the seed"
            )

    def report(self, leg: str = "pipeliner-to-outlook", user: str | None = None) -> dict[str, Any]:
        """The run report the target of `leg` wrote in `user`'s last run (the user of the only
        or last `env()` call by default)."""
        if leg not in LEGS:
            raise ValueError(f"unknown leg {leg!r}; the legs are {', '.join(LEGS)}")
        if not self._runs:
            raise LookupError("no run yet: get the environment of a user with env() first")
        key = user.lower() if user else next(reversed(self._runs))
        if key not in self._runs:
            raise LookupError(f"no env() for {user} yet")
        files, job = self._runs[key]
        path = files.report(leg, job)
        if not path.exists():
            raise FileNotFoundError(f"no report at {path}: has the {leg} leg run?")
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return report

    # ------------------------------------------------------------------ data out

    def pipeliner_contacts(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every Pipeliner contact as a plain record (the seed format: API field names, `cf_*`,
        relations inline)."""
        return self.pipeliner.contacts(include_deleted=include_deleted)

    def pipeliner_users(self) -> list[dict[str, Any]]:
        """The space's users (Clients) in the seed format, deleted ones left out (read through
        the control API: a test's faults are for the plugins)."""
        rows = self.control("pipeliner").state().get("users", [])
        return [row for row in rows if not row.get("is_deleted")]

    def outlook_contacts(self, mailbox: str, folder: str = "Pipeliner") -> list[dict[str, Any]]:
        """The contacts of one folder (display name, path or id) of a mailbox (UPN or id), as
        plain records (Graph property names, only those set)."""
        return self.outlook(mailbox).contacts(folder)

    def export(self) -> dict[str, Any]:
        """The current data as a seed (what `contactsync-sandbox export` writes)."""
        from .fixture import export_seed

        return export_seed(
            self.control("pipeliner").state(),
            self.control("graph").state(),
            self.control("identity").state(),
        )

    @property
    def pipeliner(self) -> PipelinerActor:
        """Act in Pipeliner as its users would (create, edit, share, delete)."""
        return PipelinerActor(self.control("pipeliner"))

    def outlook(self, mailbox: str) -> OutlookActor:
        """Act in Outlook as the owner of `mailbox` would."""
        return OutlookActor(self.control("graph"), mailbox)

    # ------------------------------------------------------------------ faults

    def fault(self, service: str, kind: str, **params: Any) -> dict[str, Any]:
        """Schedule a fault: `fault("outlook", "429", count=3, retry_after=1)`; services
        `pipeliner`, `outlook` (or `graph`), `login` (or `identity`); kinds `429`, `5xx`,
        `latency`, `drop`, with the control API's fields (`count`, `status`, `seconds`,
        `path_prefix`, `method`)."""
        name = SERVICES.get(service.lower())
        if name is None:
            raise ValueError(f"unknown service {service!r}; the services are {', '.join(SERVICES)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; the kinds are {', '.join(FAULT_KINDS)}")
        return self.control(name).add_fault(kind, **params)

    def clear_faults(self) -> None:
        for name in self.info["urls"]:
            self.control(name).clear_faults()

    @contextlib.contextmanager
    def _faults_set_aside(self, name: str) -> Iterator[None]:
        """Faults scheduled for the plugins, kept from the sandbox's own requests meanwhile."""
        control = self.control(name)
        pending = control.faults()
        if pending:
            control.clear_faults()
        try:
            yield
        finally:
            for fault in pending:
                fields = {k: v for k, v in fault.items() if k not in ("id", "kind", "remaining")}
                control.add_fault(fault["kind"], count=fault.get("remaining"), **fields)


def connect(state_dir: Path | str | None = None, *, wait: float = 0.0) -> SandboxHandle:
    """A handle on the sandbox `contactsync-sandbox serve` runs for `state_dir` (default: the
    `CONTACTSYNC_SANDBOX_STATE_DIR` variable, else ./.sandbox), waiting up to `wait` seconds
    for it to start. Users' files go to the sandbox's session directory."""
    state_dir = Path(state_dir or os.environ.get(STATE_DIR_VARIABLE) or DEFAULT_STATE_DIR)
    info = instance.find(state_dir, wait=wait)
    handle = SandboxHandle(info, data_dir=Path(info["session_dir"]))
    handle.refresh_info()  # its data may have been reseeded since it started
    return handle


__all__ = ["JOBS", "LEGS", "STATE_DIR_VARIABLE", "SandboxHandle", "UnknownUser", "connect"]
