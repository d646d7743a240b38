"""The mapper plugin: singer-sdk's ``InlineMapper`` around :mod:`contactsync.mapping`.

One process applies one mapping, chosen by the ``direction`` setting (Meltano gives each of its
``mappings:`` its own config). On the ``contacts`` stream it rewrites SCHEMA and RECORD messages;
everything else passes through untouched and in order: STATE (Meltano keeps the tap's bookmark),
ACTIVATE_VERSION (our taps send it after a complete listing, and our targets then treat a linked
contact missing from the listing as deleted) and the messages of any other stream.
"""

from __future__ import annotations

import typing as t
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from contactsync_singer.plugin import ContactsyncPlugin
from singer_sdk import InlineMapper
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.singerlib import Message, SchemaMessage, SingerMessageType

from contactsync import settings as cs
from contactsync.mapping import (
    CONTACTS_STREAM,
    DELETED_AT,
    KEY_PROPERTIES,
    Direction,
    RecordError,
    input_schema_problem,
    map_record,
    output_bookmarks,
    output_schema,
    parse_settings,
)
from contactsync.pipeliner.scope import ScopeSettingError
from contactsync.sync.record import DELETED_REASON, SOURCE_ID, UNMAPPABLE

#: Dropped records are each logged up to this many; beyond, they are only counted.
MAX_DROP_WARNINGS = 50


class MapperInputError(RuntimeError):
    """Input the mapping cannot work with at all (not one bad record): the run stops."""


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
            self.direction, self.scope = parse_settings(
                self.config["direction"],
                self.config.get("sync_type"),
                self.config.get("sync_option"),
            )
        except ScopeSettingError as exc:
            raise ConfigValidationError("Config validation failed", errors=[str(exc)]) from None
        self.counts: Counter[str] = Counter()
        self.schema_seen = False
        self.logger.info(
            "mapping %s, scope %s%s",
            self.direction,
            self.scope.sync_type,
            f" / {self.scope.option}" if self.scope.option else "",
        )

    # --- messages ------------------------------------------------------------------------------

    def map_schema_message(self, message_dict: dict) -> t.Iterable[Message]:
        stream = message_dict.get("stream")
        if stream != CONTACTS_STREAM:
            yield Forwarded(message_dict)
            return
        problem = input_schema_problem(self.direction, message_dict.get("schema"))
        if problem:
            raise MapperInputError(f"stream {stream!r}: {problem}")
        self.schema_seen = True
        yield SchemaMessage(
            stream=stream,
            schema=output_schema(self.direction),
            key_properties=list(KEY_PROPERTIES),
            bookmark_properties=output_bookmarks(
                self.direction, message_dict.get("bookmark_properties")
            ),
        )

    def map_record_message(self, message_dict: dict) -> t.Iterable[Message]:
        if message_dict.get("stream") != CONTACTS_STREAM:
            yield Forwarded(message_dict)
            return
        if not self.schema_seen:
            # The Singer spec puts SCHEMA first; passing the record on would only move the
            # failure to the target, further from its cause.
            raise MapperInputError(
                f"stream {CONTACTS_STREAM!r}: a RECORD before its SCHEMA message; "
                "the tap must send SCHEMA first"
            )
        self.counts["read"] += 1
        try:
            record = map_record(self.direction, message_dict.get("record"), self.scope)
        except RecordError as exc:
            self.drop(exc)
            if exc.key is not None:
                # Still listed: the target reports it, and a complete listing keeps its copy.
                yield Forwarded(
                    {**message_dict, "record": {SOURCE_ID: exc.key, UNMAPPABLE: str(exc)}}
                )
            return
        self.counts[record.get(DELETED_REASON) if record.get(DELETED_AT) else "contact"] += 1
        # version and time_extracted stay as the tap sent them.
        yield Forwarded({**message_dict, "record": record})

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

    # --- reporting -----------------------------------------------------------------------------

    def drop(self, exc: RecordError) -> None:
        """A bad record is logged and not mapped; the run goes on (the target rejects it)."""
        self.counts["dropped"] += 1
        if self.counts["dropped"] <= MAX_DROP_WARNINGS:
            self.logger.warning("dropped a record: %s", exc)
        if self.counts["dropped"] == MAX_DROP_WARNINGS:
            self.logger.warning("further dropped records are only counted")

    def process_endofpipe(self) -> None:
        c = self.counts
        self.logger.info(
            "%s: %d contact records read; %d mapped, %d deleted, %d out of scope, %d dropped",
            self.direction,
            c["read"],
            c["contact"],
            c["deleted"],
            c["out_of_scope"],
            c["dropped"],
        )
        super().process_endofpipe()


if __name__ == "__main__":
    ContactsyncMapper.cli()
