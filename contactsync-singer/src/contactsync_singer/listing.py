"""The Singer full-table convention for our taps' incremental streams, through public hooks.

Some runs of our taps read every contact (the first run, a changed scope, a resync). Such a
read is a *listing*: ACTIVATE_VERSION when it starts, every RECORD stamped with that version,
and ACTIVATE_VERSION again once it is complete. Standard loaders then keep every live row, and
our targets take a listing that ended as complete. singer-sdk does this only for FULL_TABLE
streams, and only through private methods; here the messages go out through the tap's public
``write_message`` (where :class:`~contactsync_singer.plugin.ContactsyncPlugin` stamps the
records' version).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.singerlib import ActivateVersionMessage

if TYPE_CHECKING:
    from singer_sdk import Tap

    from contactsync_singer.plugin import ContactsyncPlugin


class ListingStream(Stream):
    """A stream that sometimes lists every record of its source."""

    def __init__(self, tap: Tap, **kwargs: Any) -> None:
        super().__init__(tap, **kwargs)
        #: The tap (singer-sdk keeps it only privately).
        self.plugin: ContactsyncPlugin = tap  # type: ignore[assignment]

    def begin_listing(self) -> int:
        """Start a full listing: ACTIVATE_VERSION, and the records that follow carry its version."""
        version = int(time.time() * 1000)
        for alias in self.aliases():
            self.plugin.listing_versions[alias] = version
        self.activate_version(version)
        return version

    def activate_version(self, version: int) -> None:
        """ACTIVATE_VERSION for each stream this one is written as (singer-sdk's stream maps)."""
        for alias in self.aliases():
            self.plugin.write_message(ActivateVersionMessage(stream=alias, version=version))

    def aliases(self) -> list[str]:
        return [
            stream_map.stream_alias
            for stream_map in self.stream_maps
            if not isinstance(stream_map, RemoveRecordTransform)
        ]
