"""Pipeliner as the destination of a sync leg: the engine's ``Destination`` over the API client.

Writes go in batches of up to 100 (``batch-modify`` / ``batch-delete`` / ``batch-restore`` with
``rollback-method=1``), so one bad record never sinks the others. New contacts are owned by the
syncing user. The company goes to an existing Account of that name (case-insensitive) as primary
account when there is exactly one, else to ``quick_account_name``; Accounts are never created.
The job title goes where Pipeliner shows it: the primary account relation's position
(``account_position``) for a contact linked to an account, the Quick Account Position
(``position``) otherwise; a new primary account relation carries the job title.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contactsync.engine import WriteResult
from contactsync.fieldmap import (
    ACCOUNT_POSITION,
    from_pipeliner,
    pipeliner_job_title_field,
    to_pipeliner,
)
from contactsync.link import Side
from contactsync.match import emails, name_key
from contactsync.pipeliner_api import (
    BatchItemResult,
    PipelinerAuthError,
    PipelinerClient,
    PipelinerError,
    ResolvedUser,
)
from contactsync.pipeliner_records import parse_time
from contactsync.plan import Action, DestRecord, Kind, SourceRecord
from contactsync.scope import ContactSharing, SyncScope, can_delete, relation

log = logging.getLogger("contactsync.pipeliner")

#: Unlinked records searched for in one run after which listing the user's contacts once is
#: cheaper than searching on (up to three requests per record).
LIST_SCOPE_FROM = 60


class PipelinerDestination:
    """Reads and writes the syncing user's Pipeliner contacts for the engine."""

    side = Side.PIPELINER

    def __init__(self, client: PipelinerClient, user: ResolvedUser, scope: SyncScope) -> None:
        self.client = client
        self.user = user
        self.scope = scope
        self._searched = 0
        self._pool: dict[str, Mapping[str, Any]] | None = None
        #: Per contact read: linked to a primary account, and the job title Pipeliner shows.
        self._linked: dict[str, bool] = {}
        self._job_title: dict[str, str | None] = {}

    # -- reading -----------------------------------------------------------------------------

    def _dest_record(self, contact: Mapping[str, Any]) -> DestRecord:
        sharing = ContactSharing.from_api(contact)
        rel = relation(sharing, self.user.sync_user)
        values = from_pipeliner(contact)
        self._linked[contact["id"]] = bool(contact.get("primary_account"))
        self._job_title[contact["id"]] = values["job_title"]
        return DestRecord(
            contact["id"],
            values,
            modified=parse_time(contact.get("modified")),
            version=str(contact.get("revision")) if contact.get("revision") is not None else None,
            can_delete=can_delete(sharing, self.user.sync_user, rel),
        )

    def _in_scope(self, contact: Mapping[str, Any]) -> bool:
        if contact.get("is_deleted"):
            return False
        return self.scope.includes(relation(ContactSharing.from_api(contact), self.user.sync_user))

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        found = self.client.get_contacts(ids)
        return {i: self._dest_record(c) for i, c in found.items() if not c.get("is_deleted")}

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        """Contacts in the user's scope sharing an e-mail, else a name, with the records.

        Searching costs up to three requests per record (one per e-mail field), so once a run
        has searched for :data:`LIST_SCOPE_FROM` records, the user's contacts are listed once
        (a request per 100) and kept for the rest of the run.
        """
        self._searched += len(records)
        if self._pool is None and self._searched >= LIST_SCOPE_FROM:
            listed = self.client.iter_contacts(include_deleted=False)
            self._pool = {c["id"]: c for c in listed if self._in_scope(c)}
        found: dict[str, Mapping[str, Any]] = dict(self._pool or {})
        for record in records:
            if self._pool is None:
                found.update((c["id"], c) for c in self._search(record) if self._in_scope(c))
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
        self._learn_links([a.dest_id for a in actions if a.dest_id and a.kind is not Kind.DELETE])
        for index, action in enumerate(actions):
            if action.kind is Kind.DELETE:
                deletes.append((index, action.dest_id or ""))
            elif action.kind is Kind.RESTORE and action.dest_id:
                restores.append((index, action.dest_id))
            else:
                modify.append((index, self._item(action, action.dest_id)))

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
        for (index, item), outcome in zip(
            modify, self._batch(self.client.batch_modify, items), strict=True
        ):
            result = self._result(actions[index], outcome, item.get("id"))
            results[index] = result
            if result.ok and actions[index].kind is not Kind.DELETE:
                self._link_account(actions[index], result.dest_id)
        # What was read for this batch has served (kept, it would grow with the run).
        self._linked.clear()
        self._job_title.clear()
        return [results[i] for i in range(len(actions))]

    def _learn_links(self, ids: Sequence[str]) -> None:
        """Whether these contacts have a primary account, for those not read in this run yet
        (a restored contact, say): it decides which field holds their job title."""
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
        full = action.kind in (Kind.CREATE, Kind.RESTORE) or target is None
        item: dict[str, Any] = to_pipeliner(action.fields, None if full else action.fields.keys())
        if ACCOUNT_POSITION in item:
            field = pipeliner_job_title_field(bool(target and self._linked.get(target)))
            item[field] = item.pop(ACCOUNT_POSITION)
        if target:
            item["id"] = target
        else:
            item["owner_id"] = self.user.client["id"]
        return item

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

    @staticmethod
    def _result(action: Action, outcome: BatchItemResult, known_id: str | None) -> WriteResult:
        if outcome.ok:
            return WriteResult(action.source_id, True, outcome.id or known_id)
        return WriteResult(action.source_id, False, known_id, error=outcome.error)

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
