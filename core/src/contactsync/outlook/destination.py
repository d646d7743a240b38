"""The Outlook folder as the destination of a sync leg: the engine's ``Destination`` over Graph.

Every write goes through ``$batch`` (20 per request, one batch in flight per mailbox). An update
is merged into the contact's current arrays and addresses (Graph replaces them whole), carries
``If-Match`` with the changeKey we read, and always the Pipeliner stamp; a 412 makes the engine
read the contact again and re-plan it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from contactsync.outlook.graph_api import BatchResult, Folder, GraphClient
from contactsync.outlook.projection import GRAPH_PROPERTY, from_graph, pipeliner_stamp, to_graph
from contactsync.sync.engine import WriteResult
from contactsync.sync.link import Side
from contactsync.sync.match import emails, name_key
from contactsync.sync.plan import Action, DestRecord, Kind, SourceRecord
from contactsync.sync.record import parse_time

log = logging.getLogger("contactsync.outlook")

#: Graph names a refused property in its error message: ``The property 'jobTitle' …``.
_NAMED_PROPERTY = re.compile(r"property '(\w+)'")

#: With this many unlinked records in one batch, listing the folder once beats searching.
LIST_FOLDER_FROM = 5


class OutlookDestination:
    """Reads and writes one personal contacts folder for the engine."""

    side = Side.BOOK

    def __init__(self, graph: GraphClient, folder: Folder) -> None:
        self.graph = graph
        self.folder = folder
        self._current: dict[str, Mapping[str, Any]] = {}
        self._pool: dict[str, Mapping[str, Any]] | None = None

    # -- reading -----------------------------------------------------------------------------

    def _dest_record(self, contact: Mapping[str, Any], moved_to: str | None = None) -> DestRecord:
        if moved_to is None:  # only a copy in the folder is ever written
            self._current[contact["id"]] = contact
        return DestRecord(
            contact["id"],
            from_graph(contact),
            modified=parse_time(contact.get("lastModifiedDateTime")),
            version=contact.get("changeKey"),
            stamp=pipeliner_stamp(contact),
            moved_to=moved_to,
        )

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        """The linked copies, read by id in the whole mailbox: one filed into another folder is
        reported there (``moved_to``), never taken for missing (which would copy it again) nor
        written (a contact URL's folder segment does not scope a PATCH or DELETE: the
        ``parentFolderId`` read here does)."""
        found = self.graph.locate_contacts(ids)
        return {
            i: self._dest_record(
                where.contact,
                None if where.folder.id == self.folder.id else where.folder.display_name,
            )
            for i, where in found.items()
        }

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        """Unlinked copies: our stamp, a shared e-mail, or (for names) the whole folder.

        We search Graph by stamp and e-mail only, so a record that neither finds lists the
        folder (once per run) for its name. Without that, a contact whose create reached
        Pipeliner but whose link was lost with a killed run would be copied to Outlook again
        beside the Outlook contact it came from.
        """
        if self._pool is None and len(records) >= LIST_FOLDER_FROM:
            self._list_folder()
        if self._pool is not None:
            return [self._dest_record(c) for c in self._pool.values()]
        found: dict[str, Mapping[str, Any]] = {}
        for record in records:
            hits = list(self.graph.find_by_stamp(self.folder, record.id))
            for address in sorted(emails(record.values or {})):
                hits += self.graph.find_by_email(self.folder, address)
            if not hits and name_key(record.values or {}) is not None:
                return [self._dest_record(c) for c in self._list_folder().values()]
            found.update((c["id"], c) for c in hits)
        return [self._dest_record(c) for c in found.values()]

    def _list_folder(self) -> dict[str, Mapping[str, Any]]:
        self._pool = {c["id"]: c for c in self.graph.list_contacts(self.folder)}
        return self._pool

    # -- writing -----------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        creates: list[int] = []
        updates: list[int] = []
        deletes: list[int] = []
        for index, action in enumerate(actions):
            if action.kind is Kind.DELETE:
                deletes.append(index)
            elif action.kind in (Kind.CREATE, Kind.RESTORE) or action.dest_id is None:
                creates.append(index)
            else:
                updates.append(index)
        results: dict[int, WriteResult] = {}
        # A contact URL names a folder, but whether Graph scopes a PATCH or DELETE by it is not
        # documented: each copy is checked to be in the folder (parentFolderId) before a write.
        elsewhere = self._not_in_folder([actions[i] for i in (*updates, *deletes)])
        for i in (*updates, *deletes):
            why = elsewhere.get(actions[i].dest_id or "")
            if why is not None:
                results[i] = WriteResult(actions[i].source_id, False, actions[i].dest_id, error=why)
        updates = [i for i in updates if i not in results]
        deletes = [i for i in deletes if i not in results]
        if creates:
            results.update(self._written(actions, creates, self._create_all))
        if updates:
            results.update(self._written(actions, updates, self._update_all))
        if deletes:
            ids = [actions[i].dest_id or "" for i in deletes]
            for i, outcome in zip(
                deletes, self.graph.delete_contacts(self.folder, ids), strict=True
            ):
                results[i] = self._result(actions[i], outcome)
        # The copies read for this batch have served: keeping them would hold every contact
        # of the run in memory (a stale 412 is read again anyway).
        self._current.clear()
        return [results[i] for i in range(len(actions))]

    def _not_in_folder(self, actions: Sequence[Action]) -> dict[str, str]:
        """Why each of these copies may not be written here, by id: it was moved to another
        folder. A copy read in the folder for this batch (``_current``) is not read again; a
        delete always is (it is held to the end of the run). Gone altogether is no reason:
        a delete of it is done, an update fails as before."""
        unread = [
            a.dest_id
            for a in actions
            if a.dest_id and (a.kind is Kind.DELETE or a.dest_id not in self._current)
        ]
        if not unread:
            return {}
        why: dict[str, str] = {}
        for contact_id, where in self.graph.locate_contacts(unread).items():
            if where.folder.id == self.folder.id:
                self._current.setdefault(contact_id, where.contact)
            else:
                why[contact_id] = (
                    f"moved out of the folder (to {where.folder.display_name!r}): not written there"
                )
        return why

    def _create_all(self, actions: Sequence[Action]) -> list[BatchResult]:
        bodies = [to_graph(a.fields, stamp=a.source_id) for a in actions]
        return list(self.graph.create_contacts(self.folder, bodies))

    def _update_all(self, actions: Sequence[Action]) -> list[BatchResult]:
        return list(self.graph.update_contacts(self.folder, [self._patch(a) for a in actions]))

    def _written(
        self,
        actions: Sequence[Action],
        indices: Sequence[int],
        write: Callable[[Sequence[Action]], list[BatchResult]],
    ) -> dict[int, WriteResult]:
        """Write ``actions[indices]``; one refused for properties Graph names in its error (a
        value longer than Outlook accepts, say) is written again without them, once, so that
        one bad field does not block the others. The refused keys and Outlook's own values of
        them (which stay) go to the engine, to report once and to pin."""
        chosen = [actions[i] for i in indices]
        outcomes = write(chosen)
        results = {i: self._result(a, o) for i, a, o in zip(indices, chosen, outcomes, strict=True)}
        again: list[tuple[int, Action, dict[str, str]]] = []
        for i, action, outcome in zip(indices, chosen, outcomes, strict=True):
            if outcome.ok or outcome.status != 400:
                continue
            keys = {
                key: outcome.error or "refused"
                for name in _NAMED_PROPERTY.findall(outcome.error or "")
                for key, prop in GRAPH_PROPERTY.items()
                if prop == name and key in action.fields
            }
            rest = {k: v for k, v in action.fields.items() if k not in keys}
            if keys and rest:
                again.append((i, replace(action, fields=rest), keys))
        if again:
            retried = write([a for _, a, _ in again])
            for (i, action, keys), outcome in zip(again, retried, strict=True):
                result = self._result(action, outcome)
                if result.ok:
                    current = self._current.get(action.dest_id or "")
                    values = from_graph(current) if current else {}
                    kept = {k: values.get(k) for k in keys}
                    result = replace(result, refused=keys, kept=kept)
                results[i] = result
        return results

    def _patch(self, action: Action) -> tuple[str, dict[str, Any], str | None]:
        """Only the changed fields, merged into the current arrays, stamped, with If-Match."""
        contact_id = action.dest_id or ""
        current = self._current.get(contact_id)
        body = to_graph(
            action.fields,
            current,
            action.fields.keys(),
            stamp=action.source_id,
            agreed=action.agreed,
        )
        return contact_id, body, current.get("changeKey") if current else None

    def _result(self, action: Action, outcome: BatchResult) -> WriteResult:
        body = outcome.body or {}
        if outcome.ok:
            return WriteResult(
                action.source_id, True, outcome.id or action.dest_id, version=body.get("changeKey")
            )
        stale = outcome.status == 412
        return WriteResult(
            action.source_id,
            False,
            action.dest_id,
            error=outcome.error,
            stale=stale,
            permanent=outcome.status == 400,  # the data was refused: unchanged, it stays so
        )
