"""A user's sync run as Meltano runs it, without Meltano's start-up: per leg, tap | target (the
target maps its partner tap's stream in-process, as the project's jobs do; ``Sync.mapper`` puts
contactsync-mapper between them) as real processes joined by OS pipes, the Singer state of each
tap kept between runs the way Meltano keeps it (the last state line its target wrote, also after
a failed or killed run).

Used where a test needs many runs: the reliability matrix and the plugin-level state machine.
Tests of the Meltano project itself use `meltano run` (tests/e2e).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition
from tests.support.plugins import BIN, USERS, OutlookActor, PipelinerActor, pipeliner_connection

# --------------------------------------------------------------------------- processes


@dataclass
class Leg:
    """One leg's three processes once they ended: exit codes, logs, the target's last state."""

    name: str
    returncodes: dict[str, int]
    logs: dict[str, str]
    state: dict[str, Any] | None
    report: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.returncodes.values())

    @property
    def stderr(self) -> str:
        return "\n".join(f"--- {name}\n{text}" for name, text in self.logs.items())


class Pipeline:
    """``tap | [mapper |] target`` as OS processes joined by pipes, started at once."""

    def __init__(
        self,
        name: str,
        steps: list[tuple[str, dict[str, Any]]],
        workdir: Path,
        stdin: Path | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_paths: dict[str, Path] = {}
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        upstream: Any = stdin.open("rb") if stdin else subprocess.DEVNULL
        for executable, argv in steps:
            run_id = uuid.uuid4().hex[:6]
            log_path = logs / f"{executable}.{run_id}.log"
            self.log_paths[executable] = log_path
            with log_path.open("wb") as err:
                proc = subprocess.Popen(
                    [argv.get("cmd") or str(BIN / executable), *argv["args"]],
                    stdin=upstream,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    cwd=workdir,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            if upstream is not subprocess.DEVNULL:
                upstream.close()  # the next process owns it now: EOF and SIGPIPE propagate
            upstream = proc.stdout
            self.procs[executable] = proc
        self.last = list(self.procs.values())[-1]

    def kill(self, executable: str) -> None:
        self.procs[executable].kill()

    def kill_when(self, condition: Callable[[], bool], timeout: float = 120) -> bool:
        """SIGKILL the last process once ``condition()`` holds, and the others with it (as
        Meltano stops a pipeline whose target died); False if it ended by itself first."""
        deadline = time.monotonic() + timeout
        while self.last.poll() is None:
            if condition():
                for proc in reversed(self.procs.values()):
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                return True
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: neither ended nor reached the kill point")
            time.sleep(0.02)
        return False

    def wait(self, timeout: float = 180) -> tuple[dict[str, int], list[dict[str, Any]]]:
        out, _ = self.last.communicate(timeout=timeout)
        codes = {name: proc.wait(timeout=timeout) for name, proc in self.procs.items()}
        messages = []
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    messages.append(json.loads(line))
        return codes, messages


def _write_config(workdir: Path, name: str, config: dict[str, Any]) -> Path:
    path = workdir / "config" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


class Sync:
    """One user's sync between Pipeliner and one Outlook folder, run leg by leg as processes.

    Like ``meltano run``: the Pipeliner → Outlook leg first, then (two-way) the way back; a
    failing leg ends the run; each tap gets the last state its target emitted, even when the
    run failed (Meltano keeps such partial state).
    """

    def __init__(
        self,
        sandbox: Any,
        token_cache: Path,
        workdir: Path,
        *,
        user: str = "alex",
        sync_type: str = "two_way_your_contacts",
        sync_option: str | None = None,
        folder: str | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.info = sandbox.info
        self.token_cache = token_cache
        self.workdir = workdir
        self.user = user
        self.email = f"{user}@contoso.example"
        self.sync_type = sync_type
        self.sync_option = sync_option
        self.folder = folder or f"Rel {uuid.uuid4().hex[:8]}"
        self.pipeliner = PipelinerActor(sandbox.control("pipeliner"))
        self.outlook = OutlookActor(sandbox.control("graph"))
        self.states: dict[str, dict[str, Any]] = {}
        self.extra: dict[str, dict[str, Any]] = {}  # per executable, on top of the defaults
        self.legs: list[Leg] = []
        self.mailbox = "me"
        #: When set, every Singer message between the processes is also kept here (tee).
        self.tee_dir: Path | None = None
        #: contactsync-mapper between tap and target (else the target maps, as in the jobs).
        self.mapper = False

    # -- configs --------------------------------------------------------------------------

    def pipeliner_config(self) -> dict[str, Any]:
        return pipeliner_connection(self.info, self.user)

    def graph_config(self) -> dict[str, Any]:
        info = self.info
        return {
            "authority": info["authority"],
            "client_id": info["identity_client_id"],
            "token_cache_path": str(self.token_cache),
            "ca_bundle": info["ca_path"],
            "graph_url": info["graph_url"],
            "mailbox": self.mailbox,
            "folder": self.folder,
            "create_folder": True,
        }

    def _scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {"sync_type": self.sync_type}
        if self.sync_option:
            scope["sync_option"] = self.sync_option
        return scope

    def config(self, executable: str) -> dict[str, Any]:
        writes = {
            "space_id": self.info["pipeliner_space_id"],
            "user_email": self.email,
            "mailbox": self.mailbox,
            "folder": self.folder,
            "ledger_url": str(self.workdir / "ledger.sqlite"),
            "report_path": str(self.workdir / f"{executable}.report.json"),
        }
        base: dict[str, Any] = {
            "tap-pipeliner-contacts": {**self.pipeliner_config(), **self._scope(), "page_size": 5},
            "tap-outlook-contacts": {**self.graph_config(), "delta_page_size": 5},
            "target-outlook-contacts": {**self.graph_config(), **writes, **self._scope()},
            "target-pipeliner-contacts": {**self.pipeliner_config(), **writes, **self._scope()},
        }[executable]
        merged = {**base, **self.extra.get(executable, {})}
        return {k: v for k, v in merged.items() if v is not None}  # None: leave it unset

    def mapper_config(self, direction: str) -> dict[str, Any]:
        if direction == "outlook_to_pipeliner":
            return {"direction": direction}
        return {"direction": direction, **self._scope()}

    # -- runs -----------------------------------------------------------------------------

    def start_leg(self, direction: str, tap_output: Path | None = None) -> Pipeline:
        """Start one leg; with ``tap_output``, that file stands in for the tap's output."""
        tap, target = {
            "pipeliner_to_outlook": ("tap-pipeliner-contacts", "target-outlook-contacts"),
            "outlook_to_pipeliner": ("tap-outlook-contacts", "target-pipeliner-contacts"),
        }[direction]
        tap_args = ["--config", str(_write_config(self.workdir, tap, self.config(tap)))]
        if tap in self.states:
            state_path = self.workdir / "config" / f"{tap}.state.json"
            state_path.write_text(json.dumps(self.states[tap]))
            tap_args += ["--state", str(state_path)]
        target_cfg = _write_config(self.workdir, target, self.config(target))
        steps = [(tap, {"args": tap_args}), (target, {"args": ["--config", str(target_cfg)]})]
        tees = [(1, "tap-out")]
        if self.mapper:
            mapper_cfg = _write_config(
                self.workdir, f"mapper-{direction}", self.mapper_config(direction)
            )
            steps.insert(1, ("contactsync-mapper", {"args": ["--config", str(mapper_cfg)]}))
            tees.insert(0, (2, "mapper-out"))
        if self.tee_dir is not None:
            self.tee_dir.mkdir(parents=True, exist_ok=True)
            for at, name in tees:
                copy = self.tee_dir / f"{direction}.{name}.{uuid.uuid4().hex[:6]}.jsonl"
                steps.insert(at, (f"tee-{name}", {"cmd": "/usr/bin/tee", "args": [str(copy)]}))
        if tap_output is not None:
            steps = steps[1:]
        pipeline = Pipeline(direction, steps, self.workdir, stdin=tap_output)
        pipeline.tap = tap  # type: ignore[attr-defined]
        pipeline.target = target  # type: ignore[attr-defined]
        return pipeline

    def finish_leg(self, pipeline: Pipeline, timeout: float = 180) -> Leg:
        codes, messages = pipeline.wait(timeout)
        states = messages  # a target writes each state value as one JSON line (Meltano reads it)
        tap: str = pipeline.tap  # type: ignore[attr-defined]
        target: str = pipeline.target  # type: ignore[attr-defined]
        if states:
            self.states[tap] = states[-1]
        report_path = self.workdir / f"{target}.report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        if report_path.exists():
            report_path.unlink()  # so the next leg's absence of a report is visible
        logs = {
            name: path.read_text(encoding="utf-8", errors="replace")
            for name, path in pipeline.log_paths.items()
        }
        leg = Leg(pipeline.name, codes, logs, states[-1] if states else None, report)
        self.legs.append(leg)
        return leg

    def leg(self, direction: str, tap_output: Path | None = None) -> Leg:
        return self.finish_leg(self.start_leg(direction, tap_output))

    def run(self, *, kill: tuple[str, Callable[[], bool]] | None = None) -> list[Leg]:
        """One run of the job; stops after the first failing leg, as Meltano does. With
        ``kill=(direction, condition)``, that leg's target is SIGKILLed once ``condition()``
        holds."""
        directions = ["pipeliner_to_outlook"]
        if self.sync_type == "two_way_your_contacts":
            directions.append("outlook_to_pipeliner")
        legs = []
        for direction in directions:
            if kill is not None and kill[0] == direction:
                pipeline = self.start_leg(direction)
                pipeline.kill_when(kill[1])
                leg = self.finish_leg(pipeline)
            else:
                leg = self.leg(direction)
            legs.append(leg)
            if not leg.ok:
                break
        return legs

    def run_ok(self) -> list[Leg]:
        legs = self.run()
        for leg in legs:
            assert leg.ok, leg.stderr[-4000:]
        return legs

    # -- the two sides --------------------------------------------------------------------

    def links(self) -> dict[str, str]:
        scope = Partition(self.email, self.info["pipeliner_space_id"], self.mailbox, self.folder)
        with (
            Ledger(str(self.workdir / "ledger.sqlite")) as ledger,
            ledger.open_partition(scope) as s,
        ):
            return {lk.crm_id: lk.book_id or "" for lk in s.iter_links()}

    def outlook_contacts(self) -> list[dict[str, Any]]:
        return self.outlook.contacts(self.folder)

    def in_scope_pipeliner(self) -> list[dict[str, Any]]:
        """Live Pipeliner contacts of the sync's scope (owner option: the user's own)."""
        return [c for c in self.pipeliner.contacts() if c["owner_id"] == USERS[self.user]]

    def logs(self) -> str:
        return "\n".join(leg.stderr for leg in self.legs)
