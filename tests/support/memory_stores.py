"""In-memory Pipeliner and Outlook stores for engine tests and the sync state machine.

They hold records in each API's own shape (Pipeliner fields, Graph contacts with arrays,
addresses and extended properties) so the real field table is exercised on every write, keep a
change log that plays the part of each tap's incremental read, and implement the engine's
``Destination`` protocol the way the targets do. Nothing here decides anything about the sync.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from contactsync.outlook.projection import (
    PIPELINER_ID_PROPERTY_ID,
    from_graph,
    pipeliner_stamp,
    to_graph,
)
from contactsync.pipeliner.projection import from_pipeliner, to_pipeliner
from contactsync.sync.engine import WriteResult
from contactsync.sync.link import Side
from contactsync.sync.plan import Action, DeleteReason, DestRecord, Kind, SourceRecord

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """A logical clock shared by both stores, so ``newest_wins`` has an order to go by."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1)

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=next(self._ticks))


@dataclass
class Faults:
    """Random write failures, switched on for some sync rounds only."""

    rng: random.Random
    rate: float = 0.0
    injected: int = 0

    def fail(self) -> bool:
        if self.rate and self.rng.random() < self.rate:
            self.injected += 1
            return True
        return False


@dataclass
class Stored:
    raw: dict[str, Any]
    deleted: bool = False
    seq: int = 0
    modified: datetime = EPOCH
    version: int = 1
    # Pipeliner only: is the contact in the user's scope, may the user delete it.
    in_scope: bool = True
    can_delete: bool = True
    # Which source record a sync create made this from (duplicate detection).
    created_from: str | None = None


@dataclass
class Store:
    side: Side
    clock: Clock
    faults: Faults
    records: dict[str, Stored] = field(default_factory=dict)
    seq: int = 0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    writes: int = 0

    # -- user-side changes (what a person does in the app) -----------------------------------

    def _touch(self, rec: Stored) -> None:
        self.seq += 1
        rec.seq = self.seq
        rec.modified = self.clock.now()
        rec.version += 1

    def new_id(self) -> str:
        return f"{self.side.value[0]}{next(self._ids)}"

    def user_create(self, raw: dict[str, Any], **flags: Any) -> str:
        record_id = self.new_id()
        rec = Stored(copy.deepcopy(raw), **flags)
        self.records[record_id] = rec
        self._touch(rec)
        return record_id

    def user_patch(self, record_id: str, patch: Mapping[str, Any]) -> None:
        rec = self.records[record_id]
        rec.raw.update(copy.deepcopy(dict(patch)))
        self._touch(rec)

    def user_delete(self, record_id: str) -> None:
        rec = self.records[record_id]
        rec.deleted = True
        self._touch(rec)

    def user_set(self, record_id: str, **flags: Any) -> None:
        rec = self.records[record_id]
        for name, value in flags.items():
            setattr(rec, name, value)
        self._touch(rec)

    def live(self) -> dict[str, Stored]:
        return {i: r for i, r in self.records.items() if not r.deleted}

    def values(self, record_id: str) -> dict[str, str | None]:
        raw = self.records[record_id].raw
        return from_pipeliner(raw) if self.side is Side.CRM else from_graph(raw)

    # -- the tap's incremental read ----------------------------------------------------------

    def changes_since(self, cursor: int) -> list[SourceRecord]:
        changed = sorted((r.seq, i) for i, r in self.records.items() if r.seq > cursor)
        out = []
        for _, record_id in changed:
            rec = self.records[record_id]
            if rec.deleted:
                out.append(SourceRecord.tombstone(record_id))
            elif self.side is Side.CRM and not rec.in_scope:
                out.append(SourceRecord.tombstone(record_id, DeleteReason.OUT_OF_SCOPE))
            else:
                out.append(
                    SourceRecord(
                        record_id,
                        self.values(record_id),
                        modified=rec.modified,
                        version=str(rec.version),
                        stamp=pipeliner_stamp(rec.raw) if self.side is Side.BOOK else None,
                    )
                )
        return out

    # -- the Destination protocol ---------------------------------------------------------------

    def _dest_record(self, record_id: str) -> DestRecord:
        rec = self.records[record_id]
        return DestRecord(
            record_id,
            self.values(record_id),
            modified=rec.modified,
            version=str(rec.version),
            can_delete=rec.can_delete,
            stamp=pipeliner_stamp(rec.raw) if self.side is Side.BOOK else None,
        )

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        return {i: self._dest_record(i) for i in ids if i in self.live()}

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        visible = (i for i, r in self.live().items() if r.in_scope)
        return [self._dest_record(i) for i in visible]

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        return [self._apply_one(a) for a in actions]

    def _apply_one(self, action: Action) -> WriteResult:
        if self.faults.fail():
            return WriteResult(action.source_id, False, error="injected failure (HTTP 503)")
        self.writes += 1
        stamp = action.source_id if self.side is Side.BOOK else None
        if action.kind is Kind.DELETE:
            self.user_delete(action.dest_id or "")
            return WriteResult(action.source_id, True, action.dest_id)
        target = action.dest_id
        if action.kind is Kind.RESTORE and self.side is Side.CRM and target in self.records:
            self.records[target].deleted = False  # batch-restore keeps the id
        elif action.kind in (Kind.CREATE, Kind.RESTORE):
            target = self.user_create({}, created_from=action.source_id)
        assert target is not None
        rec = self.records[target]
        if self.side is Side.CRM:
            rec.raw.update(to_pipeliner(action.fields, action.fields.keys()))
        else:
            body = to_graph(action.fields, rec.raw, action.fields.keys(), stamp=stamp)
            apply_graph_patch(rec.raw, body)
        self._touch(rec)
        return WriteResult(action.source_id, True, target, str(rec.version))


def apply_graph_patch(contact: dict[str, Any], body: Mapping[str, Any]) -> None:
    """What Graph does with a PATCH: replace top-level values, upsert extended properties."""
    for name, value in body.items():
        if name != "singleValueExtendedProperties":
            contact[name] = copy.deepcopy(value)
            continue
        props = contact.setdefault("singleValueExtendedProperties", [])
        for prop in value:
            props[:] = [p for p in props if p["id"].casefold() != prop["id"].casefold()]
            props.append(dict(prop))


def stamp_of(contact: Mapping[str, Any]) -> str | None:
    for prop in contact.get("singleValueExtendedProperties") or ():
        if prop["id"].casefold() == PIPELINER_ID_PROPERTY_ID.casefold():
            return prop["value"]
    return None
