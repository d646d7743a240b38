"""A Hypothesis state machine through the real plugins: every sync is the two-way job's two legs
(tap | mapper | target, real processes, real HTTP to the sandbox, a SQLite ledger), with the
Singer state carried between runs as Meltano carries it.

Random steps: creates, edits and deletes on both sides, owner changes and editor shares in
Pipeliner, sync runs with injected 429 bursts or 5xx answers on either API, and runs whose target
is SIGKILLed in the middle of its writes. At the end, two quiet runs, then: every in-scope
Pipeliner contact has exactly one agreeing copy in the folder, nothing else is in the folder, no
contact exists twice on either side, and no non-conflicting edit is lost.

The pure state machine (test_sync_state_machine.py) explores the decision logic far more
widely; this one checks that the plugins, the Singer plumbing and the HTTP clients carry it out.
``CONTACTSYNC_PLUGIN_EXAMPLES`` sets the number of scenarios (default 16, so that `make test` keeps
within its 15 minutes; raise it for a soak).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.sync.fields import BY_KEY, normalize
from contactsync.sync.link import Side
from contactsync_sandbox.client import SandboxControl
from tests.support.pipeline import Leg, Sync
from tests.support.plugins import USERS, OutlookActor, PipelinerActor, sign_in

EUROPE, AMERICAS = "a0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000002"
ALEX, LYNNE = USERS["alex"], USERS["lynne"]

# Table keys edited by the scenarios, with the field on each side (names are never edited: the
# last name is each contact's token, by which the checks find it on both sides).
PIPELINER_FIELD = {
    "job_title": "position",
    "mobile_phone": "phone4",
    "business_phone": "phone1",
    "notes": "comments",
}
VALUES = st.sampled_from([None, "Buyer", "Chief Ünïcode", "+47 22 00 00 00", "one\ntwo"])
KEYS = st.sampled_from(sorted(PIPELINER_FIELD))
# Which existing contact a step acts on: an index drawn whatever the sandbox holds, so that the
# draws do not depend on the outcome of earlier runs (Hypothesis requires it).
PICK = st.integers(0, 2**16)
FAULTS = st.sampled_from(
    [None, None, ("pipeliner", "429"), ("graph", "429"), ("pipeliner", "5xx"), ("graph", "5xx")]
)


def graph_patch(key: str, value: str | None) -> dict[str, Any]:
    if key == "business_phone":
        return {"businessPhones": [value] if value else []}
    name = {"job_title": "jobTitle", "mobile_phone": "mobilePhone", "notes": "personalNotes"}[key]
    return {name: value}


@dataclass
class Edit:
    side: Side
    value: str | None
    round: int


class PluginSyncMachine(RuleBasedStateMachine):
    """The sandbox is the world; the model keeps only what the checks need: tokens, edits,
    who shares with Alex, and which rounds ran clean."""

    sandbox: Any
    token_cache: Path
    workroot: Path

    def __init__(self) -> None:
        super().__init__()
        self.round = 0
        self.clean_rounds: list[int] = []
        self.killed_rounds: list[int] = []
        self.edits: dict[tuple[str, str], list[Edit]] = defaultdict(list)
        self.tainted: set[str] = set()
        self.shared: set[str] = set()  # Pipeliner ids shared with Alex as editor
        self.tokens = (f"T{n:03d}" for n in itertools.count())
        self.sync_run: Sync

    # -- set-up ----------------------------------------------------------------------------------

    @initialize(option=st.sampled_from(["owner", "owner_or_editor"]), owned=st.integers(1, 3))
    def setup(self, option: str, owned: int) -> None:
        self.option = option
        self.pipeliner = PipelinerActor(self.sandbox.control("pipeliner"))
        self.outlook = OutlookActor(self.sandbox.control("graph"))
        self.pipeliner.seed()
        self.outlook.control.clear_faults()
        self.folder = f"Prop {uuid.uuid4().hex[:8]}"
        self.outlook.new_folder(self.folder)
        workdir = self.workroot / self.folder.replace(" ", "-")
        self.sync_run = Sync(
            self.sandbox, self.token_cache, workdir, sync_option=option, folder=self.folder
        )
        # Scenarios delete most of a small set; the mass-delete guard has its own tests.
        for target in ("target-outlook-contacts", "target-pipeliner-contacts"):
            self.sync_run.extra[target] = {"allow_mass_delete": True}
        for _ in range(owned):
            self._p_create(owner=ALEX)
        self._p_create(owner=LYNNE)

    # -- helpers ---------------------------------------------------------------------------------

    def _log(self, token: str, side: Side, key: str, value: str | None) -> None:
        value = normalize(value, multiline=BY_KEY[key].multiline)
        self.edits[(token, key)].append(Edit(side, value, self.round))

    def _p_live(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.pipeliner.contacts()}

    def _o_live(self) -> dict[str, dict[str, Any]]:
        return {c["id"]: c for c in self.outlook.contacts(self.folder)}

    def _p_create(self, owner: str, **fields: Any) -> None:
        user = "alex" if owner == ALEX else "lynne"
        self.pipeliner.create(
            user,
            owner_id=owner,
            unit_id=EUROPE if owner == ALEX else AMERICAS,
            first_name="Ann",
            last_name=next(self.tokens),
            **fields,
        )

    def _owner_name(self, contact: dict[str, Any]) -> str:
        return "alex" if contact["owner_id"] == ALEX else "lynne"

    # -- Pipeliner user --------------------------------------------------------------------------

    @rule(owned=st.booleans(), title=VALUES)
    def p_create(self, owned: bool, title: str | None) -> None:
        self._p_create(owner=ALEX if owned else LYNNE, position=title or "")

    @rule(pick=PICK, key=KEYS, value=VALUES)
    def p_edit(self, pick: int, key: str, value: str | None) -> None:
        live = self._p_live()
        if not live:
            return
        contact = _pick(live, pick)
        # The API takes "" to clear a text field (null is refused).
        self.pipeliner.edit(
            self._owner_name(contact), contact["id"], **{PIPELINER_FIELD[key]: value or ""}
        )
        self._log(contact["last_name"], Side.CRM, key, value)

    @rule(pick=PICK)
    def p_delete(self, pick: int) -> None:
        live = self._p_live()
        if not live:
            return
        contact = _pick(live, pick)
        self.pipeliner.delete(self._owner_name(contact), contact["id"])
        self.tainted.add(contact["last_name"])

    @rule(pick=PICK)
    def p_owner_change(self, pick: int) -> None:
        live = self._p_live()
        if not live:
            return
        contact = _pick(live, pick)
        new_owner = LYNNE if contact["owner_id"] == ALEX else ALEX
        self.pipeliner._call(
            "POST",
            f"/users/{contact['owner_id']}/contacts/{contact['id']}/owner",
            {"owner_id": new_owner, "unit_id": EUROPE if new_owner == ALEX else AMERICAS},
        )
        self.tainted.add(contact["last_name"])

    @rule(pick=PICK)
    def p_editor_change(self, pick: int) -> None:
        """Lynne shares one of her contacts with Alex as editor, or stops sharing it."""
        theirs = {i: c for i, c in self._p_live().items() if c["owner_id"] == LYNNE}
        if not theirs:
            return
        contact = _pick(theirs, pick)
        verb = "unshare" if contact["id"] in self.shared else "share"
        body = {"client_id": ALEX, **({"role": 2} if verb == "share" else {})}
        self.pipeliner._call("POST", f"/users/{LYNNE}/contacts/{contact['id']}/{verb}", body)
        self.shared ^= {contact["id"]}
        self.tainted.add(contact["last_name"])

    # -- Outlook user ----------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES)
    def o_create(self, key: str, value: str | None) -> None:
        token = next(self.tokens)
        self.outlook.create(self.folder, givenName="Olga", surname=token, **graph_patch(key, value))
        self._log(token, Side.BOOK, key, value)

    @rule(pick=PICK, key=KEYS, value=VALUES)
    def o_edit(self, pick: int, key: str, value: str | None) -> None:
        live = self._o_live()
        if not live:
            return
        contact = _pick(live, pick)
        self.outlook.edit(contact["id"], **graph_patch(key, value))
        self._log(contact["surname"], Side.BOOK, key, value)

    @rule(pick=PICK)
    def o_delete(self, pick: int) -> None:
        live = self._o_live()
        if not live:
            return
        contact = _pick(live, pick)
        self.outlook.delete(contact["id"])
        self.tainted.add(contact["surname"])

    # -- sync runs -------------------------------------------------------------------------------

    @rule(fault=FAULTS, count=st.integers(1, 3))
    def sync(self, fault: tuple[str, str] | None, count: int) -> None:
        if fault is not None:
            api, kind = fault
            control = self.sandbox.control(api)
            if kind == "429":
                control.burst_429(count, retry_after=0.05)
            else:  # on writes: reads are retried within the run, writes fail per record
                control.fail_5xx(count, status=503 if count % 2 else 500, method="POST")
        runs = self._run()
        if fault is not None and fault[1] == "429":  # retried after Retry-After: never fatal
            assert all(r.ok for r in runs), runs[-1].stderr
        if fault is None and len(runs) == 2 and all(r.ok for r in runs):
            self.clean_rounds.append(self.round)

    @rule(leg=st.sampled_from(["pipeliner_to_outlook", "outlook_to_pipeliner"]))
    def killed_sync(self, leg: str) -> None:
        """SIGKILL the leg's target once its first write reached the API (writes slowed down so
        the kill lands in the middle of them)."""
        control = self.sandbox.control("graph" if leg == "pipeliner_to_outlook" else "pipeliner")
        control.latency(0.2, method="POST")
        before = _writes(control)
        self._run(kill=(leg, lambda: _writes(control) > before))
        self.killed_rounds.append(self.round)

    def _run(self, kill: tuple[str, Callable[[], bool]] | None = None) -> list[Leg]:
        self.round += 1
        try:
            return self.sync_run.run(kill=kill)
        finally:
            for api in ("pipeliner", "graph"):
                self.sandbox.control(api).clear_faults()

    # -- the checks ------------------------------------------------------------------------------

    def teardown(self) -> None:
        if not hasattr(self, "sync_run"):
            return
        for _ in range(2):
            runs = self._run()
            assert all(r.ok for r in runs), runs[-1].stderr
        self.check_converged()
        self.check_no_duplicates()
        self.check_no_lost_edit()

    def _in_scope(self, contact: dict[str, Any]) -> bool:
        if contact["owner_id"] == ALEX:
            return True
        return self.option == "owner_or_editor" and contact["id"] in self.shared

    def check_converged(self) -> None:
        pipeliner, outlook = self._p_live(), self._o_live()
        by_token = {c["surname"]: c for c in outlook.values()}
        for contact in pipeliner.values():
            copy = by_token.get(contact["last_name"])
            if not self._in_scope(contact):
                assert copy is None, f"{contact['last_name']} is out of scope but in the folder"
                continue
            assert copy is not None, f"{contact['last_name']} has no copy in the folder"
            assert from_pipeliner(contact) == from_graph(copy), contact["last_name"]
        in_scope = {c["last_name"] for c in pipeliner.values() if self._in_scope(c)}
        strays = set(by_token) - in_scope
        assert not strays, f"in the folder without an in-scope Pipeliner contact: {strays}"

    def check_no_duplicates(self) -> None:
        for side, names in (
            ("Pipeliner", [c["last_name"] for c in self._p_live().values()]),
            ("Outlook", [c["surname"] for c in self._o_live().values()]),
        ):
            twice = {n for n in names if names.count(n) > 1}
            assert not twice, f"{side} holds several contacts named {twice}"

    def check_no_lost_edit(self) -> None:
        """A key edited on one side only, or on both with a clean round between the two sides'
        edits, ends with the last edit's value (else it was a conflict: the policy decides)."""
        pipeliner = {c["last_name"]: c for c in self._p_live().values()}
        for (token, key), history in self.edits.items():
            if (
                token in self.tainted
                or token not in pipeliner
                or not _settled(history, self.clean_rounds, self.killed_rounds)
            ):
                continue
            final = from_pipeliner(pipeliner[token])[key]
            assert final == history[-1].value, f"lost edit of {key} on {token}: {history}"


def _pick(contacts: dict[str, dict[str, Any]], pick: int) -> dict[str, Any]:
    return contacts[sorted(contacts)[pick % len(contacts)]]


def _settled(history: list[Edit], clean_rounds: list[int], killed_rounds: list[int]) -> bool:
    """Whether the last edit of a key must win: every two successive edits from different
    sides, or with a killed run between them, have a clean round between them.

    A killed run may have written the earlier edit to the other side without the ledger hearing
    of it; until a clean round records it, a later edit of the same field is judged against
    that echo as a conflict. That is a known gap, pinned by
    tests/unit/test_engine.py::test_an_update_applied_by_a_killed_run_is_not_taken_for_an_edit
    (strict xfail): when it is fixed, that test fails and the killed-run clause goes.
    """
    for earlier, later in itertools.pairwise(history):
        between = range(earlier.round + 1, later.round + 1)
        killed = any(r in between for r in killed_rounds)
        if (earlier.side is not later.side or killed) and not any(
            r in between for r in clean_rounds
        ):
            return False
    return True


def _writes(control: SandboxControl) -> int:
    """Requests other than GET the emulator has answered or is answering."""
    endpoints = control.counters()["endpoints"]
    return sum(v["requests"] for k, v in endpoints.items() if not k.startswith("GET "))


def test_two_way_sync_through_the_plugins_converges(
    sandbox: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    PluginSyncMachine.sandbox = sandbox
    PluginSyncMachine.token_cache = sign_in(sandbox, tmp_path_factory.mktemp("auth") / "cache.json")
    PluginSyncMachine.workroot = tmp_path_factory.mktemp("plugin-machine")
    runner = PluginSyncMachine.TestCase
    runner.settings = settings(
        max_examples=int(os.environ.get("CONTACTSYNC_PLUGIN_EXAMPLES", "24")),
        stateful_step_count=6,  # each step may run processes: keeps `make test` within budget
        deadline=None,
        # No shrinking: each step runs processes, and shrinking a failure could take longer
        # than the whole suite. The failing steps are printed as generated.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    runner().runTest()
