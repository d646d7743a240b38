"""The tap: one stream, ``contacts``, incremental on ``modified``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from contactsync_singer.plugin import ContactsyncPlugin
from singer_sdk import Stream, Tap

from contactsync import settings as cs
from contactsync.pipeliner_api import PipelinerClient, ResolvedUser
from contactsync.pipeliner_records import CONTACT_SCHEMA, tap_record
from contactsync.scope import SyncScope


class ContactsStream(Stream):
    """Contacts changed since the bookmark, deleted ones as tombstones (``_sdc_deleted_at``).

    Read in ``modified`` order with the primary account and sharing expanded in the same
    request, so each page of 100 costs one request. After a complete first read comes an
    ACTIVATE_VERSION message: the records before it are every contact of the space.
    """

    name = "contacts"
    primary_keys = ("id",)
    replication_key = "modified"
    is_sorted = True
    schema = CONTACT_SCHEMA

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        tap: TapPipelinerContacts = self._tap  # type: ignore[assignment]
        since = self.get_starting_timestamp(context)
        state = self.get_context_state(context)
        scope = tap.sync_scope
        if since is not None and state.get("sync_scope") not in (None, scope):
            # Wider: contacts that just entered the scope were not modified, so only a full
            # read finds them; narrower: the full read lets the mapper mark what left it.
            self.logger.info(
                "sync scope changed from %s to %s: reading every contact again",
                state["sync_scope"],
                scope,
            )
            since = None
            for key in ("replication_key_value", "progress_markers"):
                state.pop(key, None)  # the bookmark starts over with the full read
        state["sync_scope"] = scope
        user = tap.sync_user.sync_user
        for contact in tap.client.iter_contacts(modified_since=since, include_deleted=True):
            yield tap_record(contact, user)
        if since is None and tap.client.last_read_complete:
            # Every contact was listed: tell the target (see the README).
            self._write_activate_version_message(int(time.time() * 1000))


class TapPipelinerContacts(ContactsyncPlugin, Tap):
    """Pipeliner CRM contacts, with the syncing user's relation to each (owner, editor, …)."""

    name = "tap-pipeliner-contacts"
    progress_what = "contacts read"
    config_jsonschema = cs.schema(
        cs.PIPELINER_CONNECTION,
        cs.SYNC_USER,
        cs.SYNC_SCOPE,
        {
            "start_date": {
                "type": ["string"],
                "format": "date-time",
                "description": "Read contacts modified since then on the first run (default: all).",
            },
            "page_size": {
                "type": ["integer"],
                "minimum": 1,
                "maximum": 100,
                "default": 100,
                "description": "Contacts per request (the API allows at most 100).",
            },
        },
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

    @property
    def sync_scope(self) -> str:
        """The configured scope, kept in the state so that a change re-reads everything."""
        sync_type = self.config.get("sync_type") or "two_way_your_contacts"
        scope = SyncScope.parse(sync_type, self.config.get("sync_option"))
        return f"{scope.sync_type}/{scope.option or '-'}"

    def discover_streams(self) -> list[Stream]:
        return [ContactsStream(self)]


if __name__ == "__main__":
    TapPipelinerContacts.cli()
