"""Carry out one sync leg: plan each batch, write it, record links and outcomes as they happen.

The targets are adapters: each gives a :class:`Destination` over its API, and this module does
the rest the same way for both, so the Hypothesis state machine in ``tests/property`` exercises
the very code the targets run. Durability rules:

* a link is recorded as soon as the write that created it returned (one transaction per batch);
* a failed write is stored with its source record and replayed by the next run;
* deletes wait for the end of the leg, so the mass-delete guard sees the whole run first; they
  wait in the ledger's pending work, so a crash before the end cannot forget them;
* a contact leaving the scope is marked LEAVING before its address-book copy is deleted, so the
  address-book tombstone that follows can never become a CRM delete, even after a crash.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from contactsync.sync.fields import align_email_slots
from contactsync.sync.ledger import LostValue, PartitionLedger
from contactsync.sync.link import Link, LinkState, Side
from contactsync.sync.merge import ConflictPolicy
from contactsync.sync.plan import (
    Action,
    DeleteReason,
    DestRecord,
    Kind,
    LegContext,
    SourceRecord,
    check_mass_delete,
    needs_copy,
    plan_batch,
    plan_owed_to_book,
)
from contactsync.sync.report import RunReport

log = logging.getLogger("contactsync.sync.engine")


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one write. ``dest_id``/``version`` describe the copy after the write."""

    source_id: str
    ok: bool
    dest_id: str | None = None
    version: str | None = None
    error: str | None = None
    #: The copy changed between our read and our write (HTTP 412): read again and re-plan.
    stale: bool = False
    #: The destination refused the record's data (400/422): retrying it unchanged cannot help.
    permanent: bool = False
    #: Table keys left out of a write that otherwise succeeded, and why (the destination refused
    #: their values); ``kept`` holds the destination's own value of each, which stays.
    refused: Mapping[str, str] = field(default_factory=dict)
    kept: Mapping[str, str | None] = field(default_factory=dict)


class Destination(Protocol):
    """What a target must provide: read current copies, find candidates, write a batch."""

    side: Side

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        """Current copies of ``ids``; a deleted or unknown id is simply absent."""
        ...

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        """Existing copies that may be the counterparts of these unlinked records."""
        ...

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        """Carry out writing actions (one result each, same order); a failure is a result."""
        ...


@dataclass(frozen=True)
class LegSettings:
    source_side: Side
    policy: ConflictPolicy = ConflictPolicy.CRM_WINS
    two_way: bool = False
    max_delete_ratio: float = 0.5
    allow_mass_delete: bool = False
    dry_run: bool = False
    #: The address book's own check of its folder (given the scope's ledger): why the folder read
    #: may not be the one the sync is bound to, or None. Lets the mass-delete guard tell a folder
    #: that changed from contacts that were deleted.
    folder_check: Callable[[PartitionLedger], str | None] | None = None

    @property
    def context(self) -> LegContext:
        return LegContext(self.source_side, self.policy, self.two_way)


# --- failure payloads ---------------------------------------------------------------------


def record_to_payload(record: SourceRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "values": dict(record.values) if record.values is not None else None,
        "deleted": record.deleted.value if record.deleted else None,
        "modified": record.modified.isoformat() if record.modified else None,
        "version": record.version,
        "stamp": record.stamp,
        "moved_to": record.moved_to,
    }


def record_from_payload(payload: Mapping[str, Any]) -> SourceRecord:
    modified = payload.get("modified")
    deleted = payload.get("deleted")
    return SourceRecord(
        id=payload["id"],
        values=payload.get("values"),
        deleted=DeleteReason(deleted) if deleted else None,
        modified=datetime.fromisoformat(modified) if modified else None,
        version=payload.get("version"),
        stamp=payload.get("stamp"),
        moved_to=payload.get("moved_to"),
    )


_BookRecord = TypeVar("_BookRecord", SourceRecord, DestRecord)


def _slots_as_agreed(record: _BookRecord, agreed: Mapping[str, Any] | None) -> _BookRecord:
    """An address-book contact's e-mail addresses in the slots last agreed on, should the address
    book have
    dropped the empty entries that kept them there (``fields.align_email_slots``)."""
    if record.values is None or not agreed:
        return record
    values = align_email_slots(record.values, agreed)
    return record if values == record.values else replace(record, values=values)


# --- the leg -------------------------------------------------------------------------------

#: A record refused for its data this many times is parked until it changes.
PARK_AFTER = 3

#: Why a record sits in the ledger's pending work while its copy is being created: a run stopped
#: after the create and before the link replays it next time, and the copy is found by its stamp
#: (instead of staying in the folder unlinked, and unremoved when the contact later leaves).
IN_FLIGHT = "created in a run that stopped before linking it: looked up by its stamp next run"

#: Why a tombstone sits in the ledger's pending work until the leg ends.

_COUNTER = {
    Kind.CREATE: "created",
    Kind.UPDATE: "updated",
    Kind.RESTORE: "restored",
    Kind.DELETE: "deleted",
    Kind.LINK: "linked",  # a match linked: its merge wrote what differed
    Kind.SKIP: "unchanged",
    Kind.CONFLICT_RESOLVED: "unchanged",
    Kind.KEEP: "unchanged",
    Kind.FORGET: "forgotten",
    Kind.REJECT: "rejected",
    Kind.LEAVE: "out_of_scope",
    Kind.MOVED_OUT: "moved_out",
}


class FolderChanged(RuntimeError):
    """A complete listing came from another address-book folder than the one the sync is bound
    to."""


class SyncLeg:
    """One direction of one run, for one ledger scope. Call :meth:`process` per batch, then
    :meth:`finish` once."""

    def __init__(
        self,
        ledger: PartitionLedger,
        destination: Destination,
        settings: LegSettings,
        report: RunReport | None = None,
    ) -> None:
        if destination.side is settings.source_side:
            raise ValueError("a leg's destination must be the other side")
        self.ledger = ledger
        self.dest = destination
        self.settings = settings
        self.src = settings.source_side
        self.report = report or RunReport(str(self.src), str(destination.side), settings.dry_run)
        self._linked_at_start = ledger.count_links()
        self._deferred: dict[str, tuple[Action, SourceRecord]] = {}
        self._handled: set[str] = set()
        self._replanned: set[str] = set()
        self._failed_before = {f.record_id for f in ledger.failures(self.src, parked=None)}
        #: Deletes held in the ledger for the guard (by an earlier run that died, or this one).
        self._holding = {h.record_id for h in ledger.held_deletes(self.src)}
        #: Records refused for their data too often: skipped while they stay as they were.
        self._parked = {f.record_id: f for f in ledger.failures(self.src, parked=True)}
        #: The address-book folder id the source's listing came from, when its tap says so.
        self.listed_folder: str | None = None

    # -- public -----------------------------------------------------------------------------

    def retry_failures(self) -> None:
        """Replay the records that failed in earlier runs (before any new record)."""
        stored = [f.payload for f in self.ledger.failures(self.src)]
        stored += [h.payload for h in self.ledger.held_deletes(self.src)]
        if stored:
            log.info("retrying %d records that failed or were held in earlier runs", len(stored))
            self.report.count("retried", len(stored))
            self.process([record_from_payload(payload) for payload in stored])

    def process(self, records: Sequence[SourceRecord]) -> None:
        """Plan and write one batch (the last record of an id wins within a batch)."""
        batch = [r for r in {r.id: r for r in records}.values() if not self._still_parked(r)]
        if not batch:
            return
        self.report.count("read", sum(r.id not in self._replanned for r in batch))
        self._handled.update(r.id for r in batch)
        for record in batch:  # a newer record of the same contact supersedes a pending delete
            self._deferred.pop(record.id, None)
        links = self.ledger.get_many(self.src, [r.id for r in batch])
        if self.src is Side.BOOK:
            agreed = {i: link.agreed for i, link in links.items()}
            batch = [_slots_as_agreed(r, agreed.get(r.id)) for r in batch]
        by_id = {r.id: r for r in batch}
        context = self.settings.context
        linked_dest = [  # only the copies the plan looks at: echoes cost no read
            i
            for source_id, link in links.items()
            if (i := link.id_on(self.dest.side)) and needs_copy(by_id[source_id], link, context)
        ]
        dests = self.dest.fetch(linked_dest) if linked_dest else {}
        if self.dest.side is Side.BOOK:
            copies = {link.book_id: link.agreed for link in links.values()}
            dests = {i: _slots_as_agreed(d, copies.get(i)) for i, d in dests.items()}
        unlinked = [r for r in batch if r.id not in links and r.values is not None]
        candidates = self._unlinked_candidates(unlinked)
        actions = plan_batch(batch, links, dests, candidates, context)
        now: list[tuple[Action, SourceRecord]] = []
        for action in actions:
            pair = (action, by_id[action.source_id])
            if action.kind is Kind.DELETE and action.link_state is not LinkState.LEAVING:
                self._defer(*pair)
            else:
                now.append(pair)
        self._execute(now, links)

    def complete_listing(self, seen: set[str]) -> None:
        """The source just listed every contact it has (a first read, or a full resync after
        its change-tracking link expired): a linked contact it did not list is gone, though no
        tombstone said so. Those become tombstones, behind the same rights and guard."""
        missing = [
            record_id
            for record_id, state in self.ledger.iter_link_ids(self.src)
            if record_id
            and record_id not in seen
            # A copy moved to another folder is not in this one's listing, and not deleted.
            and not (state is LinkState.MOVED and self.src is Side.BOOK)
        ]
        if missing:
            log.info("%d linked contacts are absent from a complete listing", len(missing))
        for start in range(0, len(missing), 100):
            self.process([SourceRecord.tombstone(i) for i in missing[start : start + 100] if i])

    def finish(self) -> RunReport:
        """Restores owed to the address book, then the deletes, behind the mass-delete guard."""
        try:
            return self._finish()
        finally:
            self._report_parked()

    def _report_parked(self) -> None:
        """Every record waiting for a person is in every report until it changes."""
        if self.settings.dry_run:
            return
        for failure in self.ledger.failures(self.src, parked=True):
            self.report.count("needs_attention")
            self.report.issue(failure.record_id, "needs attention", failure.reason)

    def _finish(self) -> RunReport:
        if self.src is Side.CRM:
            self._settle_owed_work()
        if self._deferred:
            folder = self._folder_changed()
            if folder is not None and folder[1]:
                # Read from another folder than the bound one: its absences are no deletes.
                self.report.error = (
                    f"not deleting {len(self._deferred)} contacts in {self.dest.side}: "
                    f"{folder[0]}. Nothing was deleted; the sync reads the folder it is bound to "
                    "by id when its Singer state is kept (run again without --full-refresh)."
                )
                raise FolderChanged(self.report.error)
            try:
                check_mass_delete(
                    len(self._deferred),
                    self._linked_at_start,
                    self.settings.max_delete_ratio,
                    allow=self.settings.allow_mass_delete,
                    dest=self.dest.side,
                    folder_changed=folder[0] if folder else None,
                )
            except Exception as exc:
                self.report.error = str(exc)
                raise
            deletes = list(self._deferred.values())
            links = self.ledger.get_many(self.src, [a.source_id for a, _ in deletes])
            self._execute(deletes, links)
            self._deferred = {}
        return self.report

    # -- internals ----------------------------------------------------------------------------

    def _folder_changed(self) -> tuple[str, bool] | None:
        """Why the address-book folder read may not be the one the sync is bound to, and whether
        that
        is certain (the source said which folder it read), or None when there is no sign."""
        if self.src is not Side.BOOK:
            return None
        binding = self.ledger.folder_binding()
        if binding is not None and self.listed_folder is not None:
            if self.listed_folder == binding.folder_id:
                return None
            return (
                f"the {Side.BOOK.title} contacts were read from folder {self.listed_folder}, not "
                "from the "
                f"folder this sync is bound to ({binding.display_name!r}, id "
                f"{binding.folder_id})",
                True,
            )
        if self.settings.folder_check is None:
            return None
        why = self.settings.folder_check(self.ledger)
        return (why, False) if why else None

    def _still_parked(self, record: SourceRecord) -> bool:
        """A parked record that has not changed since: not tried again (it needs a person)."""
        parked = self._parked.get(record.id)
        if parked is None:
            return False
        stored = record_from_payload(parked.payload)
        if (record.version is not None and record.version == stored.version) or (
            record.values == stored.values and record.deleted == stored.deleted
        ):
            return True
        del self._parked[record.id]  # changed: tried afresh
        return False

    def _settle_owed_work(self) -> None:
        """address-book copies owed from earlier runs: put back (RESTORE_BOOK) or removed
        because their contact left the scope (LEAVING), unless this run already handled them."""
        owed = [
            link
            for state in (LinkState.RESTORE_BOOK, LinkState.LEAVING)
            for link in self.ledger.iter_links(state)
            if link.crm_id not in self._handled
        ]
        if not owed:
            return
        copies = [link.book_id for link in owed if link.book_id]
        current = self.dest.fetch(copies) if copies else {}
        actions = plan_owed_to_book(owed, current, handled=self._handled)
        links = {link.crm_id: link for link in owed}
        pairs = [
            (
                action,
                SourceRecord(
                    action.source_id,
                    dict(links[action.source_id].agreed),
                    version=links[action.source_id].crm_version,
                ),
            )
            for action in actions
        ]
        self._execute(pairs, links)

    def _defer(self, action: Action, record: SourceRecord) -> None:
        """Hold a delete for the guard, durably: the target may emit Singer state (and so the
        tap may never send this tombstone again) before the leg finishes."""
        self._deferred[record.id] = (action, record)
        if not self.settings.dry_run:
            self.ledger.hold_delete(self.src, record.id, record_to_payload(record))
            self._holding.add(record.id)

    def _unlinked_candidates(self, records: Sequence[SourceRecord]) -> list[DestRecord]:
        if not records:
            return []
        found = list(self.dest.candidates(records))
        linked = self.ledger.get_many(self.dest.side, [c.id for c in found])
        return [c for c in found if c.id not in linked]

    def _execute(
        self, pairs: Sequence[tuple[Action, SourceRecord]], links: Mapping[str, Link]
    ) -> None:
        writes: list[tuple[Action, SourceRecord]] = []
        for action, record in pairs:
            if action.writes and not self.settings.dry_run:
                writes.append((action, record))
                continue
            self._count(action, record)
            if not self.settings.dry_run:
                self._record_without_write(action, record, links.get(action.source_id))
        if not writes:
            return
        for action, _ in writes:
            if action.kind is Kind.DELETE and action.link_state is LinkState.LEAVING:
                link = links[action.source_id]
                self.ledger.put(link.with_changes(state=LinkState.LEAVING))
        creating = [r for a, r in writes if a.kind is Kind.CREATE]
        self.ledger.hold_in_flight(
            self.src, [(r.id, record_to_payload(r)) for r in creating], IN_FLIGHT
        )
        results = self.dest.apply([a for a, _ in writes])
        if len(results) != len(writes):
            raise RuntimeError("destination returned a result count that differs from the writes")
        new_links: list[Link] = []
        replan: list[SourceRecord] = []
        settled = {r.id for r in creating} - self._failed_before
        for (action, record), result in zip(writes, results, strict=True):
            if result.stale and record.id not in self._replanned:
                self._replanned.add(record.id)
                replan.append(record)
            elif result.ok:
                self._count(action)
                link = self._link_after(action, record, result, links.get(action.source_id))
                if link is None:
                    self.ledger.remove(self._crm_id(action, result))
                else:
                    new_links.append(link)
                self._refused_keys(record, result)
                self._keep_lost_values(action, self._crm_id(action, result))
                if record.id in self._failed_before:  # its row goes with the link (below)
                    self._failed_before.discard(record.id)
                    settled.add(record.id)
                self._cleared(record.id)
            else:
                settled.discard(record.id)  # its row stays, as a failure
                self._failed(action, record, result.error or "write failed", result.permanent)
        # The links and the end of their records' pending work: one commit (issue #15).
        self.ledger.put_many(new_links, settle=(self.src, sorted(settled)))
        if replan:
            log.info("%d copies changed while we wrote them: reading them again", len(replan))
            self.process(replan)

    def _record_without_write(
        self, action: Action, record: SourceRecord, link: Link | None
    ) -> None:
        if link is not None and action.conflicts:
            self._keep_lost_values(action, link.crm_id)
        if action.kind is Kind.FORGET and link is not None:
            self.ledger.remove(link.crm_id)
        elif link is not None and (action.agreed is not None or action.link_state is not None):
            changes: dict[str, Any] = {}
            if action.agreed is not None:
                changes["agreed"] = action.agreed
            if action.link_state is not None:
                changes["state"] = action.link_state
                if action.link_state is LinkState.RESTORE_BOOK and record.values is None:
                    # The copy was deleted: it is created again. (A refused edit keeps it, to
                    # be put back in place.)
                    changes["book_id"] = None
                    changes["book_version"] = None
            if action.kind is not Kind.REJECT:
                changes[f"{self.src.value}_version"] = record.version
            self.ledger.put(link.with_changes(**changes))
        if action.kind is Kind.REJECT:
            self.report.issue(record.id, "rejected", action.reason)
            if action.link_state is None:
                # Not settled by a restore: try again next run (the user may fix the cause),
                # a bounded number of times while the record stays as it is.
                failure = self.ledger.record_failure(
                    self.src,
                    record.id,
                    record_to_payload(record),
                    action.reason,
                    park_after=PARK_AFTER,
                )
                self._failed_before.add(record.id)
                if failure.parked_at is not None:
                    self._parked[record.id] = failure
            else:
                self._cleared(record.id)
        else:
            if action.kind is Kind.LEAVE:
                self.report.issue(record.id, "out of scope", action.reason)
            elif action.kind is Kind.MOVED_OUT:
                self.report.issue(record.id, "moved out of the folder", action.reason)
            self._cleared(record.id)

    def _link_after(
        self, action: Action, record: SourceRecord, result: WriteResult, link: Link | None
    ) -> Link | None:
        """The link as it stands once ``action`` was written; None when it is gone."""
        if action.kind is Kind.DELETE:
            return None
        dest_id = result.dest_id or action.dest_id
        assert dest_id is not None, "a successful create must return the new id"
        ids = {f"{self.src.value}_id": record.id, f"{self.dest.side.value}_id": dest_id}
        versions = {
            f"{self.src.value}_version": record.version,
            f"{self.dest.side.value}_version": result.version,
        }
        agreed = dict(action.agreed if action.agreed is not None else (link.agreed if link else {}))
        state = action.link_state or (link.state if link else LinkState.ACTIVE)
        if action.kind is Kind.RESTORE:
            state = LinkState.ACTIVE
        # A written key agrees again; one the destination refused keeps its value there.
        pinned = {k: v for k, v in (link.pinned if link else {}).items() if k not in action.fields}
        if result.refused and self.dest.side is Side.BOOK:
            pinned.update({k: result.kept.get(k) for k in result.refused})
        elif result.refused:  # the CRM keeps its value: the address-book copy gets it back
            agreed.update({k: result.kept.get(k) for k in result.refused})
            state = LinkState.RESTORE_BOOK
        return Link(agreed=agreed, state=state, pinned=pinned, **ids, **versions)  # type: ignore[arg-type]

    def _refused_keys(self, record: SourceRecord, result: WriteResult) -> None:
        for key, why in result.refused.items():
            log.warning("%s: field %s not written to %s: %s", record.id, key, self.dest.side, why)
            self.report.issue(
                record.id,
                "field refused",
                f"{key} not written to {self.dest.side} ({why}); the rest of the contact was",
            )

    def _keep_lost_values(self, action: Action, crm_id: str) -> None:
        """Each conflict's losing value goes to the ledger, for a person to see and restore
        (``contactsync conflicts``); the report names the contact and field, never a value."""
        if not action.conflicts or self.settings.dry_run:
            return
        now = datetime.now(UTC)
        lost = []
        for conflict in action.conflicts:
            kept = conflict.source_value if conflict.winner is self.src else conflict.dest_value
            loser = conflict.dest_value if conflict.winner is self.src else conflict.source_value
            lost.append(
                LostValue(
                    uuid.uuid4().hex[:12],
                    crm_id,
                    conflict.key,
                    conflict.winner,
                    kept,
                    loser,
                    str(self.settings.policy),
                    now,
                )
            )
            self.report.issue(
                action.source_id,
                "conflict",
                f"{conflict.key} was changed on both sides; {conflict.winner}'s value was kept "
                f"({self.settings.policy}); the other is saved (contactsync conflicts)",
            )
        self.ledger.record_conflicts(lost)

    def _crm_id(self, action: Action, result: WriteResult) -> str:
        if self.src is Side.CRM:
            return action.source_id
        return result.dest_id or action.dest_id or ""

    def _count(self, action: Action, record: SourceRecord | None = None) -> None:
        """One outcome per record (``report.OUTCOMES``), as a person would put it."""
        leaving = action.link_state is LinkState.LEAVING
        if action.kind is Kind.DELETE and leaving:
            self.report.count("out_of_scope")  # a scope exit, not a deletion of the contact
        elif action.kind is Kind.REJECT and action.link_state is LinkState.RESTORE_BOOK:
            self.report.count("restored")  # refused on the other side: its copy is put back
        elif (
            action.kind is Kind.SKIP
            and record is not None
            and record.deleted is DeleteReason.OUT_OF_SCOPE
        ):
            self.report.count("out_of_scope")  # never synced, and not the user's to sync
        else:
            self.report.count(_COUNTER[action.kind])
        if action.conflicts:
            self.report.count("conflicts", len(action.conflicts))

    def _failed(
        self, action: Action, record: SourceRecord, error: str, permanent: bool = False
    ) -> None:
        """A failed write waits in the ledger for the next run; one refused for its data is
        parked after :data:`PARK_AFTER` tries, until the record changes (never retried forever)."""
        failure = self.ledger.record_failure(
            self.src,
            record.id,
            record_to_payload(record),
            error,
            park_after=PARK_AFTER if permanent else None,
        )
        self._failed_before.add(record.id)
        if failure.parked_at is not None:
            log.warning(
                "%s %s refused %d times (%s): it needs attention and is not retried until it "
                "changes",
                action.kind,
                record.id,
                failure.attempts,
                error,
            )
            self._parked[record.id] = failure
            return  # the report lists it with the other parked records
        log.warning("%s %s failed: %s", action.kind, record.id, error)
        if permanent:  # refused for its data: it will not pass unchanged
            self.report.count("rejected")
            self.report.issue(record.id, "rejected", error)
        else:  # the service failed: the next run tries again
            self.report.count("failed")
            self.report.issue(record.id, f"{action.kind} failed", error)

    def _cleared(self, record_id: str) -> None:
        if record_id in self._failed_before:
            self.ledger.clear_failure(self.src, record_id)
            self._failed_before.discard(record_id)
        if record_id in self._holding:
            self.ledger.release_delete(self.src, record_id)
            self._holding.discard(record_id)
