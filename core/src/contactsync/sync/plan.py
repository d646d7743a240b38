"""The decision of one sync leg (source -> destination), as pure functions.

Given the incoming source records (or tombstones), the ledger's links and the destination's
current values, :func:`plan_batch` returns one :class:`Action` per record. Nothing here does
I/O: ``contactsync.sync.engine`` carries the actions out, and the targets adapt it to their API.

The rules, by case (S = source values, A = agreed values, D = destination values):

* live record, linked, copy present: the three-way merge (``contactsync.sync.merge``) -> UPDATE
  with exactly the fields that change, CONFLICT_RESOLVED when the destination won every
  conflict, or SKIP (unchanged, or the echo of our own write);
* live record, linked, copy gone: RESTORE it, unless in two-way S == A, where the deletion is
  the other leg's to propagate (SKIP);
* live record, not linked: the stamp, e-mail, or name + company find an unlinked copy -> LINK
  (merging the two); several candidates -> REJECT as ambiguous; none -> CREATE;
* tombstone, linked: DELETE the copy, except that an edit wins over a delete (KEEP: the deleted
  side gets its copy back, nothing is lost), a CRM delete needs deletion rights (else
  REJECT and restore the address-book copy), and a contact leaving the scope only ever removes the
  address-book copy (DELETE marked LEAVING; the address-book tombstone that follows only FORGETs);
* a destination copy the user may no longer change (DESIGN §1: rights are checked at the time
  of every write): out of the user's scope -> LEAVE (nothing written; the link is marked LEAVING
  and the other leg removes the address-book copy); in scope but not editable (read-only role,
  archived) -> REJECT, and the address-book copy is put back as the destination has it;
* an address-book copy moved to another folder of the mailbox (a tombstone of reason ``moved``, or a
  copy read with ``moved_to``) -> MOVED_OUT: nothing written on either side, the link waits in
  state MOVED (no CRM delete, no second copy, no write into the other folder); a CRM
  delete FORGETs it, left alone; seen in the folder again, it syncs as before (the CRM's
  changes meanwhile owed to the address-book copy as a RESTORE_BOOK).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from contactsync.sync.fields import Values, changed_keys, source_changes
from contactsync.sync.link import Link, LinkState, Side
from contactsync.sync.match import CandidateIndex, MatchBy
from contactsync.sync.merge import Conflict, ConflictPolicy, merge


class Kind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    RESTORE = "restore"
    DELETE = "delete"
    LINK = "link"
    SKIP = "skip"
    CONFLICT_RESOLVED = "conflict_resolved"
    KEEP = "keep"
    FORGET = "forget"
    REJECT = "reject"
    #: The contact left the syncing user's scope: nothing is written, its address-book copy goes.
    LEAVE = "leave"
    #: The address-book copy was moved to another folder: nothing is written, the link waits for it.
    MOVED_OUT = "moved_out"


#: Kinds that write to the destination.
WRITING_KINDS = frozenset({Kind.CREATE, Kind.UPDATE, Kind.RESTORE, Kind.DELETE, Kind.LINK})


class DeleteReason(StrEnum):
    DELETED = "deleted"
    OUT_OF_SCOPE = "out_of_scope"
    #: An address-book contact filed into another folder of the mailbox (its change feed reports it
    #: as removed): it left the sync, but nobody deleted it.
    MOVED = "moved"


@dataclass(frozen=True)
class SourceRecord:
    """A record from the source system, projected onto the field table.

    ``values`` is None for a tombstone. ``stamp`` is the CRM id found on an address-book
    contact (None elsewhere). ``moved_to`` names the address-book folder a ``MOVED`` contact is in.
    """

    id: str
    values: Values | None
    deleted: DeleteReason | None = None
    modified: datetime | None = None
    version: str | None = None
    stamp: str | None = None
    moved_to: str | None = None

    @classmethod
    def tombstone(cls, record_id: str, reason: DeleteReason = DeleteReason.DELETED) -> SourceRecord:
        return cls(record_id, None, deleted=reason)


@dataclass(frozen=True)
class DestRecord:
    """The destination's current copy, and the syncing user's rights on it as of this read.

    ``can_delete`` is the right to delete it; ``edit_refusal`` says why the user may not change
    it (None: they may); ``scope_exit`` says why it is no longer in the user's sync scope (None:
    it is). An own address-book folder grants everything. ``moved_to`` names the other folder of the
    mailbox an address-book copy was moved to (None: it is in the synced folder).
    """

    id: str
    values: Values
    modified: datetime | None = None
    version: str | None = None
    can_delete: bool = True
    stamp: str | None = None
    edit_refusal: str | None = None
    scope_exit: str | None = None
    moved_to: str | None = None


@dataclass(frozen=True)
class LegContext:
    source_side: Side
    policy: ConflictPolicy = ConflictPolicy.CRM_WINS
    two_way: bool = False

    @property
    def dest_side(self) -> Side:
        return self.source_side.other


@dataclass(frozen=True)
class Action:
    """What to do for one source record.

    ``fields`` are the exact table values to write (every key for CREATE and RESTORE).
    ``agreed`` and ``link_state`` are recorded on the link once the write (if any) succeeded.
    """

    kind: Kind
    source_id: str
    dest_id: str | None = None
    fields: Mapping[str, str | None] = field(default_factory=dict)
    agreed: Mapping[str, str | None] | None = None
    link_state: LinkState | None = None
    conflicts: tuple[Conflict, ...] = ()
    reason: str = ""

    @property
    def writes(self) -> bool:
        return self.kind in WRITING_KINDS


# --- linked records ----------------------------------------------------------------------------


def _pinned_view(values: Values, link: Link, ctx: LegContext) -> tuple[Values, Values]:
    """The record's values and the agreed values the merge compares the copy with, where the
    two sides agree to differ on pinned keys (``Link.pinned``): a pinned key the source did
    not change since is left out, so the refused write is not tried again."""
    if not link.pinned:
        return values, link.agreed
    mine = link.agreed_on(ctx.source_side)
    source = {k: v for k, v in values.items() if not (k in link.pinned and v == mine.get(k))}
    return source, link.agreed_on(ctx.dest_side)


def needs_copy(record: SourceRecord, link: Link, ctx: LegContext) -> bool:
    """Whether planning this linked record needs the destination's current copy.

    In two-way, a live record still equal to the agreed values (the echo of our own write, or
    a bookmark re-read) is a SKIP whatever the copy holds, since the copy's own changes travel
    on the other leg; so is an address-book edit of a contact leaving the scope. Not reading those
    copies saves a request per contact on the CRM, whose API has no multi-id read.
    """
    if record.values is None:
        return True
    if link.state is LinkState.LEAVING and ctx.source_side is Side.BOOK:
        return False
    source, _ = _pinned_view(record.values, link, ctx)
    return not (
        ctx.two_way and link.state is LinkState.ACTIVE and not source_changes(source, link.agreed)
    )


def plan_linked(
    record: SourceRecord, link: Link, dest: DestRecord | None, ctx: LegContext
) -> Action:
    """The action for a record that already has a link."""
    if record.values is None:
        return _plan_tombstone(record, link, dest, ctx)
    source, agreed_there = _pinned_view(record.values, link, ctx)
    dest_id = link.id_on(ctx.dest_side)
    if link.state is LinkState.LEAVING and ctx.source_side is Side.BOOK:
        # Only the CRM can say a contact is back in scope; this copy is still to be removed.
        return Action(
            Kind.SKIP,
            record.id,
            dest_id,
            reason=f"the contact left the sync scope: {Side.BOOK.title} edits to its copy are not "
            "sent "
            f"to {Side.CRM.title}, and the copy is removed",
        )
    if not needs_copy(record, link, ctx):
        # Also when the copy is gone: in two-way its deletion reaches the source on the other leg.
        echo = record.version is not None and record.version == link.version_on(ctx.source_side)
        quiet = f"no change to a mapped field ({ctx.dest_side} edits travel on the other leg)"
        return Action(
            Kind.SKIP, record.id, dest_id, reason="echo of our own write" if echo else quiet
        )
    if ctx.dest_side is Side.BOOK and (
        (dest is not None and dest.moved_to) or (dest is None and link.state is LinkState.MOVED)
    ):
        # Never a second copy in the folder, never a write into another folder.
        return _moved_out(record, link, dest.moved_to if dest else None)
    back_in_scope = LinkState.ACTIVE if link.state is not LinkState.ACTIVE else None
    # What both sides agree on once this record is written: the record's keys, and the old
    # agreement on the keys it does not carry (unknown to it: deselected, not in its SCHEMA).
    agreed = {**link.agreed, **source}
    if dest is not None and dest.scope_exit:
        return _leave(record, link, dest)
    if dest is not None and link.state is LinkState.RESTORE_BOOK:
        # The address-book copy owes the source's values (a refused edit): put them back whole.
        fields = {k: v for k, v in source.items() if dest.values.get(k) != v}
        kind = Kind.UPDATE if fields else Kind.SKIP
        return Action(
            kind,
            record.id,
            dest.id,
            fields=fields,
            agreed=agreed,
            link_state=LinkState.ACTIVE,
            reason=f"{ctx.dest_side} copy put back as {ctx.source_side} has it",
        )
    if dest is None:
        return Action(
            Kind.RESTORE,
            record.id,
            dest_id,
            fields=agreed,
            agreed=agreed,
            link_state=back_in_scope,
            reason=f"{ctx.dest_side} copy was missing",
        )
    result = merge(
        agreed_there,
        source,
        dest.values,
        source_side=ctx.source_side,
        policy=ctx.policy,
        source_modified=record.modified,
        dest_modified=dest.modified,
    )
    if link.state is LinkState.MOVED and ctx.source_side is Side.BOOK:
        back = _moved_back(record, source, dest, result.writes, result.conflicts)
        if back is not None:
            return back
    if result.writes and dest.edit_refusal:
        return Action(
            Kind.REJECT,
            record.id,
            dest.id,
            agreed=dict(dest.values),
            link_state=LinkState.RESTORE_BOOK,
            reason=f"not written: {dest.edit_refusal}; the {ctx.source_side} copy is put back "
            f"as {ctx.dest_side} has it (changed: {', '.join(sorted(result.writes))})",
        )
    if result.writes:
        return Action(
            Kind.UPDATE,
            record.id,
            dest.id,
            fields=result.writes,
            agreed=agreed,
            link_state=back_in_scope,
            conflicts=result.conflicts,
        )
    if result.conflicts:
        return Action(
            Kind.CONFLICT_RESOLVED,
            record.id,
            dest.id,
            agreed=agreed,
            link_state=back_in_scope,
            conflicts=result.conflicts,
            reason=f"{ctx.dest_side} value kept",
        )
    echo = record.version is not None and record.version == link.version_on(ctx.source_side)
    moved = bool(source_changes(source, link.agreed))
    return Action(
        Kind.SKIP,
        record.id,
        dest.id,
        agreed=agreed if moved else None,
        link_state=back_in_scope,
        reason="echo of our own write" if echo else "no change to a mapped field",
    )


def _moved_out(record: SourceRecord, link: Link, folder: str | None) -> Action:
    """The address-book copy lives in another folder now: nothing is written on either side."""
    where = f" (to {folder!r})" if folder else ""
    return Action(
        Kind.MOVED_OUT,
        record.id,
        link.book_id,
        link_state=LinkState.MOVED,
        reason=f"moved out of the folder{where}: the {Side.CRM.title} contact stays, no copy is "
        "made "
        "in the folder; moving it back resumes the sync",
    )


def _moved_back(
    record: SourceRecord,
    source: Values,
    dest: DestRecord,
    writes: Mapping[str, str | None],
    conflicts: tuple[Conflict, ...],
) -> Action | None:
    """An address-book contact moved back into the folder (address book -> CRM): its edits merge as
    usual; CRM edits made meanwhile (not sent while it was away) are owed to the address-book
    copy, put back by the next CRM -> address book leg. None: nothing is owed (plan as usual).
    """
    after = {**dest.values, **writes}
    owed = sorted(k for k, v in after.items() if k in source and source[k] != v)
    if not owed:
        return None
    return Action(
        Kind.UPDATE if writes else Kind.SKIP,
        record.id,
        dest.id,
        fields=dict(writes),
        agreed=after,
        link_state=LinkState.RESTORE_BOOK,
        conflicts=conflicts,
        reason=f"moved back into the folder; {Side.CRM.title}'s changes meanwhile "
        f"({', '.join(owed)}) "
        f"go to the {Side.BOOK.title} copy",
    )


def _leave(record: SourceRecord, link: Link, dest: DestRecord) -> Action:
    """The destination contact left the user's scope: write nothing; its address-book copy goes."""
    return Action(
        Kind.LEAVE,
        record.id,
        dest.id,
        link_state=LinkState.LEAVING,
        reason=f"left the sync scope: {dest.scope_exit}; not written, and its {Side.BOOK.title} "
        "copy "
        f"is removed on the next run (the {Side.CRM.title} contact is untouched)",
    )


def _plan_tombstone(
    record: SourceRecord, link: Link, dest: DestRecord | None, ctx: LegContext
) -> Action:
    src, dst = ctx.source_side, ctx.dest_side
    dest_id = link.id_on(dst)
    if record.deleted is DeleteReason.MOVED and src is Side.BOOK:
        if link.state is LinkState.LEAVING:
            return Action(
                Kind.FORGET,
                record.id,
                dest_id,
                reason="moved out of the folder while leaving the sync scope; never deleted in "
                f"{Side.CRM.title}",
            )
        return _moved_out(record, link, record.moved_to)
    if link.state is LinkState.MOVED and src is Side.BOOK:
        # A removal of a copy that already left the folder (a listing without it) is no delete.
        return _moved_out(record, link, record.moved_to)
    if src is Side.CRM and (
        (dest is not None and dest.moved_to) or (dest is None and link.state is LinkState.MOVED)
    ):
        where = f" (in {dest.moved_to!r})" if dest is not None and dest.moved_to else ""
        return Action(
            Kind.FORGET,
            record.id,
            dest_id,
            reason=f"deleted in {Side.CRM.title}; its {Side.BOOK.title} contact was moved out of "
            f"the folder{where} "
            "and is left alone",
        )
    if link.state is LinkState.LEAVING and src is Side.BOOK:
        return Action(
            Kind.FORGET,
            record.id,
            dest_id,
            reason=f"{Side.BOOK.title} copy removed because the contact left the scope; "
            f"never deleted in {Side.CRM.title}",
        )
    if dest is None:
        return Action(Kind.FORGET, record.id, dest_id, reason="deleted on both sides")
    if dest.scope_exit:
        return Action(
            Kind.FORGET,
            record.id,
            dest_id,
            reason=f"deleted in {src}; {dest.scope_exit}, so it is not deleted in {dst}",
        )
    edited = sorted(changed_keys(link.agreed, dest.values))
    if record.deleted is DeleteReason.OUT_OF_SCOPE and src is Side.CRM:
        lost = (
            f"; its unsynced {Side.BOOK.title} edits ({', '.join(edited)}) go with it"
            if edited
            else ""
        )
        return Action(
            Kind.DELETE,
            record.id,
            dest.id,
            link_state=LinkState.LEAVING,
            reason=f"left the sync scope: the {Side.BOOK.title} copy is removed{lost}",
        )
    if edited:
        if src is Side.BOOK:
            return Action(
                Kind.KEEP,
                record.id,
                dest.id,
                agreed=dict(dest.values),
                link_state=LinkState.RESTORE_BOOK,
                reason=f"deleted in {Side.BOOK.title} but edited in {Side.CRM.title} "
                f"({', '.join(edited)}): "
                f"the edit wins, the {Side.BOOK.title} copy comes back",
            )
        if ctx.two_way:
            return Action(
                Kind.KEEP,
                record.id,
                dest.id,
                reason=f"deleted in {Side.CRM.title} but edited in {Side.BOOK.title} "
                f"({', '.join(edited)}): "
                f"the edit wins, the {Side.CRM.title} contact is restored from it",
            )
        return Action(
            Kind.FORGET,
            record.id,
            dest.id,
            reason=f"deleted in {Side.CRM.title} but edited in {Side.BOOK.title} "
            f"({', '.join(edited)}): "
            f"the {Side.BOOK.title} copy is kept and no longer synced",
        )
    if not dest.can_delete:
        return Action(
            Kind.REJECT,
            record.id,
            dest.id,
            agreed=dict(dest.values),
            link_state=LinkState.RESTORE_BOOK,
            reason=f"deleted in {Side.BOOK.title}, but the user may not delete this "
            f"{Side.CRM.title} contact "
            f"(no contact deletion right, or delete-protected): the {Side.BOOK.title} copy comes "
            "back",
        )
    return Action(Kind.DELETE, record.id, dest.id, reason=f"deleted in {src}")


# --- a batch, with initial matching --------------------------------------------------------------


def plan_batch(
    records: Sequence[SourceRecord],
    links: Mapping[str, Link],
    dests: Mapping[str, DestRecord],
    candidates: Iterable[DestRecord],
    ctx: LegContext,
) -> list[Action]:
    """Actions for ``records`` in order.

    ``links`` maps source ids to their links, ``dests`` maps destination ids to current copies
    (a linked id missing from it is deleted), ``candidates`` are unlinked destination contacts
    that may match unlinked records.
    """
    actions: dict[str, Action] = {}
    unlinked: list[SourceRecord] = []
    for record in records:
        link = links.get(record.id)
        if link is not None:
            dest_id = link.id_on(ctx.dest_side)
            dest = dests.get(dest_id) if dest_id is not None else None
            actions[record.id] = plan_linked(record, link, dest, ctx)
        elif record.values is None:
            actions[record.id] = Action(Kind.SKIP, record.id, reason="never synced")
        else:
            unlinked.append(record)
    actions.update(_plan_unlinked(unlinked, candidates, ctx))
    return [actions[r.id] for r in records]


def _stamp_key(record: SourceRecord, ctx: LegContext) -> str | None:
    """What an address-book stamp must equal to identify this record's counterpart."""
    return record.id if ctx.source_side is Side.CRM else record.stamp


def _plan_unlinked(
    records: Sequence[SourceRecord], candidates: Iterable[DestRecord], ctx: LegContext
) -> dict[str, Action]:
    by_id: dict[str, DestRecord] = {}
    index = CandidateIndex()
    for cand in candidates:
        by_id[cand.id] = cand
        # CRM contacts are "stamped" with their own id: an address-book stamp points at it.
        stamp = cand.id if ctx.dest_side is Side.CRM else cand.stamp
        index.add(cand.id, cand.values, stamp)

    actions: dict[str, Action] = {}
    # Stamps are exact: they go first and take their candidate out of the pool.
    for record in records:
        assert record.values is not None
        match = index.find({}, stamp_for=_stamp_key(record, ctx))
        if match.by is MatchBy.STAMP and match.unique:
            actions[record.id] = _link(record, by_id[match.unique], ctx, MatchBy.STAMP)
            index.claim(match.unique)

    rest = [r for r in records if r.id not in actions]
    found = {r.id: index.find(r.values or {}) for r in rest}
    claims = Counter(m.unique for m in found.values() if m.unique)
    noun = f"{ctx.dest_side} contact"
    for record in rest:
        match = found[record.id]
        if match.ambiguous:
            actions[record.id] = Action(
                Kind.REJECT,
                record.id,
                reason=f"ambiguous match: {len(match.ids)} unlinked {noun}s share its {match.by} "
                f"({', '.join(match.ids)}); link or merge them by hand",
            )
        elif match.unique and claims[match.unique] > 1:
            actions[record.id] = Action(
                Kind.REJECT,
                record.id,
                match.unique,
                reason=f"ambiguous match: {claims[match.unique]} records match the same {noun} "
                f"{match.unique} by {match.by}; link or merge them by hand",
            )
        elif match.unique:
            assert match.by is not None
            actions[record.id] = _link(record, by_id[match.unique], ctx, match.by)
        else:
            values = dict(record.values or {})
            actions[record.id] = Action(Kind.CREATE, record.id, fields=values, agreed=values)
    return actions


def _link(record: SourceRecord, dest: DestRecord, ctx: LegContext, by: MatchBy) -> Action:
    assert record.values is not None
    if dest.scope_exit:
        # Creating it again would make a second CRM contact; linking would sync someone else's.
        return Action(
            Kind.REJECT,
            record.id,
            dest.id,
            reason=f"exists in {ctx.dest_side} as {dest.id} (matched by {by}), outside the sync "
            f"scope: {dest.scope_exit}. Not copied: ask for it to be shared with you as editor, "
            "or remove this contact from the folder",
        )
    result = merge(
        None,
        record.values,
        dest.values,
        source_side=ctx.source_side,
        policy=ctx.policy,
        source_modified=record.modified,
        dest_modified=dest.modified,
    )
    if result.writes and dest.edit_refusal:
        return Action(
            Kind.REJECT,
            record.id,
            dest.id,
            reason=f"exists in {ctx.dest_side} as {dest.id} (matched by {by}), but "
            f"{dest.edit_refusal}: not linked, since its changes could not be written",
        )
    return Action(
        Kind.LINK,
        record.id,
        dest.id,
        fields=result.writes,
        # Keys the record does not carry: the two agree on what the destination has.
        agreed={**dest.values, **record.values},
        conflicts=result.conflicts,
        reason=f"matched an existing {ctx.dest_side} contact by {by}",
    )


# --- restores and the mass-delete guard --------------------------------------------------------


def plan_owed_to_book(
    links: Iterable[Link], current: Mapping[str, DestRecord], handled: Iterable[str] = ()
) -> list[Action]:
    """What the CRM -> address book leg owes the folder from earlier runs, by link state.

    * RESTORE_BOOK: the copy is put back from the agreed values (it was deleted without the
      right to delete the CRM contact, or edited without the right to edit it): updated in
      place when it is still there (``current``, by address-book id), else created again.
    * LEAVING: the contact left the user's scope (seen by the other leg at a write): its copy
      is removed. Never a mass delete: the CRM is untouched and the scope says so.

    ``handled`` are CRM ids this run already planned from a fresh record.
    """
    done = set(handled)
    actions: list[Action] = []
    for link in links:
        if link.crm_id in done:
            continue
        copy = current.get(link.book_id) if link.book_id else None
        if copy is not None and copy.moved_to:
            # Filed into another folder meanwhile: neither removed there nor copied again here.
            actions.append(_moved_out(SourceRecord(link.crm_id, None), link, copy.moved_to))
            continue
        if link.state is LinkState.LEAVING:
            if copy is None:
                actions.append(Action(Kind.FORGET, link.crm_id, None, reason="left the sync scope"))
                continue
            actions.append(
                Action(
                    Kind.DELETE,
                    link.crm_id,
                    copy.id,
                    link_state=LinkState.LEAVING,
                    reason=f"left the sync scope: the {Side.BOOK.title} copy is removed "
                    f"(the {Side.CRM.title} contact is untouched)",
                )
            )
        elif link.state is LinkState.RESTORE_BOOK:
            if copy is not None:
                fields = {k: v for k, v in link.agreed.items() if copy.values.get(k) != v}
                actions.append(
                    Action(
                        Kind.UPDATE if fields else Kind.SKIP,
                        link.crm_id,
                        copy.id,
                        fields=fields,
                        agreed=dict(link.agreed),
                        link_state=LinkState.ACTIVE,
                        reason=f"{Side.BOOK.title} copy put back as {Side.CRM.title} has it: the "
                        "edit was not "
                        f"allowed in {Side.CRM.title}",
                    )
                )
                continue
            actions.append(
                Action(
                    Kind.RESTORE,
                    link.crm_id,
                    None,
                    fields=dict(link.agreed),
                    agreed=dict(link.agreed),
                    link_state=LinkState.ACTIVE,
                    reason=f"{Side.BOOK.title} copy restored: it was deleted without the right to "
                    "delete "
                    f"the {Side.CRM.title} contact, or the {Side.CRM.title} contact was edited "
                    "meanwhile",
                )
            )
    return actions


#: Deleting this few contacts never trips the guard, however small the folder.
MASS_DELETE_FLOOR = 3


class MassDeleteRefused(RuntimeError):
    """A run would delete too large a share of the linked contacts."""


def check_mass_delete(
    deletes: int,
    linked: int,
    max_ratio: float,
    *,
    allow: bool = False,
    dest: Side | None = None,
    folder_changed: str | None = None,
) -> None:
    """Refuse a run whose deletes exceed ``max_ratio`` of the links (e.g. a side gone empty).

    The message names the likely causes. ``folder_changed`` says why the address-book folder read
    may not be the one the sync is bound to: then the override is never suggested (following
    it would delete the contacts of the right folder for the emptiness of the wrong one).
    """
    if not 0.0 <= max_ratio <= 1.0:
        raise ValueError(f"max_delete_ratio must be between 0 and 1, got {max_ratio}")
    # Compare with a little slack: 0.29 * 100 is 28.999999999999996 in floating point.
    if allow or deletes < MASS_DELETE_FLOOR or deletes <= max_ratio * linked + 1e-9:
        return
    where = f" in {dest}" if dest else ""
    head = (
        f"refusing to delete {deletes} of {linked} linked contacts{where} "
        f"({deletes / max(linked, 1):.0%} > max_delete_ratio {max_ratio:.0%}). Nothing was "
        "deleted."
    )
    if folder_changed:
        raise MassDeleteRefused(
            f"{head} The {Side.BOOK.title} folder changed: {folder_changed}. Do not override the "
            "guard: "
            "an empty or other folder says nothing about the contacts of the folder this sync "
            "is bound to. Run again with the Singer state kept (without --full-refresh), so "
            "that the sync reads its folder by id (`contactsync status` shows its current name)."
        )
    raise MassDeleteRefused(
        f"{head} Likely causes: the {Side.BOOK.title} folder was renamed, deleted or replaced by "
        "a new "
        "empty one (see `contactsync status`), the sign-in or mailbox changed, the source "
        "connection or the scope settings changed, or the contacts were really deleted. Check "
        "these first; only if the contacts were really deleted in the source, run once with "
        "allow_mass_delete=true."
    )
