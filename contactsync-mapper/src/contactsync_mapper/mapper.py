"""The mapper plugin: singer-sdk's ``InlineMapper`` around :mod:`contactsync.mapping`.

One process applies one mapping, chosen by the ``direction`` setting (Meltano gives each of its
``mappings:`` its own config). On the ``contacts`` stream it rewrites SCHEMA and RECORD messages;
everything else passes through untouched and in order: STATE (Meltano keeps the tap's bookmark),
ACTIVATE_VERSION (our taps send it after a complete listing, and our targets then treat a linked
contact missing from the listing as deleted) and the messages of any other stream.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from typing import Any, ClassVar

from contactsync_singer.contacts_mapping import ContactsMapping, MapperInputError
from contactsync_singer.plugin import ContactsyncPlugin
from singer_sdk import InlineMapper
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.singerlib import Message, SchemaMessage, SingerMessageType

from contactsync import settings as cs
from contactsync.mapping import CONTACTS_STREAM, Direction
from contactsync.pipeliner.scope import ScopeSettingError

__all__ = ["ContactsyncMapper", "Forwarded", "MapperInputError"]


@dataclass(slots=True)
class Forwarded(Message):
    """A message written exactly as it was read (or with only its record replaced)."""

    body: dict[str, Any]

    def __post_init__(self) -> None:
        self.type = SingerMessageType(self.body["type"])

    def to_dict(self) -> dict[str, Any]:
        return self.body


class ContactsyncMapper(ContactsyncPlugin, InlineMapper):
    """Pipeliner ⇄ Outlook contacts: the field table, and the scope filter on Pipeliner's side."""

    name = "contactsync-mapper"
    package_name = "contactsync-mapper"
    # Our own mapping only: singer-sdk's generic stream maps and flattening are not offered.
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    config_jsonschema = cs.schema(
        {
            "direction": {
                "type": ["string"],
                "enum": [d.value for d in Direction],
                "description": (
                    "Which mapping this process applies: pipeliner_to_outlook (records of "
                    "tap-pipeliner-contacts for target-outlook-contacts, scope filter applied) or "
                    "outlook_to_pipeliner (records of tap-outlook-contacts for "
                    "target-pipeliner-contacts)."
                ),
            },
        },
        cs.SYNC_SCOPE,
        required=("direction",),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            self.mapping = ContactsMapping(
                self.config["direction"],
                self.config.get("sync_type"),
                self.config.get("sync_option"),
                self.logger,
            )
        except ScopeSettingError as exc:
            raise ConfigValidationError("Config validation failed", errors=[str(exc)]) from None
        self.logger.info(self.mapping.describe())

    # --- messages ------------------------------------------------------------------------------

    def map_schema_message(self, message_dict: dict) -> t.Iterable[Message]:
        if message_dict.get("stream") != CONTACTS_STREAM:
            yield Forwarded(message_dict)
            return
        mapped = self.mapping.schema(message_dict)
        del mapped["type"]
        yield SchemaMessage(**mapped)

    def map_record_message(self, message_dict: dict) -> t.Iterable[Message]:
        if message_dict.get("stream") != CONTACTS_STREAM:
            yield Forwarded(message_dict)
            return
        mapped = self.mapping.record(message_dict)
        if mapped is not None:
            yield Forwarded(mapped)

    def map_state_message(self, message_dict: dict) -> t.Iterable[Message]:
        yield Forwarded(message_dict)

    def map_activate_version_message(self, message_dict: dict) -> t.Iterable[Message]:
        yield Forwarded(message_dict)

    def map_batch_message(self, message_dict: dict) -> t.Iterable[Message]:
        stream = message_dict.get("stream")
        if stream != CONTACTS_STREAM:
            yield Forwarded(message_dict)
            return
        raise MapperInputError(
            f"stream {stream!r}: BATCH messages are not supported by contactsync-mapper; "
            "run the tap without batch mode so that contacts arrive as RECORD messages"
        )

    def process_endofpipe(self) -> None:
        self.logger.info(self.mapping.summary())
        super().process_endofpipe()


if __name__ == "__main__":
    ContactsyncMapper.cli()
