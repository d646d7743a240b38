"""Plan decisions for a contact moved to another Outlook folder (issue #12 item 5) and the
mass-delete guard's message when the folder changed (issue #12 item 6)."""

from __future__ import annotations

import pytest

from contactsync.sync.fields import normalize_values
from contactsync.sync.link import Link, LinkState, Side
from contactsync.sync.plan import (
    Action,
    DeleteReason,
    DestRecord,
    Kind,
    LegContext,
    MassDeleteRefused,
    SourceRecord,
    check_mass_delete,
    plan_batch,
    plan_owed_to_book,
)

PL, OL = Side.CRM, Side.BOOK
BASE = normalize_values({"first_name": "Ada", "last_name": "Lovelace", "job_title": "Countess"})
TWO_WAY_P2O = LegContext(PL, two_way=True)
TWO_WAY_O2P = LegContext(OL, two_way=True)


def _plan(record: SourceRecord, link: Link, dest: DestRecord | None, ctx: LegContext) -> Action:
    dests = {dest.id: dest} if dest is not None else {}
    (action,) = plan_batch([record], {record.id: link}, dests, [], ctx)
    return action


def test_an_outlook_move_is_not_a_delete() -> None:
    link = Link("p-1", "o-1", BASE)
    moved = SourceRecord("o-1", None, DeleteReason.MOVED, moved_to="Family")
    pipeliner = DestRecord("p-1", BASE)
    action = _plan(moved, link, pipeliner, TWO_WAY_O2P)
    assert action.kind is Kind.MOVED_OUT and not action.writes
    assert action.link_state is LinkState.MOVED
    assert "moved out of the folder" in action.reason and "Family" in action.reason


def test_a_moved_copy_is_neither_copied_again_nor_written() -> None:
    edited = normalize_values({**BASE, "job_title": "Analyst"})
    # Pipeliner edits the contact while its Outlook copy is in another folder.
    for link in (Link("p-1", "o-1", BASE), Link("p-1", "o-1", BASE, state=LinkState.MOVED)):
        copy = DestRecord("o-1", BASE, moved_to="Family")
        action = _plan(SourceRecord("p-1", edited), link, copy, TWO_WAY_P2O)
        assert action.kind is Kind.MOVED_OUT and not action.writes
    # Moved, then gone from that folder too: still no second copy in the synced folder.
    gone = Link("p-1", "o-1", BASE, state=LinkState.MOVED)
    assert _plan(SourceRecord("p-1", edited), gone, None, TWO_WAY_P2O).kind is Kind.MOVED_OUT
    # One-way too: a copy the user filed elsewhere is not restored beside it.
    one_way = LegContext(PL, two_way=False)
    copy = DestRecord("o-1", BASE, moved_to="Family")
    assert _plan(SourceRecord("p-1", edited), Link("p-1", "o-1", BASE), copy, one_way).kind is (
        Kind.MOVED_OUT
    )


def test_a_pipeliner_delete_leaves_a_moved_contact_alone() -> None:
    copy = DestRecord("o-1", BASE, moved_to="Family")
    action = _plan(SourceRecord.tombstone("p-1"), Link("p-1", "o-1", BASE), copy, TWO_WAY_P2O)
    assert action.kind is Kind.FORGET and not action.writes
    assert "left alone" in action.reason


def test_a_listing_without_a_moved_copy_deletes_nothing() -> None:
    link = Link("p-1", "o-1", BASE, state=LinkState.MOVED)
    action = _plan(SourceRecord.tombstone("o-1"), link, DestRecord("p-1", BASE), TWO_WAY_O2P)
    assert action.kind is Kind.MOVED_OUT and not action.writes


def test_moving_it_back_resumes() -> None:
    link = Link("p-1", "o-1", BASE, state=LinkState.MOVED)
    # Edited in the other folder, then moved back: the edit goes to Pipeliner.
    edited = normalize_values({**BASE, "job_title": "Analyst"})
    action = _plan(SourceRecord("o-1", edited), link, DestRecord("p-1", BASE), TWO_WAY_O2P)
    assert action.kind is Kind.UPDATE and action.fields == {"job_title": "Analyst"}
    assert action.link_state is LinkState.ACTIVE
    # Edited in Pipeliner while away: the Outlook copy owes it, put back by the other leg.
    crm = normalize_values({**BASE, "last_name": "King"})
    action = _plan(SourceRecord("o-1", BASE), link, DestRecord("p-1", crm), TWO_WAY_O2P)
    assert action.kind is Kind.SKIP and action.link_state is LinkState.RESTORE_BOOK
    assert action.agreed is not None and action.agreed["last_name"] == "King"
    # The Pipeliner leg sees it back in the folder: synced as usual again.
    copy = DestRecord("o-1", BASE)
    action = _plan(SourceRecord("p-1", crm), link, copy, TWO_WAY_P2O)
    assert action.kind is Kind.UPDATE and action.link_state is LinkState.ACTIVE


def test_owed_work_never_copies_a_moved_contact_again() -> None:
    owed = Link("p-1", "o-1", BASE, state=LinkState.RESTORE_BOOK)
    leaving = Link("p-2", "o-2", BASE, state=LinkState.LEAVING)
    current = {
        "o-1": DestRecord("o-1", BASE, moved_to="Family"),
        "o-2": DestRecord("o-2", BASE, moved_to="Family"),
    }
    actions = plan_owed_to_book([owed, leaving], current)
    assert [a.kind for a in actions] == [Kind.MOVED_OUT, Kind.MOVED_OUT]


def test_the_guard_names_the_causes_and_never_advises_the_override_for_a_changed_folder() -> None:
    with pytest.raises(MassDeleteRefused) as plain:
        check_mass_delete(10, 10, 0.5, dest=PL)
    assert "renamed, deleted or replaced" in str(plain.value)
    with pytest.raises(MassDeleteRefused) as changed:
        check_mass_delete(
            10, 10, 0.5, dest=PL, folder_changed="renamed from 'Pipeliner' to 'Clients'"
        )
    message = str(changed.value)
    assert "allow_mass_delete" not in message and "renamed from 'Pipeliner'" in message
    assert "Do not override" in message
