"""Shared machinery of the reliability tests: a user's sync run as real processes
(tap | mapper | target, one pipeline per leg, Singer state kept between runs the way Meltano
keeps it), a scenario of edits on both sides, the convergence check that counts lost and
duplicated contacts, and a recorder of outcomes for docs/reliability.md.

Set ``CONTACTSYNC_RELIABILITY_JSON=path`` to have every outcome written to ``path.<worker>.json``
at the end of the session; ``python -m tests.reliability.render path`` turns them into the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contactsync.fieldmap import from_graph, from_pipeliner, pipeliner_stamp
from contactsync.ledger import Ledger
from contactsync.link import ScopeKey
from tests.support.plugins import BIN, USERS, OutlookActor, PipelinerActor, sign_in

EUROPE = "a0000000-0000-4000-8000-000000000001"
AMERICAS = "a0000000-0000-4000-8000-000000000002"

PIPELINER_DATA = "/api/v100/rest/spaces/"
GRAPH_DATA = "/v1.0/"


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
    """``tap | mapper | target`` as OS processes joined by pipes, started at once."""

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

    # -- configs --------------------------------------------------------------------------

    def pipeliner_config(self) -> dict[str, Any]:
        info = self.info
        return {
            "service_url": info["pipeliner_url"],
            "space_id": info["pipeliner_space_id"],
            "api_username": info["pipeliner_api_username"],
            "api_password": info["pipeliner_api_password"],
            "ca_bundle": info["ca_path"],
            "user_email": self.email,
        }

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
        mapper_cfg = _write_config(
            self.workdir, f"mapper-{direction}", self.mapper_config(direction)
        )
        target_cfg = _write_config(self.workdir, target, self.config(target))
        steps = [
            (tap, {"args": tap_args}),
            ("contactsync-mapper", {"args": ["--config", str(mapper_cfg)]}),
            (target, {"args": ["--config", str(target_cfg)]}),
        ]
        if self.tee_dir is not None:
            self.tee_dir.mkdir(parents=True, exist_ok=True)
            for at, name in ((2, "mapper-out"), (1, "tap-out")):
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

    def run(self) -> list[Leg]:
        """One run of the job; stops after the first failing leg, as Meltano does."""
        directions = ["pipeliner_to_outlook"]
        if self.sync_type == "two_way_your_contacts":
            directions.append("outlook_to_pipeliner")
        legs = []
        for direction in directions:
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
        scope = ScopeKey(self.email, self.info["pipeliner_space_id"], self.mailbox, self.folder)
        with Ledger(str(self.workdir / "ledger.sqlite")) as ledger, ledger.open_scope(scope) as s:
            return {lk.pipeliner_id: lk.outlook_id or "" for lk in s.iter_links()}

    def outlook_contacts(self) -> list[dict[str, Any]]:
        return self.outlook.contacts(self.folder)

    def in_scope_pipeliner(self) -> list[dict[str, Any]]:
        """Live Pipeliner contacts of the sync's scope (owner option: the user's own)."""
        return [c for c in self.pipeliner.contacts() if c["owner_id"] == USERS[self.user]]

    def logs(self) -> str:
        return "\n".join(leg.stderr for leg in self.legs)


# --------------------------------------------------------------------------- the scenario


def contact(n: int, owner: str = "alex", **fields: Any) -> dict[str, Any]:
    """A Pipeliner contact of the scenario; e-mail ``p<n>@rel.example`` is its identity."""
    return {
        "owner_id": USERS[owner],
        "unit_id": AMERICAS if owner == "lynne" else EUROPE,
        "first_name": f"Pat{n}",
        "last_name": "Reliable",
        "email1": f"p{n}@rel.example",
        **fields,
    }


def person(n: int, **props: Any) -> dict[str, Any]:
    """An Outlook-only contact of the scenario; e-mail ``o<n>@rel.example``."""
    address = f"o{n}@rel.example"
    return {
        "givenName": f"Olu{n}",
        "surname": "Outlooker",
        "emailAddresses": [{"address": address, "name": address}],
        **props,
    }


def email_of_graph(c: dict[str, Any]) -> str | None:
    addresses = c.get("emailAddresses") or []
    return (addresses[0].get("address") or "").lower() or None if addresses else None


@dataclass
class Expectation:
    """What both sides must hold after convergence: identities, and field values by identity."""

    emails: set[str]
    fields: dict[str, dict[str, str]] = field(default_factory=dict)  # email → table key → value
    gone: set[str] = field(default_factory=set)
    rounds: int = 0


def seed_scenario(sync: Sync, pipeliner_n: int = 16, outlook_n: int = 4) -> Expectation:
    """Contacts on both sides before the first run: the user's own, a colleague's (out of
    scope), and Outlook-only ones."""
    contacts = [contact(n) for n in range(1, pipeliner_n + 1)]
    contacts += [contact(90, "lynne"), contact(91, "megan")]
    sync.pipeliner.seed(contacts)
    sync.outlook.new_folder(sync.folder)
    for n in range(1, outlook_n + 1):
        sync.outlook.create(sync.folder, **person(n))
    emails = {f"p{n}@rel.example" for n in range(1, pipeliner_n + 1)}
    emails |= {f"o{n}@rel.example" for n in range(1, outlook_n + 1)}
    return Expectation(emails)


def edit_both_sides(sync: Sync, expect: Expectation, tag: str = "edit") -> Expectation:
    """After a sync: on each side a create, an edit and a delete, plus one contact edited on
    both sides in different fields. Each call (a round) uses contacts no earlier round touched
    (``seed_scenario`` leaves enough for three). Returns what convergence must then show."""
    r = expect.rounds
    a = 5 * r + 1
    pipeliner = {c["email1"]: c["id"] for c in sync.in_scope_pipeliner()}
    outlook = {email_of_graph(c): c["id"] for c in sync.outlook_contacts()}
    p = [f"p{n}@rel.example" for n in range(a, a + 5)]
    sync.pipeliner.edit("alex", pipeliner[p[0]], position=f"Pipeliner {tag}")
    sync.pipeliner.delete("alex", pipeliner[p[1]])
    sync.pipeliner.create("alex", **contact(100 + r))
    sync.outlook.edit(outlook[p[2]], jobTitle=f"Outlook {tag}")
    sync.outlook.delete(outlook[p[3]])  # Alex may delete: gone in Pipeliner too
    sync.outlook.create(sync.folder, **person(100 + r))
    sync.outlook.edit(outlook[f"o{r + 1}@rel.example"], mobilePhone=f"+1 555 01{r:02d}")
    # One contact, two fields, one per side: both edits must survive.
    sync.pipeliner.edit("alex", pipeliner[p[4]], city=f"Oslo {tag}")
    sync.outlook.edit(outlook[p[4]], jobTitle=f"Both {tag}")
    gone = {p[1], p[3]}
    emails = (expect.emails | {f"p{100 + r}@rel.example", f"o{100 + r}@rel.example"}) - gone
    fields = {
        **expect.fields,
        p[0]: {"job_title": f"Pipeliner {tag}"},
        p[2]: {"job_title": f"Outlook {tag}"},
        f"o{r + 1}@rel.example": {"mobile_phone": f"+1 555 01{r:02d}"},
        p[4]: {"city": f"Oslo {tag}", "job_title": f"Both {tag}"},
    }
    return Expectation(emails, fields, expect.gone | gone, r + 1)


@dataclass
class Convergence:
    lost: int
    duplicates: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def convergence(sync: Sync, expect: Expectation, *, two_way: bool = True) -> Convergence:
    """Counts contacts lost or duplicated on either side, and every disagreement."""
    problems: list[str] = []
    pipeliner = sync.in_scope_pipeliner()
    outlook = sync.outlook_contacts()
    p_emails = Counter((c.get("email1") or "").lower() for c in pipeliner)
    o_emails = Counter(email_of_graph(c) or "" for c in outlook)
    lost = 0
    sides = [("Outlook", o_emails)]
    if two_way:
        sides.append(("Pipeliner", p_emails))
    for side, seen in sides:
        for email in sorted(expect.emails):
            if not seen[email]:
                lost += 1
                problems.append(f"{email} missing in {side}")
    duplicates = sum(n - 1 for n in p_emails.values() if n > 1)
    duplicates += sum(n - 1 for n in o_emails.values() if n > 1)
    stamps = Counter(pipeliner_stamp(c) for c in outlook)
    duplicates += sum(n - 1 for s, n in stamps.items() if s and n > 1)
    if duplicates:
        problems.append(f"{duplicates} duplicates: {p_emails} {o_emails}")
    for email in sorted(expect.gone):
        if o_emails[email] or (two_way and p_emails[email]):
            problems.append(f"{email} should be deleted")
    # Every Outlook copy is linked to a live in-scope contact with equal table values.
    by_id = {c["id"]: c for c in pipeliner}
    links = sync.links()
    linked_outlook = {oid: pid for pid, oid in links.items()}
    for c in outlook:
        pid = linked_outlook.get(c["id"])
        if pid is None or pid not in by_id:
            problems.append(f"Outlook contact {email_of_graph(c)} is not linked to a live contact")
            continue
        left, right = from_pipeliner(by_id[pid]), from_graph(c)
        if left != right:
            diff = {k: (left[k], right[k]) for k in left if left[k] != right.get(k)}
            problems.append(f"{email_of_graph(c)} differs: {diff}")
    values = {(c.get("email1") or "").lower(): from_pipeliner(c) for c in pipeliner}
    for email, wanted in expect.fields.items():
        for key, value in wanted.items():
            got = values.get(email, {}).get(key)
            if got != value:
                problems.append(f"edit lost: {email} {key} = {got!r}, expected {value!r}")
                lost += 1
    return Convergence(lost, duplicates, problems)


def converge(sync: Sync, expect: Expectation, *, max_runs: int = 2) -> tuple[Convergence, int]:
    """Clean runs until both sides agree (at most ``max_runs``); the result and runs used."""
    result = Convergence(0, 0, ["not run"])
    for runs in range(1, max_runs + 1):
        sync.run_ok()
        result = convergence(sync, expect, two_way=sync.sync_type == "two_way_your_contacts")
        if result.ok:
            return result, runs
    return result, max_runs


# --------------------------------------------------------------------------- injection


class When:
    """Runs ``action`` once ``condition`` holds, polled in a thread while a run goes on."""

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None]) -> None:
        self.fired = threading.Event()
        self._stop = threading.Event()
        self._condition, self._action = condition, action
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._condition():
                self._action()
                self.fired.set()
                return
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def faulted_answers(control: Any) -> int:
    """Answers the emulator gave as faults so far: 429, 5xx and dropped connections."""
    statuses = control.counters()["total"]["statuses"]
    return sum(n for s, n in statuses.items() if s in {"429", "dropped"} or s.startswith("5"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def token_cache(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sign_in(sandbox, tmp_path_factory.mktemp("rel-auth") / "token-cache.json")


@pytest.fixture
def clean_sandbox(sandbox: Any) -> Iterator[Any]:
    """The session sandbox with no faults, no throttling and zeroed counters, before and after."""

    def clean() -> None:
        for name in ("pipeliner", "graph", "identity"):
            control = sandbox.control(name)
            control.clear_faults()
            control.reset_counters()
        sandbox.control("graph")._call("POST", "/graph/throttle", json={"requests": None})

    clean()
    yield sandbox
    clean()


@pytest.fixture
def sync(clean_sandbox: Any, token_cache: Path, tmp_path: Path) -> Sync:
    return Sync(clean_sandbox, token_cache, tmp_path)


# --------------------------------------------------------------------------- outcomes


OUTCOMES: list[dict[str, Any]] = []


@pytest.fixture
def record_outcome(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Records one cell's outcome (section, api, fault, counts) for the reliability report."""

    def record(**outcome: Any) -> None:
        OUTCOMES.append({"test": request.node.nodeid, **outcome})

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("CONTACTSYNC_RELIABILITY_JSON")
    if not target or not OUTCOMES:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"{target}.{worker}.json").write_text(json.dumps(OUTCOMES, indent=1))
