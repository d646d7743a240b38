"""One mapping applied to the ``contacts`` stream of a Singer message flow.

contactsync-mapper applies it between any tap and target; each target applies it in-process to
its partner tap's stream (tap-pipeliner-contacts into target-outlook-contacts,
tap-outlook-contacts into target-pipeliner-contacts), so that a job needs no mapper process: one
interpreter start and one JSON round trip per record less (issue #15). Both read and write the
same messages, so a target cannot tell whether a stream was mapped before it or inside it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from contactsync.mapping import (
    CONTACTS_STREAM,
    DELETED_AT,
    DIRECTION_HINT,
    KEY_PROPERTIES,
    Direction,
    RecordError,
    input_schema_problem,
    map_record,
    output_bookmarks,
    output_schema,
    parse_settings,
)
from contactsync.sync.record import DELETED_REASON, SOURCE_ID, UNMAPPABLE

#: Dropped records are each logged up to this many; beyond, they are only counted.
MAX_DROP_WARNINGS = 50


class MapperInputError(RuntimeError):
    """Input the mapping cannot work with at all (not one bad record): the run stops."""


class ContactsMapping:
    """The mapping of ``direction`` over one flow of messages, with its counts."""

    def __init__(
        self,
        direction: str,
        sync_type: str | None,
        sync_option: str | None,
        logger: logging.Logger,
        hint: str = DIRECTION_HINT,
    ) -> None:
        """Raises :class:`contactsync.pipeliner.scope.ScopeSettingError` naming the setting.
        ``hint`` ends the message of an input SCHEMA the mapping cannot read."""
        self.direction, self.scope = parse_settings(direction, sync_type, sync_option)
        self.logger = logger
        self.hint = hint
        self.counts: Counter[str] = Counter()
        self.schema_seen = False

    def describe(self) -> str:
        option = f" / {self.scope.option}" if self.scope.option else ""
        return f"mapping {self.direction}, scope {self.scope.sync_type}{option}"

    def schema(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The SCHEMA message of the ``contacts`` stream, mapped (the input's is checked first:
        a mapping fed the other side's records would otherwise drop each of them)."""
        stream = message.get("stream")
        problem = input_schema_problem(self.direction, message.get("schema"), self.hint)
        if problem:
            raise MapperInputError(f"stream {stream!r}: {problem}")
        self.schema_seen = True
        return {
            "type": "SCHEMA",
            "stream": stream,
            "schema": output_schema(self.direction),
            "key_properties": list(KEY_PROPERTIES),
            "bookmark_properties": output_bookmarks(
                self.direction, message.get("bookmark_properties")
            ),
        }

    def record(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        """The RECORD message mapped, or None for a record dropped without a key."""
        if not self.schema_seen:
            # The Singer spec puts SCHEMA first; passing the record on would only move the
            # failure further from its cause.
            raise MapperInputError(
                f"stream {CONTACTS_STREAM!r}: a RECORD before its SCHEMA message; "
                "the tap must send SCHEMA first"
            )
        self.counts["read"] += 1
        try:
            record = map_record(self.direction, message.get("record"), self.scope)
        except RecordError as exc:
            self.drop(exc)
            if exc.key is None:
                return None
            # Still listed: the target reports it, and a complete listing keeps its copy.
            return {**message, "record": {SOURCE_ID: exc.key, UNMAPPABLE: str(exc)}}
        self.counts[record.get(DELETED_REASON) if record.get(DELETED_AT) else "contact"] += 1
        # version and time_extracted stay as the tap sent them.
        return {**message, "record": record}

    def drop(self, exc: RecordError) -> None:
        """A bad record is logged and not mapped; the run goes on (the target rejects it)."""
        self.counts["dropped"] += 1
        if self.counts["dropped"] <= MAX_DROP_WARNINGS:
            self.logger.warning("dropped a record: %s", exc)
        if self.counts["dropped"] == MAX_DROP_WARNINGS:
            self.logger.warning("further dropped records are only counted")

    def summary(self) -> str:
        c = self.counts
        return (
            f"{self.direction}: {c['read']} contact records read; {c['contact']} mapped, "
            f"{c['deleted']} deleted, {c['out_of_scope']} out of scope, {c['dropped']} dropped"
        )


def maps_in_process(
    direction: Direction, stream: str, schema: Any, partner_tap: bool | None
) -> bool:
    """Whether a target applies ``direction`` itself to this stream: the ``contacts`` stream of
    its partner tap, not yet mapped.

    ``partner_tap`` is what Meltano says (the run's extractor is that tap: True; another tap:
    False) or None outside Meltano, where the SCHEMA decides: it must fit the mapping's input.
    A stream already mapped (by contactsync-mapper: keyed by ``_source_id``) passes as it is.
    """
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if stream != CONTACTS_STREAM or not isinstance(properties, Mapping):
        return False
    if SOURCE_ID in properties or partner_tap is False:
        return False
    if partner_tap:
        return True  # its SCHEMA is checked by the mapping, which names what is wrong
    return input_schema_problem(direction, schema) is None
