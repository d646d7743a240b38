"""The engine over in-memory stores and a real SQLite ledger: bookkeeping, not decisions
(those are in test_plan.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import pytest

from contactsync.outlook.projection import from_graph, pipeliner_stamp
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.sync.engine import (
    FolderChanged,
    LegSettings,
    SyncLeg,
    WriteResult,
    record_from_payload,
    record_to_payload,
)
from contactsync.sync.ledger import Ledger, PartitionLedger
from contactsync.sync.link import LinkState, Partition, Side
from contactsync.sync.plan import Action, DeleteReason, MassDeleteRefused, SourceRecord
from tests.support.memory_stores import Clock, Faults, Store

PL, OL = Side.CRM, Side.BOOK


@pytest.fixture
def ledger(tmp_path) -> Iterator[PartitionLedger]:
    with (
        Ledger(str(tmp_path / "ledger.sqlite")) as led,
        led.open_partition(Partition("u1", "space", "mbx", "folder")) as scope,
    ):
        yield scope


@pytest.fixture
def stores() -> tuple[Store, Store]:
    clock = Clock()
    return (
        Store(PL, clock, Faults(random.Random(1))),
        Store(OL, clock, Faults(random.Random(2))),
    )


def person(n: int) -> dict:
    return {"first_name": f"Ann{n}", "last_name": "Lee", "email1": f"ann{n}@corp.example"}


def run_leg(ledger: PartitionLedger, source: Store, dest: Store, cursor: int = 0, **kw) -> SyncLeg:
    leg = SyncLeg(ledger, dest, LegSettings(source.side, two_way=True, **kw))
    leg.retry_failures()
    leg.process(source.changes_since(cursor))
    leg.finish()
    return leg


def seed_linked(ledger: PartitionLedger, p: Store, o: Store, n: int) -> list[str]:
    ids = [p.user_create(person(i)) for i in range(n)]
    run_leg(ledger, p, o)
    return ids


def test_create_records_the_link_versions_and_stamp(ledger, stores) -> None:
    p, o = stores
    pid = p.user_create({**person(1), "phone3": "fax"})
    leg = run_leg(ledger, p, o)
    link = ledger.get(PL, pid)
    assert link is not None and link.book_id in o.live()
    assert link.crm_version == str(p.records[pid].version)
    assert link.book_version == str(o.records[link.book_id].version)
    assert dict(link.agreed) == from_pipeliner(p.records[pid].raw)
    assert pipeliner_stamp(o.records[link.book_id].raw) == pid
    assert leg.report.counts["created"] == 1 and leg.report.counts["read"] == 1


def test_echo_of_our_write_writes_nothing_back(ledger, stores) -> None:
    p, o = stores
    seed_linked(ledger, p, o, 3)
    writes = p.writes
    leg = run_leg(ledger, o, p)
    assert p.writes == writes
    assert leg.report.counts["unchanged"] == 3


def test_failed_write_is_stored_and_replayed_by_the_next_run(ledger, stores) -> None:
    p, o = stores
    pid = p.user_create(person(1))
    o.faults.rate = 1.0
    leg = run_leg(ledger, p, o)
    assert leg.report.counts["failed"] == 1 and leg.report.counts["created"] == 0
    [failure] = ledger.failures(PL)
    assert failure.record_id == pid and "injected failure" in failure.reason
    assert ledger.get(PL, pid) is None
    o.faults.rate = 0.0
    # The tap's cursor moved on: the record comes back only from the ledger.
    leg = run_leg(ledger, p, o, cursor=p.seq)
    assert leg.report.counts["retried"] == 1 and leg.report.counts["created"] == 1
    assert ledger.failures(PL) == []
    assert ledger.get(PL, pid) is not None and len(o.live()) == 1


def test_failure_payload_round_trips() -> None:
    record = SourceRecord("x", {"first_name": "Zoë"}, DeleteReason.DELETED, version="7", stamp="p")
    assert record_from_payload(record_to_payload(record)) == record


def test_mass_delete_guard_refuses_before_any_delete(ledger, stores) -> None:
    p, o = stores
    ids = seed_linked(ledger, p, o, 10)
    cursor = p.seq
    for pid in ids[:8]:
        p.user_delete(pid)
    with pytest.raises(MassDeleteRefused, match="allow_mass_delete"):
        run_leg(ledger, p, o, cursor=cursor)
    assert len(o.live()) == 10 and ledger.count_links() == 10
    run_leg(ledger, p, o, cursor=cursor, allow_mass_delete=True)
    assert len(o.live()) == 2 and ledger.count_links() == 2


def test_dry_run_writes_nothing_and_records_nothing(ledger, stores) -> None:
    p, o = stores
    p.user_create(person(1))
    leg = run_leg(ledger, p, o, dry_run=True)
    assert leg.report.counts["created"] == 1 and leg.report.dry_run
    assert o.records == {} and ledger.count_links() == 0 and ledger.failures() == []


def test_scope_exit_marks_the_link_leaving_before_the_delete(ledger, stores) -> None:
    p, o = stores
    [pid] = seed_linked(ledger, p, o, 1)
    oid = ledger.get(PL, pid).book_id
    cursor = p.seq
    p.user_set(pid, in_scope=False)
    o.faults.rate = 1.0  # the Outlook delete fails: the run dies between intent and deed
    run_leg(ledger, p, o, cursor=cursor)
    assert ledger.get(PL, pid).state is LinkState.LEAVING
    o.faults.rate = 0.0
    # The user deletes the stale copy; its tombstone must never delete in Pipeliner.
    o_cursor = o.seq
    o.user_delete(oid)
    run_leg(ledger, o, p, cursor=o_cursor)
    assert not p.records[pid].deleted
    assert ledger.get(PL, pid) is None


def test_delete_without_rights_restores_the_outlook_copy(ledger, stores) -> None:
    p, o = stores
    [pid] = seed_linked(ledger, p, o, 1)
    oid = ledger.get(PL, pid).book_id
    p.records[pid].can_delete = False
    o_cursor, p_cursor = o.seq, p.seq
    o.user_delete(oid)
    leg = run_leg(ledger, o, p, cursor=o_cursor)
    assert not p.records[pid].deleted
    # Counted as what happens to it (issue #14): its copy is restored, the record is fine.
    assert (leg.report.counts["restored"], leg.report.counts["rejected"]) == (1, 0)
    assert "may not delete" in leg.report.issues[0].reason
    link = ledger.get(PL, pid)
    assert link.state is LinkState.RESTORE_BOOK and link.book_id is None
    assert ledger.failures() == []  # settled by the restore, not retried as a failure
    # The next Pipeliner -> Outlook leg brings the copy back, though Pipeliner did not change.
    leg = run_leg(ledger, p, o, cursor=p_cursor)
    link = ledger.get(PL, pid)
    assert link.state is LinkState.ACTIVE and link.book_id in o.live()
    assert from_graph(o.records[link.book_id].raw) == from_pipeliner(p.records[pid].raw)
    assert leg.report.counts["restored"] == 1


def test_ambiguous_match_is_retried_after_the_user_resolves_it(ledger, stores) -> None:
    p, o = stores
    first = o.user_create({"givenName": "Ann", "emailAddresses": [{"address": "ann@x.example"}]})
    o.user_create({"givenName": "Ann", "emailAddresses": [{"address": "ANN@x.example"}]})
    pid = p.user_create({"first_name": "Ann", "email1": "ann@x.example"})
    leg = run_leg(ledger, p, o)
    assert leg.report.counts["rejected"] == 1 and "ambiguous" in leg.report.issues[0].reason
    assert len(o.live()) == 2 and ledger.get(PL, pid) is None
    o.user_delete(first)
    run_leg(ledger, p, o, cursor=p.seq)
    assert ledger.get(PL, pid) is not None and len(o.live()) == 1 and ledger.failures() == []


class _ShortDestination(Store):
    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        return []


def test_a_destination_losing_results_is_an_error(ledger, stores) -> None:
    p, _ = stores
    p.user_create(person(1))
    short = _ShortDestination(OL, Clock(), Faults(random.Random(0)))
    with pytest.raises(RuntimeError, match="result count"):
        run_leg(ledger, p, short)


def test_a_leg_needs_the_other_side_as_destination(ledger, stores) -> None:
    p, _ = stores
    with pytest.raises(ValueError, match="other side"):
        SyncLeg(ledger, p, LegSettings(PL))


def test_a_delete_held_for_the_guard_survives_a_crash_before_the_end(ledger, stores) -> None:
    p, o = stores
    [pid] = seed_linked(ledger, p, o, 1)
    cursor = p.seq
    p.user_delete(pid)
    leg = SyncLeg(ledger, o, LegSettings(PL, two_way=True))
    leg.process(p.changes_since(cursor))  # the run dies here: finish() never comes
    assert len(o.live()) == 1
    # The tap's state moved on, so only the ledger still knows about the tombstone.
    leg = run_leg(ledger, p, o, cursor=p.seq)
    assert o.live() == {} and ledger.get(PL, pid) is None and ledger.failures() == []
    assert leg.report.counts["deleted"] == 1


def test_a_held_delete_is_kept_as_such_not_as_a_failure(ledger, stores) -> None:
    p, o = stores
    [pid] = seed_linked(ledger, p, o, 1)
    cursor = p.seq
    p.user_delete(pid)
    leg = SyncLeg(ledger, o, LegSettings(PL, two_way=True))
    leg.process(p.changes_since(cursor))
    assert ledger.failures(parked=None) == []
    assert [h.record_id for h in ledger.held_deletes()] == [pid]
    leg.finish()
    assert ledger.held_deletes() == [] and o.live() == {}


def test_a_newer_record_cancels_a_held_delete(ledger, stores) -> None:
    p, o = stores
    [pid] = seed_linked(ledger, p, o, 1)
    cursor = p.seq
    p.user_delete(pid)
    leg = SyncLeg(ledger, o, LegSettings(PL, two_way=True))
    leg.process(p.changes_since(cursor))
    p.records[pid].deleted = False  # restored in Pipeliner before the leg ended
    p.user_patch(pid, {"city": "Oslo"})
    leg.process(p.changes_since(cursor))
    leg.finish()
    link = ledger.get(PL, pid)
    assert link.book_id in o.live() and ledger.failures() == []
    assert from_graph(o.records[link.book_id].raw)["city"] == "Oslo"


class _Killed(BaseException):
    """The process dies (SIGKILL): nothing after this point of the run happens."""


class _DyingOutlook(Store):
    """Creates the copies, then the process dies before the engine links them."""

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        super().apply(actions)
        raise _Killed


def test_a_copy_created_by_a_killed_run_is_removed_when_its_contact_leaves(ledger, stores) -> None:
    p, o = stores
    pid = p.user_create(person(1))
    dying = _DyingOutlook(OL, o.clock, o.faults)
    with pytest.raises(_Killed):
        run_leg(ledger, p, dying)
    assert len(dying.live()) == 1 and ledger.get(PL, pid) is None  # a copy, no link
    # The tap's state moved on (the target had emitted it); then the contact leaves the scope.
    cursor = p.seq
    p.user_set(pid, in_scope=False)
    o.records = dying.records
    leg = run_leg(ledger, p, o, cursor=cursor)
    assert o.live() == {}, "the unlinked copy stayed in the folder out of scope"
    assert ledger.get(PL, pid) is None and ledger.failures() == []
    assert leg.report.counts["created"] == 0


def test_a_create_in_flight_leaves_no_pending_work_once_linked(ledger, stores) -> None:
    p, o = stores
    seed_linked(ledger, p, o, 3)
    assert ledger.failures() == [] and ledger.count_links() == 3


class _RacingOutlook(Store):
    """An Outlook whose user edits a contact between our read and our write, once."""

    raced = False

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        if not self.raced and actions and actions[0].kind.value == "update":
            self.raced = True
            target = actions[0].dest_id or ""
            self.user_patch(target, {"jobTitle": "Changed meanwhile"})
            return [
                WriteResult(a.source_id, False, a.dest_id, error="412", stale=True) for a in actions
            ]
        return super().apply(actions)


def test_a_copy_changed_during_the_write_is_read_again_and_merged(ledger) -> None:
    clock = Clock()
    p = Store(PL, clock, Faults(random.Random(1)))
    o = _RacingOutlook(OL, clock, Faults(random.Random(2)))
    [pid] = seed_linked(ledger, p, o, 1)
    cursor = p.seq
    p.user_patch(pid, {"city": "Oslo"})
    leg = run_leg(ledger, p, o, cursor=cursor)
    oid = ledger.get(PL, pid).book_id
    values = from_graph(o.records[oid].raw)
    assert values["city"] == "Oslo" and values["job_title"] == "Changed meanwhile"
    assert leg.report.counts["updated"] == 1 and leg.report.counts["failed"] == 0
    assert leg.report.counts["read"] == 1


def test_a_complete_listing_reveals_deletes_no_tombstone_reported(ledger, stores) -> None:
    p, o = stores
    ids = seed_linked(ledger, p, o, 3)
    gone = ledger.get(PL, ids[0]).book_id
    o.records[gone].deleted = True  # deleted while Graph's delta link had expired: no tombstone
    listing = [r for r in o.changes_since(0) if r.values is not None]
    leg = SyncLeg(ledger, p, LegSettings(OL, two_way=True))
    leg.process(listing)
    leg.complete_listing({r.id for r in listing})
    leg.finish()
    assert p.records[ids[0]].deleted and not p.records[ids[1]].deleted
    assert ledger.get(PL, ids[0]) is None and ledger.count_links() == 2


def test_a_listing_of_another_folder_than_the_bound_one_deletes_nothing(ledger, stores) -> None:
    """Issue #12 item 6: the Outlook tap says which folder it listed (its bookmark); when that is
    not the folder the scope is bound to, its absences are no deletes, however few."""
    p, o = stores
    seed_linked(ledger, p, o, 2)
    ledger.bind_folder("bound-id", "Pipeliner")
    leg = SyncLeg(ledger, p, LegSettings(OL, two_way=True))
    leg.listed_folder = "new-empty-folder"
    leg.complete_listing(set())
    with pytest.raises(FolderChanged, match="not from the folder this sync is bound to"):
        leg.finish()
    assert len(p.live()) == 2 and ledger.count_links() == 2
    # The bound folder itself, really emptied: two deletes pass (under the guard's floor).
    leg = SyncLeg(ledger, p, LegSettings(OL, two_way=True))
    leg.listed_folder = "bound-id"
    leg.complete_listing(set())
    leg.finish()
    assert len(p.live()) == 0


def test_a_moved_tombstone_round_trips_with_its_folder() -> None:
    record = SourceRecord("o-1", None, DeleteReason.MOVED, moved_to="Family")
    assert record_from_payload(record_to_payload(record)) == record


class _DyingPipeliner(Store):
    """Applies an update, then the process dies before the engine records it in the ledger."""

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        super().apply(actions)
        raise _Killed


@pytest.mark.xfail(
    strict=True,
    reason="known gap (found by the plugin state machine): an update that reached the service "
    "from a run killed before the ledger recorded it reads as the other side's edit on the next "
    "run, so a newer edit of the same field conflicts with our own echo; creates are held in "
    "flight (IN_FLIGHT), updates are not yet",
)
def test_an_update_applied_by_a_killed_run_is_not_taken_for_an_edit(ledger, stores) -> None:
    p, o = stores
    [pid] = seed_linked(ledger, p, o, 1)
    oid = ledger.get(PL, pid).book_id
    o.user_patch(oid, {"mobilePhone": "+1 555 0101"})
    dying = _DyingPipeliner(PL, p.clock, p.faults)
    dying.records = p.records
    with pytest.raises(_Killed):
        run_leg(ledger, o, dying)  # the update lands in Pipeliner; the ledger never hears of it
    assert p.values(pid)["mobile_phone"] == "+1 555 0101"
    o.user_patch(oid, {"mobilePhone": "+1 555 0202"})  # the user edits the field again
    run_leg(ledger, p, o, cursor=0)  # the next run: Pipeliner -> Outlook first, then back
    run_leg(ledger, o, p, cursor=0)
    assert o.values(oid)["mobile_phone"] == "+1 555 0202"
    assert p.values(pid)["mobile_phone"] == "+1 555 0202"
