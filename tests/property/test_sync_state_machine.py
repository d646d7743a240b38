"""A Hypothesis state machine over two in-memory contact stores, the real plan, engine and ledger.

Random creates, edits (table and non-table fields), deletes, owner/editor changes, rights
changes, initial twins, and two-way sync rounds (Pipeliner -> Outlook, then back) with random
write failures. At the end: two quiet rounds, then both stores agree on every table key for
every in-scope contact, nothing is duplicated, no non-conflicting edit is lost, and a third
round writes nothing.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from contactsync.outlook.projection import from_graph, to_graph
from contactsync.pipeliner.projection import FIELD_NAMES, from_pipeliner
from contactsync.sync.engine import LegSettings, SyncLeg
from contactsync.sync.fields import BY_KEY, KEYS, normalize
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition, Side
from contactsync.sync.match import emails, name_key
from contactsync.sync.merge import ConflictPolicy
from tests.support.memory_stores import Clock, Faults, Store, apply_graph_patch, stamp_of

FIRST = ["Ann", "Bo", "Chloé", "Dan"]
LAST = ["Lee", "Ng", "Øster", "Park"]
COMPANY = ["Acme", "Globex", None]
EMAIL1 = [f"{n}@corp.example" for n in ("ann", "bo", "cy", "dee", "eve", "fay")]
TEXT = st.one_of(st.none(), st.sampled_from(["x", "Y  z", "ünï", "+1 555 0100", "line\r\nnext"]))
EDIT_KEYS = st.sampled_from([k for k in KEYS if k not in ("email1", "first_name", "last_name")])
PIPELINER_UNMAPPED = st.sampled_from(["phone3", "email4", "email5", "title"])
GRAPH_UNMAPPED = st.sampled_from(["birthday", "categories", "nickName", "homeAddress"])


@dataclass
class Edit:
    side: Side
    value: str | None
    round: int


class SyncMachine(RuleBasedStateMachine):
    """The model: two stores, a ledger scope, and a log of user edits for the final checks."""

    ledger: Ledger

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.scope = Partition("u1", "space", "mbx", f"folder-{uuid.uuid4().hex}")
        self.round = 0
        self.clean_rounds: list[int] = []
        self.cursor = {Side.CRM: 0, Side.BOOK: 0}
        # (side, id) -> key -> edits; tainted ids were deleted or changed scope/rights.
        self.edits: dict[tuple[Side, str], dict[str, list[Edit]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.tainted: set[tuple[Side, str]] = set()
        self.p: Store
        self.o: Store

    @initialize(policy=st.sampled_from(list(ConflictPolicy)), seed=st.integers(0, 2**16))
    def setup(self, policy: ConflictPolicy, seed: int) -> None:
        self.policy = policy
        faults = Faults(random.Random(seed))
        self.p = Store(Side.CRM, self.clock, faults)
        self.o = Store(Side.BOOK, self.clock, Faults(random.Random(seed + 1)))

    # -- helpers ---------------------------------------------------------------------------------

    def _evidence_taken(self, values: dict[str, Any], ignore: set[tuple[Side, str]]) -> bool:
        """Would these values share e-mail or name with another contact? Such pairs make an
        ambiguous match, which the sync reports and refuses to guess about, by design."""
        mine_e, mine_n = emails(values), name_key(values)
        for store in (self.p, self.o):
            for record_id in store.records:
                if (store.side, record_id) in ignore or store.records[record_id].deleted:
                    continue
                theirs = store.values(record_id)
                if mine_e & emails(theirs) or (mine_n and mine_n == name_key(theirs)):
                    return True
        return False

    def _edit_keeps_evidence(self, side: Side, record_id: str, key: str, value: str | None) -> bool:
        store = self.p if side is Side.CRM else self.o
        values = {**store.values(record_id), key: normalize(value, multiline=BY_KEY[key].multiline)}
        return not self._evidence_taken(values, self._linked_twin(side, record_id))

    def _linked_twin(self, side: Side, record_id: str) -> set[tuple[Side, str]]:
        with self.ledger.open_partition(self.scope) as led:
            link = led.get(side, record_id)
        if link is None:
            return {(side, record_id)}
        return {(Side.CRM, link.crm_id), (Side.BOOK, link.book_id or "")}

    def _log(self, side: Side, record_id: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.edits[(side, record_id)][key].append(
                Edit(side, normalize(value, multiline=BY_KEY[key].multiline), self.round)
            )

    # -- Pipeliner user ----------------------------------------------------------------------------

    @rule(
        first=st.sampled_from(FIRST),
        last=st.sampled_from(LAST),
        company=st.sampled_from(COMPANY),
        email=st.sampled_from([*EMAIL1, None]),
        phone=TEXT,
    )
    def p_create(
        self, first: str, last: str, company: str | None, email: str | None, phone: str | None
    ) -> None:
        values = {
            "first_name": first,
            "last_name": last,
            "company": company,
            "email1": email,
            "business_phone": phone,
        }
        if self._evidence_taken(values, set()):
            return
        raw = {
            "first_name": first,
            "last_name": last,
            "quick_account_name": company,
            "email1": email,
            "phone1": phone,
            "phone3": "fax-1",
            "email4": "keep@x.example",
        }
        record_id = self.p.user_create(raw)
        self._log(Side.CRM, record_id, values)

    @precondition(lambda self: self.p.live())
    @rule(data=st.data(), key=EDIT_KEYS, value=TEXT)
    def p_edit(self, data: st.DataObject, key: str, value: str | None) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.p.live())))
        if not self._edit_keeps_evidence(Side.CRM, record_id, key, value):
            return
        self.p.user_patch(record_id, {FIELD_NAMES[key]: value})
        self._log(Side.CRM, record_id, {key: value})

    @precondition(lambda self: self.p.live())
    @rule(data=st.data(), name=PIPELINER_UNMAPPED)
    def p_edit_unmapped(self, data: st.DataObject, name: str) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.p.live())))
        self.p.user_patch(record_id, {name: f"unmapped-{self.round}"})

    @precondition(lambda self: self.p.live())
    @rule(data=st.data())
    def p_delete(self, data: st.DataObject) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.p.live())))
        self.p.user_delete(record_id)
        self.tainted |= self._linked_twin(Side.CRM, record_id)

    @precondition(lambda self: self.p.live())
    @rule(data=st.data())
    def p_owner_or_editor_change(self, data: st.DataObject) -> None:
        """Owner changed or editor right removed/given: the contact leaves or enters the scope."""
        record_id = data.draw(st.sampled_from(sorted(self.p.live())))
        rec = self.p.records[record_id]
        self.tainted |= self._linked_twin(Side.CRM, record_id)
        self.p.user_set(record_id, in_scope=not rec.in_scope)

    @precondition(lambda self: self.p.live())
    @rule(data=st.data())
    def p_rights_change(self, data: st.DataObject) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.p.live())))
        rec = self.p.records[record_id]
        rec.can_delete = not rec.can_delete  # a role change does not touch the contact

    # -- Outlook user ---------------------------------------------------------------------------

    @rule(
        first=st.sampled_from(FIRST),
        last=st.sampled_from(LAST),
        company=st.sampled_from(COMPANY),
        email=st.sampled_from([*EMAIL1, None]),
        notes=TEXT,
    )
    def o_create(
        self, first: str, last: str, company: str | None, email: str | None, notes: str | None
    ) -> None:
        values = {
            "first_name": first,
            "last_name": last,
            "company": company,
            "email1": email,
            "notes": notes,
        }
        if self._evidence_taken(values, set()):
            return
        raw: dict[str, Any] = {
            "businessPhones": ["", "+1 second line"],
            "birthday": "1990-01-01",
            "categories": ["Blue"],
        }
        apply_graph_patch(raw, to_graph(values, raw, values.keys()))
        record_id = self.o.user_create(raw)
        self._log(Side.BOOK, record_id, values)

    @precondition(lambda self: self.p.live())
    @rule(data=st.data())
    def o_create_twin(self, data: st.DataObject) -> None:
        """The user types into Outlook a contact that already exists, unsynced, in Pipeliner."""
        record_id = data.draw(st.sampled_from(sorted(self.p.live())))
        with self.ledger.open_partition(self.scope) as led:
            if led.get(Side.CRM, record_id) is not None:
                return
        values = self.p.values(record_id)
        if not self.p.records[record_id].in_scope or self._evidence_taken(
            values, {(Side.CRM, record_id)}
        ):
            return
        twin = {k: values[k] for k in ("first_name", "last_name", "company", "email1")}
        raw: dict[str, Any] = {}
        apply_graph_patch(raw, to_graph(twin, raw, twin.keys()))
        new_id = self.o.user_create(raw)
        self._log(Side.BOOK, new_id, twin)

    @precondition(lambda self: self.o.live())
    @rule(data=st.data(), key=EDIT_KEYS, value=TEXT)
    def o_edit(self, data: st.DataObject, key: str, value: str | None) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.o.live())))
        if not self._edit_keeps_evidence(Side.BOOK, record_id, key, value):
            return
        raw = self.o.records[record_id].raw
        self.o.user_patch(record_id, to_graph({key: value}, raw, [key]))
        self._log(Side.BOOK, record_id, {key: value})

    @precondition(lambda self: self.o.live())
    @rule(data=st.data(), name=GRAPH_UNMAPPED)
    def o_edit_unmapped(self, data: st.DataObject, name: str) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.o.live())))
        self.o.user_patch(record_id, {name: f"unmapped-{self.round}"})

    @precondition(lambda self: self.o.live())
    @rule(data=st.data())
    def o_delete(self, data: st.DataObject) -> None:
        record_id = data.draw(st.sampled_from(sorted(self.o.live())))
        self.o.user_delete(record_id)
        self.tainted |= self._linked_twin(Side.BOOK, record_id)

    # -- sync -----------------------------------------------------------------------------------

    @rule(failures=st.sampled_from([0.0, 0.0, 0.3]))
    def sync(self, failures: float) -> None:
        self.run_round(failures)

    def run_round(self, failure_rate: float = 0.0) -> dict[str, int]:
        """One two-way run: Pipeliner -> Outlook, then Outlook -> Pipeliner."""
        self.round += 1
        before = self.p.faults.injected + self.o.faults.injected
        written: dict[str, int] = defaultdict(int)
        for source, dest in ((self.p, self.o), (self.o, self.p)):
            dest.faults.rate = failure_rate
            writes_before = dest.writes
            records = source.changes_since(self.cursor[source.side])
            settings_ = LegSettings(source.side, self.policy, two_way=True, allow_mass_delete=True)
            with self.ledger.open_partition(self.scope) as led:
                leg = SyncLeg(led, dest, settings_)
                leg.retry_failures()
                for start in range(0, len(records), 3):  # small batches: cross-batch paths too
                    leg.process(records[start : start + 3])
                leg.finish()
            self.cursor[source.side] = max(
                [self.cursor[source.side], *(source.records[r.id].seq for r in records)]
            )
            dest.faults.rate = 0.0
            written[str(dest.side)] += dest.writes - writes_before
        if self.p.faults.injected + self.o.faults.injected == before:
            self.clean_rounds.append(self.round)
        return written

    # -- the checks -----------------------------------------------------------------------------

    @invariant()
    def ledger_links_are_unique(self) -> None:
        if not hasattr(self, "p"):
            return
        with self.ledger.open_partition(self.scope) as led:
            links = list(led.iter_links())
        outlook_ids = [lk.book_id for lk in links if lk.book_id]
        assert len(outlook_ids) == len(set(outlook_ids))

    def teardown(self) -> None:
        if not hasattr(self, "p"):
            return
        self.run_round()
        self.run_round()
        self.check_converged()
        self.check_no_duplicates()
        self.check_no_lost_edit()
        third = self.run_round()
        assert dict(third) == {"outlook": 0, "pipeliner": 0}, f"a quiet third round wrote {third}"

    def check_converged(self) -> None:
        with self.ledger.open_partition(self.scope) as led:
            links = {lk.crm_id: lk for lk in led.iter_links()}
        live_o = self.o.live()
        in_scope = {i for i, r in self.p.live().items() if r.in_scope}
        for pid in in_scope:
            link = links.get(pid)
            assert link is not None and link.book_id in live_o, f"{pid} has no Outlook copy"
            p_values = from_pipeliner(self.p.records[pid].raw)
            o_values = from_graph(live_o[link.book_id].raw)
            assert p_values == o_values, f"{pid} and {link.book_id} disagree"
            assert stamp_of(live_o[link.book_id].raw) in (pid, None)
        linked_o = {lk.book_id for pid, lk in links.items() if pid in in_scope}
        orphans = set(live_o) - linked_o
        assert not orphans, f"Outlook contacts with no in-scope Pipeliner contact: {orphans}"
        for pid, rec in self.p.live().items():
            if not rec.in_scope:
                link = links.get(pid)
                assert link is None or link.book_id not in live_o, f"{pid} out of scope kept"

    def check_no_duplicates(self) -> None:
        for store in (self.p, self.o):
            origins = [r.created_from for r in store.live().values() if r.created_from]
            dupes = {o for o in origins if origins.count(o) > 1}
            assert not dupes, f"{store.side} has several live copies made from {dupes}"

    def check_no_lost_edit(self) -> None:
        """A key edited on one side only, or on both sides with a clean round between the two
        sides' edits, ends with the last edit's value."""
        with self.ledger.open_partition(self.scope) as led:
            links = list(led.iter_links())
        for link in links:
            pair = {(Side.CRM, link.crm_id), (Side.BOOK, link.book_id or "")}
            if pair & self.tainted or link.book_id not in self.o.live():
                continue
            final = from_pipeliner(self.p.records[link.crm_id].raw)
            for key in KEYS:
                history = sorted(
                    (e for side_id in pair for e in self.edits[side_id][key]),
                    key=lambda e: e.round,
                )
                if not history or not self._settled(history):
                    continue
                assert final[key] == history[-1].value, (
                    f"lost edit of {key} on {link.crm_id}/{link.book_id}: "
                    f"{history[-1]} but final {final[key]!r}"
                )

    def _settled(self, history: list[Edit]) -> bool:
        """Every change of side in the history has a clean round in between (else it may be
        a conflict, which the policy decides)."""
        for earlier, later in itertools.pairwise(history):
            if earlier.side is later.side:
                continue
            if not any(earlier.round < r <= later.round for r in self.clean_rounds):
                return False
        return True


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    path: Path = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    return Ledger(str(path))


def test_two_way_sync_converges(ledger: Ledger) -> None:
    SyncMachine.ledger = ledger
    runner = SyncMachine.TestCase
    runner.settings = settings(
        max_examples=int(os.environ.get("CONTACTSYNC_STATEFUL_EXAMPLES", "300")),
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    runner().runTest()
