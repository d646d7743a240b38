"""contactsync.sync.plan: every decision of one sync leg, table-driven (DESIGN §1, §4).

S = incoming source values, A = the link's agreed values, D = the destination's current values.
Each table row names the scenario and the direction (``p->o``: Pipeliner record, Outlook copy;
``o->p``: Outlook record, Pipeliner copy) and states the exact Action expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.sync.fields import KEYS, Values, empty_values, normalize_values
from contactsync.sync.link import Link, LinkState, Side
from contactsync.sync.merge import Conflict, ConflictPolicy
from contactsync.sync.plan import (
    MASS_DELETE_FLOOR,
    WRITING_KINDS,
    Action,
    DeleteReason,
    DestRecord,
    Kind,
    LegContext,
    MassDeleteRefused,
    SourceRecord,
    check_mass_delete,
    plan_batch,
    plan_linked,
    plan_owed_to_book,
)

PL, OL = Side.CRM, Side.BOOK
PW, OW, NW = (
    ConflictPolicy.CRM_WINS,
    ConflictPolicy.BOOK_WINS,
    ConflictPolicy.NEWEST_WINS,
)
ACTIVE, LEAVING, RESTORE_BOOK = LinkState.ACTIVE, LinkState.LEAVING, LinkState.RESTORE_BOOK
DELETED, OUT_OF_SCOPE = DeleteReason.DELETED, DeleteReason.OUT_OF_SCOPE

P_ID, O_ID = "p-1", "o-1"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EARLIER, LATER = T0 - timedelta(hours=1), T0 + timedelta(hours=1)


def vals(**kw: str | None) -> dict[str, str | None]:
    return normalize_values(kw)


def edit(base: Values, **kw: str | None) -> dict[str, str | None]:
    merged = dict(base)
    merged.update(kw)
    return normalize_values(merged)


BASE = vals(
    first_name="Ada",
    last_name="Lovelace",
    company="Analytical Engines",
    job_title="Mathematician",
    business_phone="+44 20 7946 0000",
    email1="ada@example.com",
    city="London",
    notes="Met at the\nRoyal Society",
)
EMPTY = empty_values()


def src_dest_ids(side: Side) -> tuple[str, str]:
    return (P_ID, O_ID) if side is PL else (O_ID, P_ID)


def tag(side: Side) -> str:
    return "p->o" if side is PL else "o->p"


# --- linked records: one table for live records and tombstones ---------------------------------

#: Expect.agreed / Expect.dest_id sentinels.
UNCHANGED = "<agreed unchanged: None or equal to A>"
AUTO = "<the link's id on the destination side>"


@dataclass(frozen=True)
class Expect:
    kind: Kind
    fields: Mapping[str, str | None] = field(default_factory=dict)
    agreed: Mapping[str, str | None] | str | None = None
    link_state: LinkState | None = None
    #: (key, winner); "source"/"dest" resolve against the row's direction.
    conflicts: tuple[tuple[str, Side | str], ...] = ()
    reason: str = ""
    dest_id: str | None = AUTO


@dataclass(frozen=True)
class Row:
    name: str
    side: Side
    source: Values | None  # None: a tombstone
    dest: Values | None  # None: the destination copy is gone
    expect: Expect
    agreed: Values = field(default_factory=lambda: BASE)
    policy: ConflictPolicy = PW
    two_way: bool = True
    state: LinkState = ACTIVE
    book_id: str | None = O_ID
    deleted: DeleteReason = DELETED
    can_delete: bool = True
    edit_refusal: str | None = None
    scope_exit: str | None = None
    version: str | None = None
    link_versions: tuple[str | None, str | None] = (None, None)  # (pipeliner, outlook)
    source_modified: datetime | None = None
    dest_modified: datetime | None = None

    @property
    def id(self) -> str:
        return f"{self.name}[{tag(self.side)}]"


def run_row(row: Row) -> Action:
    src_id, dest_id = src_dest_ids(row.side)
    if row.source is None:
        record = SourceRecord.tombstone(src_id, row.deleted)
    else:
        record = SourceRecord(src_id, row.source, modified=row.source_modified, version=row.version)
    link = Link(
        P_ID, row.book_id, row.agreed, row.link_versions[0], row.link_versions[1], row.state
    )
    dest = (
        None
        if row.dest is None
        else DestRecord(
            dest_id,
            row.dest,
            modified=row.dest_modified,
            can_delete=row.can_delete,
            edit_refusal=row.edit_refusal,
            scope_exit=row.scope_exit,
        )
    )
    return plan_linked(record, link, dest, LegContext(row.side, row.policy, row.two_way))


def check_row(action: Action, row: Row) -> None:
    exp = row.expect
    src_id, _ = src_dest_ids(row.side)
    if exp.dest_id == AUTO:
        expected_dest = row.book_id if row.side is PL else P_ID
    else:
        expected_dest = exp.dest_id
    assert action.kind is exp.kind, action.reason
    assert action.source_id == src_id
    assert action.dest_id == expected_dest
    assert dict(action.fields) == dict(exp.fields)
    if exp.agreed == UNCHANGED:
        assert action.agreed is None or dict(action.agreed) == dict(row.agreed)
    elif exp.agreed is None:
        assert action.agreed is None
    else:
        assert action.agreed is not None
        assert dict(action.agreed) == dict(exp.agreed)
    assert action.link_state is exp.link_state
    expected_conflicts = []
    for key, winner in exp.conflicts:
        assert row.source is not None and row.dest is not None
        side = {"source": row.side, "dest": row.side.other}.get(winner, winner)  # type: ignore[call-overload]
        expected_conflicts.append(Conflict(key, row.source[key], row.dest[key], side))
    assert list(action.conflicts) == expected_conflicts
    assert exp.reason.casefold() in action.reason.casefold()
    assert action.writes is (exp.kind in WRITING_KINDS)


def both(name: str, expect: Expect, **kw: object) -> list[Row]:
    return [Row(name, side, expect=expect, **kw) for side in (PL, OL)]  # type: ignore[arg-type]


# Values used by the rows.
SRC_EDIT = edit(BASE, job_title="CTO", city="Paris")
SRC_CLEARED = edit(BASE, business_phone=None)
DEST_EDIT = edit(BASE, mobile_phone="+44 7700 900123")
BOTH_SAME = edit(BASE, job_title="CTO")
SRC_TITLE = edit(BASE, job_title="CTO")
DEST_TITLE = edit(BASE, job_title="CEO")
SRC_TITLE_CITY = edit(BASE, job_title="CTO", city="Paris")
SRC_TITLE_CLEARED = edit(BASE, job_title=None)


def conflict_rows() -> list[Row]:
    """A conflicting change to job_title under each policy, from each side."""
    rows: list[Row] = []
    update = {"job_title": "CTO"}

    def source_wins(winner: Side | str) -> Expect:
        return Expect(Kind.UPDATE, update, SRC_TITLE, conflicts=(("job_title", winner),))

    def dest_wins(winner: Side | str) -> Expect:
        return Expect(
            Kind.CONFLICT_RESOLVED,
            {},
            SRC_TITLE,
            conflicts=(("job_title", winner),),
            reason="value kept",
        )

    common = {"source": SRC_TITLE, "dest": DEST_TITLE}
    for side in (PL, OL):
        pipeliner_is_source = side is PL
        rows += [
            Row(
                "conflict pipeliner_wins",
                side,
                policy=PW,
                **common,
                expect=source_wins(PL) if pipeliner_is_source else dest_wins(PL),
            ),
            Row(
                "conflict outlook_wins",
                side,
                policy=OW,
                **common,
                expect=dest_wins(OL) if pipeliner_is_source else source_wins(OL),
            ),
            Row(
                "conflict newest_wins source newer",
                side,
                policy=NW,
                **common,
                source_modified=LATER,
                dest_modified=EARLIER,
                expect=source_wins("source"),
            ),
            Row(
                "conflict newest_wins dest newer",
                side,
                policy=NW,
                **common,
                source_modified=EARLIER,
                dest_modified=LATER,
                expect=dest_wins("dest"),
            ),
            Row(
                "conflict newest_wins tie goes to pipeliner",
                side,
                policy=NW,
                **common,
                source_modified=T0,
                dest_modified=T0,
                expect=source_wins(PL) if pipeliner_is_source else dest_wins(PL),
            ),
            Row(
                "conflict newest_wins unknown time goes to pipeliner",
                side,
                policy=NW,
                **common,
                source_modified=None,
                dest_modified=LATER,
                expect=source_wins(PL) if pipeliner_is_source else dest_wins(PL),
            ),
            # The destination wins job_title, but the source's own edit to city still goes out.
            Row(
                "conflict lost plus a clean source edit",
                side,
                policy=OW if side is PL else PW,
                source=SRC_TITLE_CITY,
                dest=DEST_TITLE,
                expect=Expect(
                    Kind.UPDATE,
                    {"city": "Paris"},
                    SRC_TITLE_CITY,
                    conflicts=(("job_title", "dest"),),
                ),
            ),
            # Source cleared the value, destination changed it: clearing is a value too.
            Row(
                "conflict source cleared, source wins",
                side,
                policy=PW if side is PL else OW,
                source=SRC_TITLE_CLEARED,
                dest=DEST_TITLE,
                expect=Expect(
                    Kind.UPDATE,
                    {"job_title": None},
                    SRC_TITLE_CLEARED,
                    conflicts=(("job_title", "source"),),
                ),
            ),
        ]
    return rows


LIVE_ROWS: list[Row] = [
    *both(
        "unchanged",
        source=BASE,
        dest=BASE,
        version="v2",
        link_versions=("v1", "v1"),
        expect=Expect(Kind.SKIP, reason="no change"),
    ),
    Row(
        "echo of our own write",
        PL,
        source=BASE,
        dest=BASE,
        version="v7",
        link_versions=("v7", None),
        expect=Expect(Kind.SKIP, reason="echo"),
    ),
    Row(
        "echo of our own write",
        OL,
        source=BASE,
        dest=BASE,
        version="ck7",
        link_versions=(None, "ck7"),
        expect=Expect(Kind.SKIP, reason="echo"),
    ),
    # The *other* side's version matching is no echo of this record.
    Row(
        "version of the other side is no echo",
        PL,
        source=BASE,
        dest=BASE,
        version="v7",
        link_versions=(None, "v7"),
        expect=Expect(Kind.SKIP, reason="no change"),
    ),
    *both(
        "source-only change",
        source=SRC_EDIT,
        dest=BASE,
        expect=Expect(Kind.UPDATE, {"job_title": "CTO", "city": "Paris"}, SRC_EDIT),
    ),
    *both(
        "source cleared a value",
        source=SRC_CLEARED,
        dest=BASE,
        expect=Expect(Kind.UPDATE, {"business_phone": None}, SRC_CLEARED),
    ),
    *both(
        "destination-only change is kept",
        source=BASE,
        dest=DEST_EDIT,
        expect=Expect(Kind.SKIP, agreed=UNCHANGED),
    ),
    *both(
        "destination-only change, echo",
        source=BASE,
        dest=DEST_EDIT,
        version="v7",
        link_versions=("v7", "v7"),
        expect=Expect(Kind.SKIP, agreed=UNCHANGED, reason="echo"),
    ),
    *both(
        "same change on both sides",
        source=BOTH_SAME,
        dest=BOTH_SAME,
        expect=Expect(Kind.SKIP, agreed=BOTH_SAME),
    ),
    *both(
        "different fields changed on both sides",
        source=SRC_TITLE,
        dest=DEST_EDIT,
        expect=Expect(Kind.UPDATE, {"job_title": "CTO"}, SRC_TITLE),
    ),
    *both(
        "all keys empty, unchanged",
        source=EMPTY,
        dest=EMPTY,
        agreed=EMPTY,
        expect=Expect(Kind.SKIP),
    ),
    *conflict_rows(),
    # -- destination copy gone ----------------------------------------------------------------
    *both(
        "copy gone, two-way, source unchanged",
        source=BASE,
        dest=None,
        expect=Expect(Kind.SKIP, reason="other leg"),
    ),
    *both(
        "copy gone, two-way, source edited",
        source=SRC_EDIT,
        dest=None,
        expect=Expect(Kind.RESTORE, SRC_EDIT, SRC_EDIT, reason="missing"),
    ),
    Row(
        "copy gone, one-way, source unchanged",
        PL,
        source=BASE,
        dest=None,
        two_way=False,
        expect=Expect(Kind.RESTORE, BASE, BASE),
    ),
    Row(
        "copy gone, one-way, source edited",
        PL,
        source=SRC_EDIT,
        dest=None,
        two_way=False,
        expect=Expect(Kind.RESTORE, SRC_EDIT, SRC_EDIT),
    ),
    Row(
        "restore owed (RESTORE_BOOK), two-way",
        PL,
        source=BASE,
        dest=None,
        state=RESTORE_BOOK,
        book_id=None,
        expect=Expect(Kind.RESTORE, BASE, BASE, link_state=ACTIVE, dest_id=None),
    ),
    Row(
        "restore owed (RESTORE_BOOK), edited meanwhile",
        PL,
        source=SRC_EDIT,
        dest=None,
        state=RESTORE_BOOK,
        book_id=None,
        expect=Expect(Kind.RESTORE, SRC_EDIT, SRC_EDIT, link_state=ACTIVE, dest_id=None),
    ),
    # -- back in scope after LEAVING ------------------------------------------------------------
    Row(
        "back in scope, copy present, unchanged",
        PL,
        source=BASE,
        dest=BASE,
        state=LEAVING,
        expect=Expect(Kind.SKIP, link_state=ACTIVE),
    ),
    Row(
        "back in scope, copy present, edited",
        PL,
        source=SRC_EDIT,
        dest=BASE,
        state=LEAVING,
        expect=Expect(
            Kind.UPDATE, {"job_title": "CTO", "city": "Paris"}, SRC_EDIT, link_state=ACTIVE
        ),
    ),
    Row(
        "back in scope, copy already removed",
        PL,
        source=BASE,
        dest=None,
        state=LEAVING,
        expect=Expect(Kind.RESTORE, BASE, BASE, link_state=ACTIVE),
    ),
    # -- rights at the time of the write (issue #11): only a Pipeliner copy can refuse ------------
    Row(
        "outlook edit of a contact that left the scope",
        OL,
        source=SRC_EDIT,
        dest=BASE,
        scope_exit="alex can no longer edit this contact",
        expect=Expect(Kind.LEAVE, link_state=LEAVING, reason="can no longer edit"),
    ),
    Row(
        "outlook edit of a contact the user may not edit",
        OL,
        source=SRC_EDIT,
        dest=BASE,
        edit_refusal="the Pipeliner contact is archived",
        expect=Expect(
            Kind.REJECT,
            agreed=BASE,
            link_state=RESTORE_BOOK,
            reason="not written: the Pipeliner contact is archived",
        ),
    ),
    Row(
        "outlook edit equal to a not editable pipeliner contact",
        OL,
        source=DEST_EDIT,
        dest=DEST_EDIT,
        edit_refusal="read-only role",
        expect=Expect(Kind.SKIP, agreed=DEST_EDIT),
    ),
    Row(
        "pipeliner record puts back a refused outlook edit",
        PL,
        source=BASE,
        dest=DEST_EDIT,
        state=RESTORE_BOOK,
        expect=Expect(
            Kind.UPDATE,
            {"mobile_phone": BASE["mobile_phone"]},
            BASE,
            link_state=ACTIVE,
            reason="put back",
        ),
    ),
]


TOMBSTONE_ROWS: list[Row] = [
    *both(
        "tombstone, copy already gone",
        source=None,
        dest=None,
        expect=Expect(Kind.FORGET, reason="both sides"),
    ),
    # -- deleted in Pipeliner -----------------------------------------------------------------
    Row(
        "pipeliner deleted, outlook unchanged, two-way",
        PL,
        source=None,
        dest=BASE,
        expect=Expect(Kind.DELETE, reason="deleted in pipeliner"),
    ),
    Row(
        "pipeliner deleted, outlook unchanged, one-way",
        PL,
        source=None,
        dest=BASE,
        two_way=False,
        expect=Expect(Kind.DELETE, reason="deleted in pipeliner"),
    ),
    Row(
        "pipeliner deleted, outlook edited, two-way",
        PL,
        source=None,
        dest=DEST_EDIT,
        expect=Expect(Kind.KEEP, reason="edited in Outlook (mobile_phone)"),
    ),
    Row(
        "pipeliner deleted, outlook edited, one-way",
        PL,
        source=None,
        dest=DEST_EDIT,
        two_way=False,
        expect=Expect(Kind.FORGET, reason="copy is kept"),
    ),
    Row(
        "pipeliner deleted while LEAVING, outlook unchanged",
        PL,
        source=None,
        dest=BASE,
        state=LEAVING,
        expect=Expect(Kind.DELETE, reason="deleted in pipeliner"),
    ),
    # -- deleted in Outlook -------------------------------------------------------------------
    Row(
        "outlook deleted, pipeliner unchanged, with rights",
        OL,
        source=None,
        dest=BASE,
        expect=Expect(Kind.DELETE, reason="deleted in outlook"),
    ),
    Row(
        "outlook deleted, pipeliner unchanged, without rights",
        OL,
        source=None,
        dest=BASE,
        can_delete=False,
        expect=Expect(Kind.REJECT, agreed=BASE, link_state=RESTORE_BOOK, reason="may not delete"),
    ),
    Row(
        "outlook deleted, pipeliner edited",
        OL,
        source=None,
        dest=SRC_EDIT,
        expect=Expect(
            Kind.KEEP,
            agreed=SRC_EDIT,
            link_state=RESTORE_BOOK,
            reason="edited in Pipeliner (city, job_title)",
        ),
    ),
    Row(
        "outlook deleted, pipeliner edited, without rights",
        OL,
        source=None,
        dest=SRC_EDIT,
        can_delete=False,
        expect=Expect(Kind.KEEP, agreed=SRC_EDIT, link_state=RESTORE_BOOK, reason="edit wins"),
    ),
    # -- scope exit -----------------------------------------------------------------------------
    Row(
        "scope exit, outlook unchanged",
        PL,
        source=None,
        dest=BASE,
        deleted=OUT_OF_SCOPE,
        expect=Expect(Kind.DELETE, link_state=LEAVING, reason="scope"),
    ),
    Row(
        "scope exit, outlook edited",
        PL,
        source=None,
        dest=DEST_EDIT,
        deleted=OUT_OF_SCOPE,
        expect=Expect(Kind.DELETE, link_state=LEAVING, reason="scope"),
    ),
    Row(
        "scope exit, one-way",
        PL,
        source=None,
        dest=BASE,
        deleted=OUT_OF_SCOPE,
        two_way=False,
        expect=Expect(Kind.DELETE, link_state=LEAVING, reason="scope"),
    ),
    Row(
        "scope exit, copy already gone",
        PL,
        source=None,
        dest=None,
        deleted=OUT_OF_SCOPE,
        expect=Expect(Kind.FORGET),
    ),
    Row(
        "scope exit while a restore is owed",
        PL,
        source=None,
        dest=None,
        deleted=OUT_OF_SCOPE,
        state=RESTORE_BOOK,
        book_id=None,
        expect=Expect(Kind.FORGET, dest_id=None),
    ),
    Row(
        "pipeliner deleted while a restore is owed",
        PL,
        source=None,
        dest=None,
        state=RESTORE_BOOK,
        book_id=None,
        expect=Expect(Kind.FORGET, dest_id=None),
    ),
    # -- the Outlook tombstone of a LEAVING link never deletes in Pipeliner ----------------------
    Row(
        "outlook tombstone of LEAVING link, with rights",
        OL,
        source=None,
        dest=BASE,
        state=LEAVING,
        expect=Expect(Kind.FORGET, reason="never deleted in Pipeliner"),
    ),
    Row(
        "outlook tombstone of LEAVING link, without rights",
        OL,
        source=None,
        dest=BASE,
        state=LEAVING,
        can_delete=False,
        expect=Expect(Kind.FORGET, reason="never deleted in Pipeliner"),
    ),
    Row(
        "outlook tombstone of LEAVING link, pipeliner edited",
        OL,
        source=None,
        dest=SRC_EDIT,
        state=LEAVING,
        expect=Expect(Kind.FORGET, reason="never deleted in Pipeliner"),
    ),
    Row(
        "outlook delete of a contact that left the scope",
        OL,
        source=None,
        dest=BASE,
        scope_exit="alex can no longer edit this contact",
        expect=Expect(Kind.FORGET, reason="not deleted in pipeliner"),
    ),
    Row(
        "outlook tombstone of LEAVING link, pipeliner gone",
        OL,
        source=None,
        dest=None,
        state=LEAVING,
        expect=Expect(Kind.FORGET, reason="never deleted in Pipeliner"),
    ),
]


@pytest.mark.parametrize("row", LIVE_ROWS, ids=lambda r: r.id)
def test_linked_live_record(row: Row) -> None:
    check_row(run_row(row), row)


@pytest.mark.parametrize("row", TOMBSTONE_ROWS, ids=lambda r: r.id)
def test_linked_tombstone(row: Row) -> None:
    check_row(run_row(row), row)


def test_row_ids_are_unique() -> None:
    ids = [r.id for r in LIVE_ROWS + TOMBSTONE_ROWS]
    assert len(ids) == len(set(ids))


def test_a_restore_carries_every_table_key() -> None:
    row = Row("x", PL, source=SRC_EDIT, dest=None, expect=Expect(Kind.RESTORE))
    assert set(run_row(row).fields) == set(KEYS)


def test_outlook_record_of_a_leaving_link_never_brings_it_back_in_scope() -> None:
    # PL->OL planned DELETE (LEAVING) of the copy, but that write failed; the user then edits the
    # stale Outlook copy, and later deletes it. Only Pipeliner can say the contact is back in scope.
    ctx = LegContext(OL, PW, two_way=True)
    link = Link(P_ID, O_ID, BASE, state=LEAVING)
    edited = SourceRecord(O_ID, DEST_EDIT)
    first = plan_linked(edited, link, DestRecord(P_ID, BASE), ctx)
    assert first.link_state is not ACTIVE
    after = link.with_changes(
        state=first.link_state or link.state, agreed=first.agreed or link.agreed
    )
    second = plan_linked(SourceRecord.tombstone(O_ID), after, DestRecord(P_ID, DEST_EDIT), ctx)
    assert second.kind is not Kind.DELETE


def test_scope_exit_never_deletes_in_pipeliner() -> None:
    ctx = LegContext(OL, PW, two_way=True)
    action = plan_linked(
        SourceRecord.tombstone(O_ID, OUT_OF_SCOPE),
        Link(P_ID, O_ID, BASE),
        DestRecord(P_ID, BASE, can_delete=False),
        ctx,
    )
    assert action.kind is not Kind.DELETE


# --- initial matching: plan_batch with unlinked records -----------------------------------------


@dataclass(frozen=True)
class Exp:
    """One expected Action of a batch (reason as a substring)."""

    kind: Kind
    source_id: str
    dest_id: str | None = None
    fields: Mapping[str, str | None] = field(default_factory=dict)
    agreed: Mapping[str, str | None] | None = None
    conflicts: tuple[Conflict, ...] = ()
    link_state: LinkState | None = None
    reason: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatchCase:
    name: str
    side: Side
    records: tuple[SourceRecord, ...]
    candidates: tuple[DestRecord, ...]
    expected: tuple[Exp, ...]
    policy: ConflictPolicy = PW
    two_way: bool = True
    links: tuple[Link, ...] = ()
    dests: tuple[DestRecord, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.name}[{tag(self.side)}]"


def summary(action: Action) -> tuple[object, ...]:
    return (
        action.kind,
        action.source_id,
        action.dest_id,
        dict(action.fields),
        None if action.agreed is None else dict(action.agreed),
        action.conflicts,
        action.link_state,
    )


def exp_summary(exp: Exp) -> tuple[object, ...]:
    return (
        exp.kind,
        exp.source_id,
        exp.dest_id,
        dict(exp.fields),
        None if exp.agreed is None else dict(exp.agreed),
        exp.conflicts,
        exp.link_state,
    )


# An existing Outlook contact for Ada: company and phone empty, a different job title, the
# e-mail in other letter case, a mobile number Pipeliner lacks.
OUT_ADA = vals(
    first_name="Ada",
    last_name="Lovelace",
    job_title="Countess",
    mobile_phone="+44 7700 900000",
    email1="ADA@Example.COM",
    city="London",
)
ADA_CONFLICTS_P_SOURCE = (
    ("job_title", "Mathematician", "Countess"),
    ("email1", "ada@example.com", "ADA@Example.COM"),
)
GRACE = vals(first_name="Grace", last_name="Hopper", company="US Navy", job_title="Rear Admiral")
OUT_GRACE = vals(
    first_name="Grace", last_name="Hopper", company="US Navy", home_phone="+1 555 0199"
)
OUT_GRACE_CASED = vals(first_name="grace", last_name="HOPPER", company="us navy")
OUT_GRACE_OTHER_CO = vals(first_name="Grace", last_name="Hopper", company="Harvard")
ALAN = vals(first_name="Alan", last_name="Turing", email1="alan@example.org")
ALAN_2 = vals(first_name="Alan", last_name="Turing", email2="ALAN@example.org")
LINUS = vals(first_name="Linus", email1="linus@example.net")
STAMPED_OLD = vals(first_name="Ada", last_name="King", email1="countess@example.com")


def conflicts(rows: tuple[tuple[str, str, str], ...], winner: Side, *, flip: bool = False):
    return tuple(Conflict(key, b if flip else a, a if flip else b, winner) for key, a, b in rows)


def match_cases() -> list[MatchCase]:
    cases = [
        # -- by e-mail (case-insensitive) --------------------------------------------------------
        MatchCase(
            "email, pipeliner_wins",
            PL,
            (SourceRecord(P_ID, BASE),),
            (DestRecord("o-7", OUT_ADA),),
            (
                Exp(
                    Kind.LINK,
                    P_ID,
                    "o-7",
                    {
                        "company": "Analytical Engines",
                        "job_title": "Mathematician",
                        "business_phone": "+44 20 7946 0000",
                        "email1": "ada@example.com",
                        "notes": "Met at the\nRoyal Society",
                    },
                    BASE,
                    conflicts(ADA_CONFLICTS_P_SOURCE, PL),
                    reason=("email",),
                ),
            ),
        ),
        MatchCase(
            "email, outlook_wins",
            PL,
            (SourceRecord(P_ID, BASE),),
            (DestRecord("o-7", OUT_ADA),),
            (
                Exp(
                    Kind.LINK,
                    P_ID,
                    "o-7",
                    {
                        "company": "Analytical Engines",
                        "business_phone": "+44 20 7946 0000",
                        "notes": "Met at the\nRoyal Society",
                    },
                    BASE,
                    conflicts(ADA_CONFLICTS_P_SOURCE, OL),
                    reason=("email",),
                ),
            ),
            policy=OW,
        ),
        MatchCase(
            "email, newest_wins, outlook newer",
            PL,
            (SourceRecord(P_ID, BASE, modified=EARLIER),),
            (DestRecord("o-7", OUT_ADA, modified=LATER),),
            (
                Exp(
                    Kind.LINK,
                    P_ID,
                    "o-7",
                    {
                        "company": "Analytical Engines",
                        "business_phone": "+44 20 7946 0000",
                        "notes": "Met at the\nRoyal Society",
                    },
                    BASE,
                    conflicts(ADA_CONFLICTS_P_SOURCE, OL),
                ),
            ),
            policy=NW,
        ),
        MatchCase(
            "email, pipeliner_wins",
            OL,
            (SourceRecord(O_ID, OUT_ADA),),
            (DestRecord("p-7", BASE),),
            (
                Exp(
                    Kind.LINK,
                    O_ID,
                    "p-7",
                    {"mobile_phone": "+44 7700 900000"},
                    OUT_ADA,
                    conflicts(ADA_CONFLICTS_P_SOURCE, PL, flip=True),
                    reason=("email",),
                ),
            ),
        ),
        MatchCase(
            "email, outlook_wins",
            OL,
            (SourceRecord(O_ID, OUT_ADA),),
            (DestRecord("p-7", BASE),),
            (
                Exp(
                    Kind.LINK,
                    O_ID,
                    "p-7",
                    {
                        "job_title": "Countess",
                        "mobile_phone": "+44 7700 900000",
                        "email1": "ADA@Example.COM",
                    },
                    OUT_ADA,
                    conflicts(ADA_CONFLICTS_P_SOURCE, OL, flip=True),
                ),
            ),
            policy=OW,
        ),
        MatchCase(
            "email in another slot",
            PL,
            (SourceRecord("p-2", ALAN),),
            (DestRecord("o-2", ALAN_2),),
            (
                Exp(
                    Kind.LINK, "p-2", "o-2", {"email1": "alan@example.org"}, ALAN, reason=("email",)
                ),
            ),
        ),
        MatchCase(
            "identical contact links without writing",
            OL,
            (SourceRecord(O_ID, BASE),),
            (DestRecord("p-7", BASE),),
            (Exp(Kind.LINK, O_ID, "p-7", {}, BASE),),
        ),
        MatchCase(
            "email beats name",
            PL,
            (SourceRecord(P_ID, BASE),),
            (
                DestRecord(
                    "o-name",
                    vals(first_name="Ada", last_name="Lovelace", company="Analytical Engines"),
                ),
                DestRecord("o-mail", vals(email1="ada@example.com")),
            ),
            (
                Exp(
                    Kind.LINK,
                    P_ID,
                    "o-mail",
                    {k: v for k, v in BASE.items() if v and k != "email1"},
                    BASE,
                    reason=("email",),
                ),
            ),
        ),
        # -- by first + last name + company ------------------------------------------------------
        MatchCase(
            "name and company",
            PL,
            (SourceRecord("p-3", GRACE),),
            (DestRecord("o-3", OUT_GRACE),),
            (Exp(Kind.LINK, "p-3", "o-3", {"job_title": "Rear Admiral"}, GRACE, reason=("name",)),),
        ),
        MatchCase(
            "name and company",
            OL,
            (SourceRecord("o-3", OUT_GRACE),),
            (DestRecord("p-3", GRACE),),
            (
                Exp(
                    Kind.LINK,
                    "o-3",
                    "p-3",
                    {"home_phone": "+1 555 0199"},
                    OUT_GRACE,
                    reason=("name",),
                ),
            ),
        ),
        MatchCase(
            "name and company ignore letter case",
            PL,
            (SourceRecord("p-3", GRACE),),
            (DestRecord("o-3", OUT_GRACE_CASED),),
            (
                Exp(
                    Kind.LINK,
                    "p-3",
                    "o-3",
                    {
                        "first_name": "Grace",
                        "last_name": "Hopper",
                        "company": "US Navy",
                        "job_title": "Rear Admiral",
                    },
                    GRACE,
                    (
                        Conflict("first_name", "Grace", "grace", PL),
                        Conflict("last_name", "Hopper", "HOPPER", PL),
                        Conflict("company", "US Navy", "us navy", PL),
                    ),
                    reason=("name",),
                ),
            ),
        ),
        MatchCase(
            "same name, other company: no match",
            PL,
            (SourceRecord("p-3", GRACE),),
            (DestRecord("o-3", OUT_GRACE_OTHER_CO),),
            (Exp(Kind.CREATE, "p-3", None, GRACE, GRACE),),
        ),
        # -- by stamp (the Pipeliner id on the Outlook contact) --------------------------------
        MatchCase(
            "stamp beats an e-mail match to another contact",
            PL,
            (SourceRecord(P_ID, BASE),),
            (
                DestRecord("o-mail", vals(email1="ada@example.com")),
                DestRecord("o-stamp", STAMPED_OLD, stamp=P_ID),
            ),
            (
                Exp(
                    Kind.LINK,
                    P_ID,
                    "o-stamp",
                    {k: v for k, v in BASE.items() if v and k != "first_name"},
                    BASE,
                    (
                        Conflict("last_name", "Lovelace", "King", PL),
                        Conflict("email1", "ada@example.com", "countess@example.com", PL),
                    ),
                    reason=("stamp",),
                ),
            ),
        ),
        MatchCase(
            "stamp beats an e-mail match to another contact",
            OL,
            (SourceRecord(O_ID, STAMPED_OLD, stamp="p-9"),),
            (DestRecord("p-8", vals(email1="countess@example.com")), DestRecord("p-9", BASE)),
            (
                Exp(
                    Kind.LINK,
                    O_ID,
                    "p-9",
                    {},
                    STAMPED_OLD,
                    (
                        Conflict("last_name", "King", "Lovelace", PL),
                        Conflict("email1", "countess@example.com", "ada@example.com", PL),
                    ),
                    reason=("stamp",),
                ),
            ),
        ),
        MatchCase(
            "stamp of a Pipeliner contact that is no candidate: e-mail decides",
            OL,
            (SourceRecord(O_ID, STAMPED_OLD, stamp="p-gone"),),
            (DestRecord("p-8", vals(email1="countess@example.com")),),
            (
                Exp(
                    Kind.LINK,
                    O_ID,
                    "p-8",
                    {"first_name": "Ada", "last_name": "King"},
                    STAMPED_OLD,
                    reason=("email",),
                ),
            ),
        ),
        MatchCase(
            "a stamped copy is claimed before e-mail matching",
            PL,
            (SourceRecord("p-1", BASE), SourceRecord("p-2", STAMPED_OLD)),
            (DestRecord("o-2", edit(STAMPED_OLD, email2="ada@example.com"), stamp="p-2"),),
            (
                Exp(Kind.CREATE, "p-1", None, BASE, BASE),
                Exp(Kind.LINK, "p-2", "o-2", {}, STAMPED_OLD, reason=("stamp",)),
            ),
        ),
        # -- ambiguity ---------------------------------------------------------------------------
        MatchCase(
            "two candidates share the e-mail",
            PL,
            (SourceRecord(P_ID, BASE),),
            (
                DestRecord("o-a", vals(email1="ada@example.com")),
                DestRecord("o-b", vals(email2="Ada@Example.com")),
            ),
            (Exp(Kind.REJECT, P_ID, None, reason=("ambiguous", "o-a", "o-b")),),
        ),
        MatchCase(
            "two candidates share the e-mail",
            OL,
            (SourceRecord(O_ID, OUT_ADA),),
            (
                DestRecord("p-a", vals(email1="ada@example.com")),
                DestRecord("p-b", vals(email3="ada@EXAMPLE.com")),
            ),
            (Exp(Kind.REJECT, O_ID, None, reason=("ambiguous", "p-a", "p-b")),),
        ),
        MatchCase(
            "two candidates share name and company",
            PL,
            (SourceRecord("p-3", GRACE),),
            (DestRecord("o-a", OUT_GRACE), DestRecord("o-b", OUT_GRACE_CASED)),
            (Exp(Kind.REJECT, "p-3", None, reason=("ambiguous", "o-a", "o-b")),),
        ),
        MatchCase(
            "two e-mails match two candidates",
            PL,
            (SourceRecord("p-4", edit(ALAN, email2="ada@example.com")),),
            (DestRecord("o-a", ALAN), DestRecord("o-b", vals(email1="ada@example.com"))),
            (Exp(Kind.REJECT, "p-4", None, reason=("ambiguous",)),),
        ),
        MatchCase(
            "two records match the same candidate",
            PL,
            (SourceRecord("p-1", BASE), SourceRecord("p-2", vals(email2="ADA@example.com"))),
            (DestRecord("o-1", OUT_ADA),),
            (
                Exp(Kind.REJECT, "p-1", "o-1", reason=("ambiguous", "2 records")),
                Exp(Kind.REJECT, "p-2", "o-1", reason=("ambiguous", "2 records")),
            ),
        ),
        MatchCase(
            "two records match the same candidate",
            OL,
            (SourceRecord("o-1", GRACE), SourceRecord("o-2", OUT_GRACE_CASED)),
            (DestRecord("p-3", GRACE),),
            (
                Exp(Kind.REJECT, "o-1", "p-3", reason=("2 records",)),
                Exp(Kind.REJECT, "o-2", "p-3", reason=("2 records",)),
            ),
        ),
        # -- nothing to match --------------------------------------------------------------------
        *[
            MatchCase(
                "no candidate: create",
                side,
                (SourceRecord(sid, BASE),),
                (DestRecord("x-9", LINUS),),
                (Exp(Kind.CREATE, sid, None, BASE, BASE),),
            )
            for side, sid in ((PL, P_ID), (OL, O_ID))
        ],
        *[
            MatchCase(
                "unlinked tombstone",
                side,
                (SourceRecord.tombstone(sid),),
                (DestRecord("x-9", BASE),),
                (Exp(Kind.SKIP, sid, reason=("never synced",)),),
            )
            for side, sid in ((PL, P_ID), (OL, O_ID))
        ],
        MatchCase(
            "unlinked scope-exit tombstone",
            PL,
            (SourceRecord.tombstone(P_ID, OUT_OF_SCOPE),),
            (),
            (Exp(Kind.SKIP, P_ID, reason=("never synced",)),),
        ),
        # -- a mixed batch keeps the order of its records ----------------------------------------
        MatchCase(
            "mixed batch keeps record order",
            PL,
            (
                SourceRecord("p-new", LINUS),
                SourceRecord("p-gone", None, deleted=DELETED),
                SourceRecord("p-linked", SRC_EDIT),
                SourceRecord("p-ada", BASE),
                SourceRecord("p-copy-deleted", SRC_EDIT),
                SourceRecord("p-dead", None, deleted=DELETED),
            ),
            (DestRecord("o-ada", BASE),),
            (
                Exp(Kind.CREATE, "p-new", None, LINUS, LINUS),
                Exp(Kind.SKIP, "p-gone", reason=("never synced",)),
                Exp(
                    Kind.UPDATE,
                    "p-linked",
                    "o-linked",
                    {"job_title": "CTO", "city": "Paris"},
                    SRC_EDIT,
                ),
                Exp(Kind.LINK, "p-ada", "o-ada", {}, BASE),
                Exp(Kind.RESTORE, "p-copy-deleted", "o-copy-deleted", SRC_EDIT, SRC_EDIT),
                Exp(Kind.DELETE, "p-dead", "o-dead"),
            ),
            links=(
                Link("p-linked", "o-linked", BASE),
                Link("p-copy-deleted", "o-copy-deleted", BASE),
                Link("p-dead", "o-dead", BASE),
            ),
            dests=(DestRecord("o-linked", BASE), DestRecord("o-dead", BASE)),
        ),
        MatchCase(
            "linked records never take a candidate",
            OL,
            (SourceRecord("o-linked", BASE), SourceRecord("o-new", BASE)),
            (DestRecord("p-cand", BASE),),
            (Exp(Kind.SKIP, "o-linked", "p-linked"), Exp(Kind.LINK, "o-new", "p-cand", {}, BASE)),
            links=(Link("p-linked", "o-linked", BASE),),
            dests=(DestRecord("p-linked", BASE),),
        ),
    ]
    return cases


MATCH_CASES = match_cases()


@pytest.mark.parametrize("case", MATCH_CASES, ids=lambda c: c.id)
def test_plan_batch(case: MatchCase) -> None:
    ctx = LegContext(case.side, case.policy, case.two_way)
    links = {link.id_on(case.side): link for link in case.links}
    dests = {d.id: d for d in case.dests}
    actions = plan_batch(list(case.records), links, dests, list(case.candidates), ctx)
    assert [summary(a) for a in actions] == [exp_summary(e) for e in case.expected]
    for action, exp in zip(actions, case.expected, strict=True):
        for part in exp.reason:
            assert part.casefold() in action.reason.casefold(), action.reason


def test_match_case_ids_are_unique() -> None:
    ids = [c.id for c in MATCH_CASES]
    assert len(ids) == len(set(ids))


def test_plan_batch_accepts_a_one_shot_candidate_iterable() -> None:
    ctx = LegContext(PL)
    actions = plan_batch([SourceRecord(P_ID, BASE)], {}, {}, iter([DestRecord("o-7", BASE)]), ctx)
    assert [(a.kind, a.dest_id) for a in actions] == [(Kind.LINK, "o-7")]


# --- work owed to Outlook from earlier runs ------------------------------------------------

OWED_LINKS = (
    Link("p-active", "o-active", BASE),
    Link("p-owed-1", None, BASE, state=RESTORE_BOOK),
    Link("p-leaving", "o-leaving", BASE, state=LEAVING),
    Link("p-handled", None, BASE, state=RESTORE_BOOK),
    Link("p-owed-2", None, SRC_EDIT, state=RESTORE_BOOK),
    Link("p-refused", "o-refused", BASE, state=RESTORE_BOOK),
    Link("p-left-gone", "o-left-gone", BASE, state=LEAVING),
)
#: The Outlook copies still there: the refused edit's copy holds the Outlook edit.
OWED_COPIES = {
    "o-leaving": DestRecord("o-leaving", BASE),
    "o-refused": DestRecord("o-refused", DEST_EDIT),
}


@pytest.mark.parametrize(
    ("handled", "expected"),
    [
        pytest.param(
            (),
            [
                (Kind.RESTORE, "p-owed-1", None, dict(BASE), ACTIVE),
                (Kind.DELETE, "p-leaving", "o-leaving", {}, LEAVING),
                (Kind.RESTORE, "p-handled", None, dict(BASE), ACTIVE),
                (Kind.RESTORE, "p-owed-2", None, dict(SRC_EDIT), ACTIVE),
                (
                    Kind.UPDATE,
                    "p-refused",
                    "o-refused",
                    {k: v for k, v in BASE.items() if DEST_EDIT.get(k) != v},
                    ACTIVE,
                ),
                (Kind.FORGET, "p-left-gone", None, {}, None),
            ],
            id="every owed action, in link order",
        ),
        pytest.param(
            ("p-handled", "p-active", "p-leaving", "p-refused", "p-left-gone"),
            [
                (Kind.RESTORE, "p-owed-1", None, dict(BASE), ACTIVE),
                (Kind.RESTORE, "p-owed-2", None, dict(SRC_EDIT), ACTIVE),
            ],
            id="ids planned from a fresh record are skipped",
        ),
    ],
)
def test_plan_owed_to_book(handled, expected) -> None:
    actions = plan_owed_to_book(iter(OWED_LINKS), OWED_COPIES, handled=iter(handled))
    assert [(a.kind, a.source_id, a.dest_id, dict(a.fields), a.link_state) for a in actions] == (
        expected
    )
    for action in actions:
        if action.kind in (Kind.RESTORE, Kind.UPDATE):
            assert action.agreed == dict(OWED_LINKS_BY_ID[action.source_id].agreed)


OWED_LINKS_BY_ID = {link.crm_id: link for link in OWED_LINKS}


def test_plan_owed_to_book_skips_a_copy_already_equal() -> None:
    link = Link("p-1", "o-1", BASE, state=RESTORE_BOOK)
    (action,) = plan_owed_to_book([link], {"o-1": DestRecord("o-1", BASE)})
    assert (action.kind, action.fields, action.link_state) == (Kind.SKIP, {}, ACTIVE)


def test_plan_owed_to_book_without_links() -> None:
    assert plan_owed_to_book([], {}) == []


# --- the mass-delete guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deletes", "linked", "ratio", "allow", "refused"),
    [
        pytest.param(0, 0, 0.0, False, False, id="nothing to delete"),
        pytest.param(
            MASS_DELETE_FLOOR - 1,
            MASS_DELETE_FLOOR - 1,
            0.0,
            False,
            False,
            id="below the floor, everything, ratio 0",
        ),
        pytest.param(
            MASS_DELETE_FLOOR, MASS_DELETE_FLOOR, 0.5, False, True, id="at the floor, whole folder"
        ),
        pytest.param(3, 100, 0.0, False, True, id="ratio 0 refuses any delete above the floor"),
        pytest.param(5, 10, 0.5, False, False, id="exactly at the ratio"),
        pytest.param(6, 10, 0.5, False, True, id="one over the ratio"),
        pytest.param(6, 10, 0.5, True, False, id="forced with allow"),
        pytest.param(1000, 1000, 1.0, False, False, id="ratio 1 allows everything"),
        pytest.param(3, 0, 0.5, False, True, id="no links at start"),
        pytest.param(3, 30, 0.1, False, False, id="exactly at ratio 0.1"),
        pytest.param(7, 10, 0.7, False, False, id="exactly at ratio 0.7"),
        pytest.param(
            29,
            100,
            0.29,
            False,
            False,
            id="exactly at ratio 0.29",
        ),
        pytest.param(
            57,
            100,
            0.57,
            False,
            False,
            id="exactly at ratio 0.57",
        ),
    ],
)
def test_check_mass_delete(deletes, linked, ratio, allow, refused) -> None:
    if refused:
        with pytest.raises(MassDeleteRefused):
            check_mass_delete(deletes, linked, ratio, allow=allow)
    else:
        assert check_mass_delete(deletes, linked, ratio, allow=allow) is None


def test_mass_delete_message_names_counts_and_the_way_out() -> None:
    with pytest.raises(MassDeleteRefused) as info:
        check_mass_delete(6, 10, 0.5, dest=OL)
    message = str(info.value)
    for part in (
        "6 of 10",
        "in outlook",
        "allow_mass_delete",
        "max_delete_ratio",
        "Nothing was deleted",
    ):
        assert part in message


@pytest.mark.parametrize("ratio", [-0.01, 1.01, 2, math.nan, math.inf], ids=lambda r: f"ratio={r}")
@pytest.mark.parametrize("allow", [False, True], ids=["strict", "allow"])
def test_invalid_max_delete_ratio(ratio, allow) -> None:
    with pytest.raises(ValueError, match="max_delete_ratio"):
        check_mass_delete(1, 10, ratio, allow=allow)


# --- small API facts -----------------------------------------------------------------------------


def test_writing_kinds() -> None:
    assert {Kind.CREATE, Kind.UPDATE, Kind.RESTORE, Kind.DELETE, Kind.LINK} == WRITING_KINDS
    for kind in Kind:
        assert Action(kind, "x").writes is (kind in WRITING_KINDS)


def test_tombstone_constructor() -> None:
    assert SourceRecord.tombstone("p-1") == SourceRecord("p-1", None, deleted=DELETED)
    assert SourceRecord.tombstone("p-1", OUT_OF_SCOPE).deleted is OUT_OF_SCOPE


def test_leg_context_dest_side() -> None:
    assert LegContext(PL).dest_side is OL
    assert LegContext(OL).dest_side is PL
    assert LegContext(PL).policy is PW and LegContext(PL).two_way is False


# --- properties --------------------------------------------------------------------------------

_VALUE = st.sampled_from([None, "a", "b", "c"])
_TABLE = st.fixed_dictionaries({k: _VALUE for k in KEYS})
_TIME = st.sampled_from([None, EARLIER, T0, LATER])
_POLICY = st.sampled_from(list(ConflictPolicy))
_SIDE = st.sampled_from([PL, OL])
_STATE = st.sampled_from([ACTIVE, LEAVING])


@settings(max_examples=150, deadline=None)
@given(
    agreed=_TABLE,
    source=_TABLE,
    dest=_TABLE,
    policy=_POLICY,
    side=_SIDE,
    state=_STATE,
    two_way=st.booleans(),
    s_time=_TIME,
    d_time=_TIME,
)
def test_merge_never_overwrites_a_destination_only_edit(
    agreed, source, dest, policy, side, state, two_way, s_time, d_time
) -> None:
    src_id, dest_id = src_dest_ids(side)
    action = plan_linked(
        SourceRecord(src_id, source, modified=s_time),
        Link(P_ID, O_ID, agreed, state=state),
        DestRecord(dest_id, dest, modified=d_time),
        LegContext(side, policy, two_way),
    )
    assert action.kind in {Kind.UPDATE, Kind.CONFLICT_RESOLVED, Kind.SKIP}
    assert action.dest_id == dest_id
    for key, value in action.fields.items():
        assert source[key] != agreed[key], f"{key}: a destination-only edit was overwritten"
        assert value == source[key]
        assert dest[key] != source[key]
    assert (action.kind is Kind.UPDATE) == bool(action.fields)
    assert action.agreed is None or dict(action.agreed) == source
    if action.agreed is None and not (state is LEAVING and side is OL):
        # (An Outlook record of a LEAVING link is skipped outright: its copy is being removed.)
        assert source == agreed


def _leg(side: Side, values: dict, agreed: dict, policy: ConflictPolicy, times: dict) -> Action:
    src_id, dest_id = src_dest_ids(side)
    return plan_linked(
        SourceRecord(src_id, values[side], modified=times[side]),
        Link(P_ID, O_ID, agreed),
        DestRecord(dest_id, values[side.other], modified=times[side.other]),
        LegContext(side, policy, two_way=True),
    )


@settings(max_examples=150, deadline=None)
@given(
    agreed=_TABLE,
    p_values=_TABLE,
    o_values=_TABLE,
    policy=_POLICY,
    first=_SIDE,
    p_time=_TIME,
    o_time=_TIME,
)
def test_one_two_way_round_converges_and_the_next_writes_nothing(
    agreed, p_values, o_values, policy, first, p_time, o_time
) -> None:
    """DESIGN §4 convergence, with each leg applying its Action the way the engine does."""
    values = {PL: dict(p_values), OL: dict(o_values)}
    times = {PL: p_time, OL: o_time}
    for side in (first, first.other):
        action = _leg(side, values, agreed, policy, times)
        values[side.other].update(action.fields)
        if action.agreed is not None:
            agreed = dict(action.agreed)
    assert values[PL] == values[OL]
    for side in (first, first.other):
        action = _leg(side, values, agreed, policy, times)
        assert not action.writes and not action.fields and not action.conflicts
        if action.agreed is not None:
            agreed = dict(action.agreed)


# --- matching a contact the user may not edit (issue #12, no duplicate CRM contact) -------------


@pytest.mark.parametrize(
    ("dest", "expected", "words"),
    [
        pytest.param(
            DestRecord(P_ID, BASE, scope_exit="owned by nestor@contoso.example"),
            Kind.REJECT,
            "outside the sync scope: owned by nestor",
            id="visible, not in scope: reported, not copied",
        ),
        pytest.param(
            DestRecord(P_ID, SRC_TITLE_CLEARED, edit_refusal="read-only access"),
            Kind.REJECT,
            "read-only access: not linked",
            id="in scope, not editable, changes to write",
        ),
        pytest.param(
            DestRecord(P_ID, SRC_EDIT, edit_refusal="read-only access"),
            Kind.LINK,
            "matched",
            id="in scope, not editable, nothing to write",
        ),
    ],
)
def test_an_outlook_contact_matching_a_contact_the_user_may_not_change(
    dest: DestRecord, expected: Kind, words: str
) -> None:
    record = SourceRecord(O_ID, SRC_EDIT)
    [action] = plan_batch([record], {}, {}, [dest], LegContext(OL, two_way=True))
    assert action.kind is expected
    assert words in action.reason
    assert action.kind is not Kind.CREATE  # never a second CRM contact


# --- absent is not empty: a record that does not carry a key (issue #12) -------------------------


@pytest.mark.parametrize("side", [PL, OL], ids=tag)
def test_a_record_without_a_key_leaves_that_field_and_its_agreement_alone(side: Side) -> None:
    src_id, dest_id = src_dest_ids(side)
    agreed = edit(BASE, notes="agreed notes")
    link = Link(P_ID, O_ID, agreed)
    partial = {k: v for k, v in edit(agreed, city="Paris").items() if k != "notes"}
    dest = DestRecord(dest_id, edit(agreed, notes="edited on the other side"))
    [action] = plan_batch(
        [SourceRecord(src_id, partial)], {src_id: link}, {dest_id: dest}, [], LegContext(side)
    )
    assert (action.kind, dict(action.fields)) == (Kind.UPDATE, {"city": "Paris"})
    assert action.agreed is not None and action.agreed["notes"] == "agreed notes"


def test_a_new_contact_is_created_with_the_keys_it_carries_only() -> None:
    partial = {"first_name": "Ada", "email1": "ada@example.com"}
    [action] = plan_batch([SourceRecord(O_ID, partial)], {}, {}, [], LegContext(OL))
    assert action.kind is Kind.CREATE
    assert dict(action.fields) == partial == dict(action.agreed or {})
