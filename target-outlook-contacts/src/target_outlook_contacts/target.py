"""The target: contacts in Graph's vocabulary, written into one personal folder by the engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from contactsync_singer import LegTarget

from contactsync import settings as cs
from contactsync.mapping import Direction
from contactsync.outlook.auth import AUTH_SETTINGS_SCHEMA
from contactsync.outlook.destination import OutlookDestination
from contactsync.outlook.folders import bound_folder
from contactsync.outlook.graph_api import GraphClient
from contactsync.outlook.records import source_record
from contactsync.pipeliner.scope import SyncScope
from contactsync.sync.engine import Destination, WriteResult
from contactsync.sync.link import Side
from contactsync.sync.merge import ConflictPolicy
from contactsync.sync.plan import Action, DestRecord, SourceRecord


class FolderToCreate:
    """A dry run's destination when the folder does not exist yet: it holds no contact, so
    every record plans as a create; nothing is ever written to it."""

    side = Side.BOOK

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        return {}

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        return []

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        raise RuntimeError("a dry run writes nothing (and this folder does not exist)")


class TargetOutlookContacts(LegTarget):
    """Creates, updates and deletes contacts in one personal Outlook folder from any tap.

    Records are keyed by ``_source_id`` (e.g. a Pipeliner contact id; linked through the
    ledger) or by the Graph ``id``. Only changed fields are sent, merged into the contact's
    current arrays and addresses; every copy carries the Pipeliner id stamp.
    """

    name = "target-outlook-contacts"
    source_side = Side.CRM
    partner_mapping = Direction.PIPELINER_TO_OUTLOOK
    config_jsonschema = cs.schema(
        AUTH_SETTINGS_SCHEMA,
        cs.SYNC_USER,
        {"space_id": cs.PIPELINER_CONNECTION["space_id"]},
        cs.LINK_PARTITION,
        cs.GRAPH_CONNECTION,
        cs.SYNC_SCOPE,
        cs.SYNC_WRITES,
        cs.HTTP_LIMITS,
        cs.PROGRESS,
        required=("authority", "client_id", "space_id"),
    )

    @property
    def two_way(self) -> bool:
        sync_type = self.config.get("sync_type") or "two_way_your_contacts"
        return SyncScope.parse(sync_type, self.config.get("sync_option")).two_way

    def setting_problems(self) -> list[str]:
        problems = super().setting_problems()
        policy = self.config.get("conflict_policy")
        try:
            crm_wins = ConflictPolicy.parse(policy) is ConflictPolicy.CRM_WINS
        except ValueError as exc:
            return [*problems, str(exc)]
        if not self.two_way and not crm_wins:
            problems.append(
                f"conflict_policy {policy!r} does not apply to a one-way sync "
                f"({self.config.get('sync_type')}): Pipeliner's values always win there; "
                "remove conflict_policy (or CONTACTSYNC_CONFLICT_POLICY) for this job"
            )
        return problems

    @cached_property
    def graph(self) -> GraphClient:
        return cs.graph_client(self.config)

    def build_destination(self) -> Destination:
        """The folder this sync is bound to (by id: a renamed folder is followed, a deleted
        one stops the run), or on the first run the one the ``folder`` setting names."""
        folder = bound_folder(self.graph, self.partition_ledger, self.config)
        if folder is None:
            self.logger.info(
                "dry run: folder %r does not exist yet; a real run creates it (create_folder)",
                self.config.get("folder") or "Pipeliner",
            )
            return FolderToCreate()
        return OutlookDestination(self.graph, folder)

    def source_record(self, record: Mapping[str, Any]) -> SourceRecord:
        return source_record(record)


if __name__ == "__main__":
    TargetOutlookContacts.cli()
