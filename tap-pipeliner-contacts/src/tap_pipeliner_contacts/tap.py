"""The tap: one stream, ``contacts``, incremental on ``modified``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from contactsync_singer.listing import ListingStream
from contactsync_singer.plugin import ContactsyncPlugin
from singer_sdk import Stream, Tap

from contactsync import settings as cs
from contactsync.pipeliner import full_read
from contactsync.pipeliner.api import PipelinerClient, ResolvedUser
from contactsync.pipeliner.records import CONTACT_SCHEMA, tap_record
from contactsync.pipeliner.scope import SyncScope, scope_fingerprint


class ContactsStream(ListingStream):
    """Contacts changed since the bookmark, deleted ones as tombstones (``_sdc_deleted_at``).

    Read in ``modified`` order with the primary account and sharing expanded in the same
    request, so each page of 100 costs one request. Some runs read every contact instead
    (``contactsync.pipeliner.full_read``: the first run, a changed scope, the periodic
    reconcile); such a read follows the Singer convention for a full table: ACTIVATE_VERSION
    first, every RECORD stamped with that version, and ACTIVATE_VERSION again once the listing
    is complete. Standard loaders then keep every live row, and our targets take a listing that
    ended as complete.
    """

    name = "contacts"
    primary_keys = ("id",)
    replication_key = "modified"
    is_sorted = True
    schema = CONTACT_SCHEMA

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        tap: TapPipelinerContacts = self.plugin  # type: ignore[assignment]
        since = self.get_starting_timestamp(context)
        state = self.get_context_state(context)
        user = tap.sync_user.sync_user
        now = datetime.now(UTC)
        reason = full_read.full_read_reason(
            state,
            has_bookmark=since is not None,
            scope=tap.sync_scope,
            fingerprint=scope_fingerprint(user),
            interval_seconds=tap.full_read_interval,
            now=now,
        )
        if reason is not None:
            self.logger.info("reading every contact in Pipeliner: %s", reason)
            since = None
            for key in ("replication_key_value", "progress_markers"):
                state.pop(key, None)  # the bookmark starts over with the full read
        state[full_read.SCOPE_KEY] = tap.sync_scope
        state[full_read.FINGERPRINT_KEY] = scope_fingerprint(user)
        version = self.begin_listing() if since is None else None
        for contact in tap.client.iter_contacts(modified_since=since, include_deleted=True):
            yield tap_record(contact, user)
        if version is not None and tap.client.last_read_complete:
            self.activate_version(version)  # the listing is complete
            state[full_read.LAST_FULL_READ_KEY] = full_read.stamp(now)


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
            "full_read_interval": {
                "type": ["integer"],
                "minimum": 0,
                "default": full_read.DEFAULT_INTERVAL_SECONDS,
                "description": (
                    "Seconds between two reads of the user's whole scope (0: every run). "
                    "Pipeliner does not document that a delete or a sharing change moves a "
                    "contact's `modified`; a full read heals such a missed change."
                ),
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
    def full_read_interval(self) -> float:
        value = self.config.get("full_read_interval")
        return float(full_read.DEFAULT_INTERVAL_SECONDS if value is None else value)

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
