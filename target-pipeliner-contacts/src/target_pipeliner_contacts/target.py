"""The target: contacts in Pipeliner's vocabulary, written through the contactsync engine."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from contactsync_singer import LegTarget

from contactsync import settings as cs
from contactsync.mapping import Direction
from contactsync.pipeliner.api import PipelinerClient, ResolvedUser
from contactsync.pipeliner.destination import PipelinerDestination
from contactsync.pipeliner.records import source_record
from contactsync.pipeliner.scope import SyncScope
from contactsync.sync.link import Side
from contactsync.sync.plan import SourceRecord


class TargetPipelinerContacts(LegTarget):
    """Creates, updates and deletes Pipeliner contacts from any tap's contact records.

    Records are keyed by ``_source_id`` (e.g. an Outlook contact id; linked through the ledger),
    by the Pipeliner ``id``, or else by their SCHEMA's ``key_properties``; another tap's records
    are an import, linked apart from the sync. Only fields that changed are written, merged
    field by field.
    """

    name = "target-pipeliner-contacts"
    source_side = Side.BOOK
    partner_mapping = Direction.OUTLOOK_TO_PIPELINER
    config_jsonschema = cs.schema(
        cs.PIPELINER_CONNECTION,
        cs.SYNC_USER,
        cs.LINK_PARTITION,
        cs.SYNC_SCOPE,
        cs.SYNC_WRITES,
        cs.HTTP_LIMITS,
        cs.PROGRESS,
        required=("service_url", "space_id", "api_username", "api_password"),
    )

    @cached_property
    def client(self) -> PipelinerClient:
        return PipelinerClient(cs.pipeliner_settings(self.config))

    @cached_property
    def sync_user(self) -> ResolvedUser:
        return cs.resolve_sync_user(self.client, self.config)

    def build_destination(self) -> PipelinerDestination:
        scope = SyncScope.parse(
            self.config.get("sync_type") or "two_way_your_contacts",
            self.config.get("sync_option"),
        )
        return PipelinerDestination(self.client, self.sync_user, scope)

    def source_record(self, record: Mapping[str, Any]) -> SourceRecord:
        return source_record(record)


if __name__ == "__main__":
    TargetPipelinerContacts.cli()
