"""Shared machinery of the reliability tests: a user's sync run as real processes
(tap | mapper | target, one pipeline per leg, Singer state kept between runs the way Meltano
keeps it), a scenario of edits on both sides, the convergence check that counts lost and
duplicated contacts, and a recorder of outcomes for docs/reliability.md.

Set ``CONTACTSYNC_RELIABILITY_JSON=path`` to have every outcome written to ``path.<worker>.json``
at the end of the session; ``python -m tests.reliability.render path`` turns them into the table.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contactsync.outlook.projection import from_graph, pipeliner_stamp
from contactsync.pipeliner.projection import from_pipeliner
from tests.support.pipeline import Sync
from tests.support.plugins import USERS, sign_in

EUROPE = "a0000000-0000-4000-8000-000000000001"
AMERICAS = "a0000000-0000-4000-8000-000000000002"

PIPELINER_DATA = "/api/v100/rest/spaces/"
GRAPH_DATA = "/v1.0/"


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
