"""Pipeliner as the destination of a sync leg: the engine's ``Destination`` over the API client.

Writes go in batches of up to 100 (``batch-modify`` / ``batch-delete`` / ``batch-restore`` with
``rollback-method=1``), so one bad record never sinks the others. New contacts are owned by the
syncing user. The company goes to an existing Account of that name (case-insensitive) as primary
account when there is exactly one, else to ``quick_account_name``; Accounts are never created.
The job title goes where Pipeliner shows it: the primary account relation's position
(``account_position``) for a contact linked to an account, the Quick Account Position
(``position``) otherwise; a new primary account relation carries the job title.

The application keys reach the whole space, so Pipeliner never refuses one of our writes: every
contact read here carries the syncing user's rights on it (``contactsync.pipeliner.scope``, see
docs/access-rules.md), the plan acts on them, and :meth:`PipelinerDestination.apply` checks them
once more at the write (the last line of defence: a write without the right fails by name).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from contactsync.pipeliner.api import (
    BatchItemResult,
    PipelinerAuthError,
    PipelinerClient,
    PipelinerError,
    ResolvedUser,
)
from contactsync.pipeliner.projection import (
    ACCOUNT_POSITION,
    FIELD_NAMES,
    QUICK_POSITION,
    from_pipeliner,
    pipeliner_job_title_field,
    to_pipeliner,
)
from contactsync.pipeliner.scope import (
    AccessLevel,
    ContactSharing,
    Relation,
    SyncScope,
    SyncType,
    can_create,
    can_delete,
    can_edit,
    relation,
)
from contactsync.sync.engine import WriteResult
from contactsync.sync.link import Side
from contactsync.sync.match import emails, name_key
from contactsync.sync.plan import Action, DestRecord, Kind, SourceRecord
from contactsync.sync.record import parse_time

log = logging.getLogger("contactsync.pipeliner")

#: Pipeliner names the refused field of a validation error in brackets: ``[first_name] …``.
_NAMED_FIELD = re.compile(r"\[([a-z][a-z0-9_]*)(?:\]|\.)")
#: The table key of each Pipeliner field we write (the job title has two, by account link).
_TABLE_KEY: dict[str, str] = {
    **{name: key for key, name in FIELD_NAMES.items()},
    QUICK_POSITION: "job_title",
}


def _field_of(key: str, item: Mapping[str, Any]) -> str:
    """The Pipeliner field that holds ``key`` in a batch item (the job title moves)."""
    if key == "job_title" and QUICK_POSITION in item:
        return QUICK_POSITION
    return FIELD_NAMES[key]


#: Unlinked records searched for in one run after which listing the user's contacts once is
#: cheaper than searching on (up to three requests per record).
LIST_SCOPE_FROM = 60


class PipelinerDestination:
    """Reads and writes the syncing user's Pipeliner contacts for the engine."""

    side = Side.CRM

    def __init__(self, client: PipelinerClient, user: ResolvedUser, scope: SyncScope) -> None:
        self.client = client
        self.user = user
        self.scope = scope
        self._searched = 0
        self._pool: dict[str, Mapping[str, Any]] | None = None
        #: The rights of each contact as last read in this run, for the check at the write.
        self._read: dict[str, DestRecord] = {}
        self._owners: dict[str, str] = {}
        #: Per contact read: linked to a primary account, and the job title Pipeliner shows.
        self._linked: dict[str, bool] = {}
        self._job_title: dict[str, str | None] = {}
        self._values: dict[str, Mapping[str, str | None]] = {}

    @property
    def who(self) -> str:
        """The syncing user as the report names them."""
        return str(self.user.client.get("email") or self.user.client.get("id"))

    # -- reading -----------------------------------------------------------------------------

    def _dest_record(self, contact: Mapping[str, Any]) -> DestRecord:
        sharing = ContactSharing.from_api(contact)
        user = self.user.sync_user
        rel = relation(sharing, user)
        values = from_pipeliner(contact)
        self._linked[contact["id"]] = bool(contact.get("primary_account"))
        self._job_title[contact["id"]] = values["job_title"]
        self._values[contact["id"]] = values
        record = DestRecord(
            contact["id"],
            values,
            modified=parse_time(contact.get("modified")),
            version=str(contact.get("revision")) if contact.get("revision") is not None else None,
            can_delete=can_delete(sharing, user, rel),
            edit_refusal=None if can_edit(sharing, user, rel) else self._why_not_editable(sharing),
            scope_exit=None if self.scope.includes(rel) else self._why_out_of_scope(sharing, rel),
        )
        self._read[record.id] = record
        return record

    def _why_not_editable(self, sharing: ContactSharing) -> str:
        if sharing.is_archived:
            return f"the Pipeliner contact is archived, so {self.who} cannot edit it"
        if self.user.sync_user.role.level is AccessLevel.READONLY:
            return f"{self.who} has read-only access to Pipeliner contacts"
        return f"{self.who} can no longer edit this contact"

    def _why_out_of_scope(self, sharing: ContactSharing, rel: Relation) -> str:
        owner = self._owner(sharing.owner_id)
        if self.scope.sync_type is SyncType.ONE_WAY_ALL_CONTACTS:
            return f"{self.who} can no longer see this contact (owner {owner})"
        if rel is Relation.EDITOR:  # owner option: an editor is not in scope
            return f"{self.who} is an editor, not the owner (owner {owner})"
        seen = "" if rel is Relation.VIEWER else " nor see"
        return f"{self.who} can no longer edit{seen} this contact (owner {owner})"

    def _owner(self, client_id: str) -> str:
        """The owner's e-mail (one read per owner and run; their id if it cannot be read)."""
        if client_id not in self._owners:
            try:
                found = self.client.get_client(client_id)
            except PipelinerError:
                found = None
            self._owners[client_id] = str((found or {}).get("email") or client_id)
        return self._owners[client_id]

    def _visible(self, contact: Mapping[str, Any]) -> bool:
        """Live and visible to the user: a candidate to match (whether in scope or not)."""
        if contact.get("is_deleted"):
            return False
        return relation(ContactSharing.from_api(contact), self.user.sync_user) is not Relation.NONE

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        found = self.client.get_contacts(ids)
        return {i: self._dest_record(c) for i, c in found.items() if not c.get("is_deleted")}

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        """Contacts the user can see sharing an e-mail, else a name, with the records.

        Every visible contact is a candidate, in scope or not: a match the user may not edit is
        reported by the plan instead of being copied as a second Pipeliner contact.

        Searching costs up to three requests per record (one per e-mail field), so once a run
        has searched for :data:`LIST_SCOPE_FROM` records, the user's contacts are listed once
        (a request per 100) and kept for the rest of the run.
        """
        self._searched += len(records)
        if self._pool is None and self._searched >= LIST_SCOPE_FROM:
            listed = self.client.iter_contacts(include_deleted=False)
            self._pool = {c["id"]: c for c in listed if self._visible(c)}
        found: dict[str, Mapping[str, Any]] = dict(self._pool or {})
        for record in records:
            if self._pool is None:
                found.update((c["id"], c) for c in self._search(record) if self._visible(c))
            # A stamp names the contact outright: in scope or not, it is the counterpart.
            if record.stamp and record.stamp not in found:
                stamped = self.client.get_contact(record.stamp)
                if stamped and not stamped.get("is_deleted"):
                    found[stamped["id"]] = stamped
        return [self._dest_record(c) for c in found.values()]

    def _search(self, record: SourceRecord) -> list[Mapping[str, Any]]:
        values = record.values or {}
        hits: list[Mapping[str, Any]] = []
        for address in sorted(emails(values)):
            hits += self.client.find_contacts(email=address)
        if not hits and name_key(values) is not None:
            hits = self.client.find_contacts(
                first_name=values.get("first_name"), last_name=values.get("last_name")
            )
        return hits

    # -- writing -----------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        results: dict[int, WriteResult] = {}
        modify: list[tuple[int, dict[str, Any]]] = []
        deletes: list[tuple[int, str]] = []
        restores: list[tuple[int, str]] = []
        # Rights are checked at the write on what was read in this batch: a delete the engine
        # held back to the end of the run (the mass-delete guard) is read again here.
        self._learn_links([a.dest_id for a in actions if a.dest_id])
        for index, action in enumerate(actions):
            refusal = self._refusal(action)
            if refusal:
                log.warning("not written: %s %s: %s", action.kind, action.dest_id, refusal)
                results[index] = WriteResult(
                    action.source_id, False, action.dest_id, error=refusal, permanent=True
                )
            elif action.kind is Kind.DELETE:
                deletes.append((index, action.dest_id or ""))
            elif action.kind is Kind.RESTORE and action.dest_id:
                restores.append((index, action.dest_id))
            else:
                modify.append((index, self._item(action, action.dest_id)))

        restores = self._restorable(restores, actions, modify)
        for (index, contact_id), outcome in zip(
            restores, self._batch(self.client.batch_restore, [i for _, i in restores]), strict=True
        ):
            if outcome.ok:
                modify.append((index, self._item(actions[index], contact_id)))
            else:  # gone for good: bring it back as a new contact
                log.info("could not restore Pipeliner contact %s (%s)", contact_id, outcome.error)
                modify.append((index, self._item(actions[index], None)))
        for (index, contact_id), outcome in zip(
            deletes, self._batch(self.client.batch_delete, [i for _, i in deletes]), strict=True
        ):
            results[index] = self._result(actions[index], outcome, contact_id)

        items = [item for _, item in modify]
        outcomes = self._batch(self.client.batch_modify, items)
        refused = self._without_refused_fields(modify, outcomes)
        for (index, item), outcome in zip(modify, outcomes, strict=True):
            result = self._result(actions[index], outcome, item.get("id"))
            if result.ok and index in refused:
                result = replace(result, **refused[index])
            results[index] = result
            if result.ok and actions[index].kind is not Kind.DELETE:
                self._link_account(actions[index], result.dest_id)
        # What was read for this batch has served (kept, it would grow with the run).
        self._linked.clear()
        self._job_title.clear()
        self._read.clear()
        self._values.clear()
        return [results[i] for i in range(len(actions))]

    def _refusal(self, action: Action) -> str | None:
        """Why the user may not make this write now (None: they may). The plan already acted on
        the rights it read; this is the check at the write itself."""
        if action.kind is Kind.CREATE or (action.kind is Kind.RESTORE and not action.dest_id):
            if not can_create(self.user.sync_user):
                return f"{self.who}'s role may not create Pipeliner contacts"
            if not (action.fields.get("first_name") or action.fields.get("last_name")):
                # Pipeliner contacts are people: a first or last name is required. Making one up
                # from the company or the e-mail would write a name nobody typed (and send it
                # back to Outlook); an entry with only a company is an Account in Pipeliner.
                return (
                    "has no first or last name, which a Pipeliner contact needs: add a name in "
                    "Outlook to sync it (an entry with only a company belongs to an Account in "
                    "Pipeliner)"
                )
            return None
        if action.kind is Kind.RESTORE:
            return None  # restoring is checked on the deleted contact itself, in apply
        read = self._read.get(action.dest_id or "")
        if read is None:
            return f"{action.dest_id} was not read before the write; its rights are unknown"
        if action.kind is Kind.DELETE:
            return None if read.can_delete else f"{self.who} may not delete this contact"
        return read.scope_exit or read.edit_refusal

    def _learn_links(self, ids: Sequence[str]) -> None:
        """Read the contacts of this batch not read yet (a restored contact, a delete held back
        to the end of the run): their rights, and whether a primary account decides which field
        holds their job title."""
        unknown = [i for i in dict.fromkeys(ids) if i not in self._linked]
        if not unknown:
            return
        try:
            found = self.client.get_contacts(unknown)
        except PipelinerAuthError:
            raise
        except PipelinerError as exc:  # written as unlinked: Pipeliner answers per item
            log.warning("could not read %d contacts before writing: %s", len(unknown), exc)
            return
        for contact in found.values():
            self._dest_record(contact)

    def _item(self, action: Action, target: str | None) -> dict[str, Any]:
        """The batch-modify item: only the fields to write; creates are owned by the user."""
        # Exactly the fields of the action: a create or restore carries every key it knows (a
        # key the source did not carry is left out, never cleared); an update the changed ones.
        item: dict[str, Any] = to_pipeliner(action.fields)
        if ACCOUNT_POSITION in item:
            field = pipeliner_job_title_field(bool(target and self._linked.get(target)))
            item[field] = item.pop(ACCOUNT_POSITION)
        if target:
            item["id"] = target
        else:
            item["owner_id"] = self.user.client["id"]
        return item

    def _restorable(
        self,
        restores: list[tuple[int, str]],
        actions: Sequence[Action],
        modify: list[tuple[int, dict[str, Any]]],
    ) -> list[tuple[int, str]]:
        """The deleted contacts the user may bring back; the others come back as new contacts
        of the user's own (the Outlook edit that asked for the restore is not lost)."""
        allowed: list[tuple[int, str]] = []
        for index, contact_id in restores:
            found = self.client.get_contact(contact_id)
            sharing = ContactSharing.from_api(found) if found else None
            if sharing is not None and can_edit(sharing, self.user.sync_user):
                allowed.append((index, contact_id))
            else:
                log.info("not restoring Pipeliner contact %s: %s", contact_id, "no edit right")
                modify.append((index, self._item(actions[index], None)))
        return allowed

    @staticmethod
    def _batch(call: Any, items: Sequence[Any]) -> list[BatchItemResult]:
        """One batch call; a request that failed for good fails each of its items (they are
        retried by the next run) instead of the whole run."""
        if not items:
            return []
        try:
            return list(call(items))
        except PipelinerAuthError:
            raise  # no item can succeed: stop the run with the message that says what to fix
        except PipelinerError as exc:
            log.warning("Pipeliner batch of %d failed: %s", len(items), exc)
            return [BatchItemResult(i, False, None, str(exc)) for i in range(len(items))]

    def _without_refused_fields(
        self, modify: list[tuple[int, dict[str, Any]]], outcomes: list[BatchItemResult]
    ) -> dict[int, dict[str, Any]]:
        """One bad field does not block the others: an update refused for fields it names
        (Pipeliner's ``[field] message``) is sent again without them, once. Its outcome replaces
        the first; the refused keys (and Pipeliner's values of them, which stay) are returned
        per action index, for the engine to report and to put back into the Outlook copy."""
        again: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        for position, ((_, item), outcome) in enumerate(zip(modify, outcomes, strict=True)):
            if outcome.ok or outcome.status not in (400, 422) or "id" not in item:
                continue
            keys = {
                key: outcome.error or "refused"
                for name in _NAMED_FIELD.findall(outcome.error or "")
                if (key := _TABLE_KEY.get(name)) and _field_of(key, item) in item
            }
            rest = {k: v for k, v in item.items() if k not in {_field_of(x, item) for x in keys}}
            if keys and set(rest) - {"id"}:
                again.append((position, rest, keys))
        if not again:
            return {}
        refused: dict[int, dict[str, Any]] = {}
        retried = self._batch(self.client.batch_modify, [rest for _, rest, _ in again])
        for (position, _, keys), outcome in zip(again, retried, strict=True):
            outcomes[position] = outcome
            if outcome.ok:
                index, item = modify[position]
                current = self._values.get(item["id"], {})
                refused[index] = {"refused": keys, "kept": {k: current.get(k) for k in keys}}
        return refused

    @staticmethod
    def _result(action: Action, outcome: BatchItemResult, known_id: str | None) -> WriteResult:
        if outcome.ok:
            return WriteResult(action.source_id, True, outcome.id or known_id)
        # Refused for its data: retrying the same record cannot help (a 5xx or a dropped
        # connection can).
        permanent = outcome.status in (400, 422)
        return WriteResult(
            action.source_id, False, known_id, error=outcome.error, permanent=permanent
        )

    def _link_account(self, action: Action, contact_id: str | None) -> None:
        """Make the Account named like the company the primary account, if exactly one exists.

        The new relation carries the job title: once linked, Pipeliner shows the relation's
        position as the contact's job title (``account_position``).
        """
        company = action.fields.get("company")
        if not company or not contact_id:
            return
        if "job_title" in action.fields:
            job_title = action.fields["job_title"]
        else:
            job_title = self._job_title.get(action.dest_id or contact_id)
        try:
            account_id = self.client.find_accounts([company]).get(company.casefold())
            if account_id:
                self.client.set_primary_account(contact_id, account_id, position=job_title)
                self._linked[contact_id] = True
        except PipelinerError as exc:  # the company is in quick_account_name already
            log.warning("could not link contact %s to account %r: %s", contact_id, company, exc)
