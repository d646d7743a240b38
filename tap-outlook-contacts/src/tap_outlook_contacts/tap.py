"""The tap: one stream, ``contacts``, of one personal folder, incremental through Graph delta."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from contactsync_singer.listing import ListingStream
from contactsync_singer.plugin import ContactsyncPlugin
from singer_sdk import Stream, Tap
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE, REPLICATION_INCREMENTAL

from contactsync import settings as cs
from contactsync.outlook import folders
from contactsync.outlook.auth import AUTH_SETTINGS_SCHEMA
from contactsync.outlook.graph_api import Folder, GraphClient
from contactsync.outlook.records import CONTACT_SCHEMA, removal_records, tap_record


class ContactsStream(ListingStream):
    """The folder's contacts: all of them on the first run, then only what changed.

    The Singer state holds the folder's delta link; deletions arrive as tombstones
    (``_sdc_deleted_at``), a contact moved to another folder as a tombstone of reason ``moved``
    (it is looked up by id: Graph's delta reports a move as a removal), replays are
    de-duplicated, an expired delta link (410) restarts the round from scratch once. A round
    that lists the whole folder (the first, or a restart) follows the Singer convention for a
    full table: ACTIVATE_VERSION when it starts, every RECORD stamped with that version,
    ACTIVATE_VERSION again when it is complete. The state also holds the folder's id: a renamed
    folder is followed, a deleted one stops the run.
    """

    name = "contacts"
    primary_keys = ("id",)
    schema = CONTACT_SCHEMA

    #: True while ``get_records`` reads (see ``replication_method``).
    reading = False

    @property
    def replication_method(self) -> str:
        """INCREMENTAL, as the catalog says (each run reads what changed since the delta link),
        but without a replication key: the bookmark is Graph's delta link, which
        ``get_records`` keeps in the stream's state. While records are read singer-sdk is told
        FULL_TABLE, so that it looks for no record value to keep as a bookmark (it offers no
        public hook for an incremental stream without a replication key)."""
        return REPLICATION_FULL_TABLE if self.reading else REPLICATION_INCREMENTAL

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        self.reading = True
        try:
            yield from self.read_folder(context)
        finally:
            self.reading = False

    def read_folder(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        tap: TapOutlookContacts = self.plugin  # type: ignore[assignment]
        state = self.get_context_state(context)
        folder = tap.folder_of(state)
        if folder is None:
            self.logger.info(
                "dry run: folder %r does not exist yet (a real run creates it): nothing to read",
                tap.configured_folder,
            )
            return
        delta_link = state.get("delta_link") if state.get("folder_id") == folder.id else None
        if delta_link is None:
            self.logger.info("reading the whole folder %r (no delta link yet)", folder.display_name)
        last_link = None
        version: int | None = None
        for page in tap.graph.iter_delta(folder, delta_link):
            if version is None and (delta_link is None or page.full_resync):
                version = self.begin_listing()
            # Graph's delta reports a contact moved to another folder as removed: look each
            # one up in the mailbox before calling it deleted.
            located = tap.graph.locate_contacts(page.removed) if page.removed else {}
            yield from removal_records(page.removed, located, folder.id)
            for contact in page.contacts:
                yield tap_record(contact)
            last_link = page.delta_link or last_link
        if version is not None and last_link:
            # The whole folder was listed: the target now knows that a linked contact missing
            # from it was deleted (a resync reports no deletions).
            self.activate_version(version)
        if last_link:
            state["folder_id"] = folder.id
            state["folder_setting"] = tap.configured_folder
            state["delta_link"] = last_link
            self.state_manager.is_flushed = False


class TapOutlookContacts(ContactsyncPlugin, Tap):
    """The contacts of one personal Outlook (Microsoft 365) folder, through Microsoft Graph."""

    name = "tap-outlook-contacts"
    progress_what = "contacts read"
    config_jsonschema = cs.schema(
        AUTH_SETTINGS_SCHEMA,
        cs.LINK_PARTITION,
        cs.GRAPH_CONNECTION,
        {
            "dry_run": {
                "type": ["boolean"],
                "default": False,
                "description": "Create nothing: a folder that create_folder would create is "
                "read as empty (set it with the targets' dry_run, e.g. CONTACTSYNC_DRY_RUN).",
            }
        },
        cs.HTTP_LIMITS,
        cs.PROGRESS,
        required=("authority", "client_id"),
    )

    @cached_property
    def graph(self) -> GraphClient:
        return cs.graph_client(self.config)

    @property
    def configured_folder(self) -> str:
        return str(self.config.get("folder") or "Pipeliner")

    def folder_of(self, state: Mapping[str, Any]) -> Folder | None:
        """The folder read: the one the state's delta link belongs to (by id: a renamed folder
        is followed, a deleted one stops the run), else the one the ``folder`` setting names
        (None in a dry run whose folder a real run would create: it holds no contact)."""
        configured = self.configured_folder
        bound = state.get("folder_id")
        # A changed setting is a deliberate switch to another folder; an unchanged one keeps
        # naming the folder it was bound to, whatever that folder is called now.
        same = state.get("folder_setting", configured) == configured
        if bound and same and not (folders.looks_like_id(configured) and configured != bound):
            return folders.follow(self.graph, bound, None, configured)
        return cs.sync_folder(self.graph, self.config)

    def discover_streams(self) -> list[Stream]:
        return [ContactsStream(self)]


if __name__ == "__main__":
    TapOutlookContacts.cli()
