"""One sync leg per target run, fed batch by batch by one sink."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from singer_sdk import Target
from singer_sdk.exceptions import MissingKeyPropertiesError
from singer_sdk.io_base import SingerMessageType, SingerReader
from singer_sdk.sinks import BatchSink
from singer_sdk.sinks.core import BaseJSONSchemaValidator

from contactsync import settings as cs
from contactsync.mapping import Direction
from contactsync.sync.engine import Destination, LegSettings, SyncLeg, WriteResult
from contactsync.sync.ledger import Ledger, PartitionLedger
from contactsync.sync.link import Side
from contactsync.sync.merge import ConflictPolicy
from contactsync.sync.plan import Action, DestRecord, SourceRecord
from contactsync.sync.report import RunReport
from contactsync_singer.contacts_mapping import ContactsMapping, maps_in_process
from contactsync_singer.imports import import_source, partner_tap, record_key
from contactsync_singer.plugin import ContactsyncPlugin
from contactsync_singer.validation import RecordValidator


class LazyDestination:
    """The target's destination, built on first use.

    Building it costs requests (resolving the user in Pipeliner, the folder in Graph); a quiet
    run, with no record, failure or delete to carry out, then costs none of them.
    """

    def __init__(self, side: Side, build: Callable[[], Destination]) -> None:
        self.side = side
        self._build = build
        self._built: Destination | None = None

    @property
    def destination(self) -> Destination:
        if self._built is None:
            self._built = self._build()
        return self._built

    def fetch(self, ids: Sequence[str]) -> Mapping[str, DestRecord]:
        return self.destination.fetch(ids)

    def candidates(self, records: Sequence[SourceRecord]) -> Iterable[DestRecord]:
        return self.destination.candidates(records)

    def apply(self, actions: Sequence[Action]) -> Sequence[WriteResult]:
        return self.destination.apply(actions)


def listed_folder(state: Any) -> str | None:
    """The Outlook folder id a tap-outlook-contacts state says its listing came from."""
    bookmarks = state.get("bookmarks") if isinstance(state, Mapping) else None
    stream = bookmarks.get("contacts") if isinstance(bookmarks, Mapping) else None
    if not isinstance(stream, Mapping):
        return None
    found = stream.get("folder_id")
    return found if isinstance(found, str) and found else None


class MissingKey(MissingKeyPropertiesError):
    """singer-sdk's error for a record without its key, with a message that says what to do."""


#: Where a record that failed schema validation carries its reason to ``process_batch``.
INVALID = "__contactsync_invalid__"


class ContactsSink(BatchSink):
    """Hands each batch of records to the target's leg, which writes and links them."""

    MAX_SIZE_DEFAULT = 100

    def __init__(
        self,
        target: LegTarget,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: list[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.owner = target
        #: Why the record being read does not match the SCHEMA (None: it does).
        self.invalid_reason: str | None = None
        #: The keys received since the current full listing began (None: no listing under way).
        self.seen: set[str] | None = None
        self.listing_version: int | None = None
        #: None: the sync's own stream; else the import (another tap) it comes from.
        self.import_name = import_source(
            stream_name, key_properties, os.environ, schema.get("properties")
        )
        target.use_link_partition(self.import_name, stream_name)
        target.sinks_made += 1

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Always: ``_sdc_deleted_at`` is how a tombstone arrives, and must not be stripped."""
        return True

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """A record of the wrong shape is one bad record, not a bad run: the validator sets it
        aside (``set_aside``) instead of raising, and the rest are written. It checks the types
        of the SCHEMA compiled once, and asks jsonschema only about a record that fails them
        (singer-sdk's own check, by jsonschema alone, was most of a target's CPU per record)."""
        if not self.validate_schema:
            return None
        return RecordValidator(
            self.schema, self.set_aside, validate_formats=self.validate_field_string_format
        )

    def set_aside(self, record: dict[str, Any], reason: str) -> None:
        """Keep only the record's keys (its values go no further: the next steps of singer-sdk
        would parse them) and its reason, which ``preprocess_record`` puts on the record for
        ``process_batch`` to reject it naming its key and field."""
        keep = {"_source_id", "id", *(self.key_properties or ())}
        for name in [name for name in record if name not in keep]:
            del record[name]
        self.invalid_reason = reason

    def preprocess_record(self, record: dict[str, Any], context: dict) -> dict[str, Any]:
        """A record without a property its SCHEMA names as key breaks the Singer spec: the run
        stops (as singer-sdk's targets do), saying which stream and which property."""
        absent = [k for k in self.key_properties or () if k not in record]
        if absent:
            raise MissingKey(
                f"stream {self.stream_name!r}: a record lacks its key property "
                f"{', '.join(absent)} (the SCHEMA's key_properties); the records before it were "
                "written. Give every record its key, or send the right key_properties"
            )
        if self.invalid_reason is not None:
            record[INVALID], self.invalid_reason = self.invalid_reason, None
        return record

    def process_batch(self, context: dict[str, Any]) -> None:
        leg = self.owner.leg
        records = []
        for raw in context.get("records", []):
            key = raw.get("_source_id") or raw.get("id") or "(no key)"
            try:
                if INVALID in raw:
                    raise ValueError(raw[INVALID])
                key = self.key_of(raw)
                if self.import_name is not None or key != (raw.get("_source_id") or raw.get("id")):
                    raw = {**raw, "_source_id": key}
                records.append(self.owner.source_record(raw))
            except ValueError as exc:
                if self.seen is not None:
                    self.seen.add(str(key))  # listed by the source, even if we cannot use it
                self.logger.warning("rejected record %s: %s", key, exc)
                leg.report.issue(str(key), "rejected", str(exc))
                leg.report.count("rejected")
        if self.seen is not None:
            self.seen.update(r.id for r in records)
        leg.process(records)
        self.owner.progress.add(len(context.get("records", [])))

    def key_of(self, raw: Mapping[str, Any]) -> str:
        stream = self.stream_name if self.import_name is not None else None
        return record_key(raw, self.key_properties, stream)

    def activate_version(self, new_version: int) -> None:
        """The Singer full-table convention: a tap sends ACTIVATE_VERSION when a full listing
        starts and the same version again when it is complete. Only a listing seen from its
        start to its end says that a linked contact it did not list is gone; a lone message
        (a listing that broke off, or a tap that sends only one) deletes nothing. Nor does an
        import's listing: a row missing from a file is no deletion in the CRM."""
        self.owner.drain_one(self)
        if self.import_name is not None:
            return
        if self.listing_version == new_version and self.seen is not None:
            self.owner.leg.complete_listing(self.seen)
            self.listing_version, self.seen = None, None
        else:
            self.listing_version, self.seen = new_version, set()

    def clean_up(self) -> None:
        self.owner.finish_leg()
        super().clean_up()


class LegReader(SingerReader):
    """singer-sdk's reader, letting the target see STATE and SCHEMA messages first, and map
    its partner tap's stream in-process (``LegTarget.mapping_for``)."""

    def __init__(self, target: LegTarget) -> None:
        super().__init__()
        self.target = target
        #: The streams mapped here, by name.
        self.mappings: dict[str, ContactsMapping] = {}

    def process_lines(
        self, file_input: Any, callbacks: dict[str, Callable[[dict], None]]
    ) -> Counter[str]:
        keep_state = callbacks[SingerMessageType.STATE]
        read_schema = callbacks[SingerMessageType.SCHEMA]
        read_record = callbacks[SingerMessageType.RECORD]
        mappings = self.mappings

        def on_state(message: dict) -> None:
            if self.target.on_state(message):
                keep_state(message)

        def on_schema(message: dict) -> None:
            self.target.on_schema(message)
            stream = str(message.get("stream"))
            mapping = mappings.get(stream) or self.target.mapping_for(message)
            if mapping is not None:
                mappings[stream] = mapping
                message = mapping.schema(message)
            read_schema(message)

        def on_record(message: dict) -> None:
            mapping = mappings.get(str(message.get("stream")))
            if mapping is not None:
                mapped = mapping.record(message)
                if mapped is None:
                    return
                message = mapped
            read_record(message)

        ours = {
            SingerMessageType.STATE: on_state,
            SingerMessageType.SCHEMA: on_schema,
            SingerMessageType.RECORD: on_record,
        }
        return super().process_lines(file_input, {**callbacks, **ours})


class LegTarget(ContactsyncPlugin, Target):
    """A target that is one leg of a sync: subclasses name the sides and the destination."""

    default_sink_class = ContactsSink
    progress_what = "contact records processed"
    #: The side the records come from.
    source_side: Side
    #: The mapping this target applies itself to its partner tap's stream.
    partner_mapping: Direction
    finished_report: RunReport | None = None
    #: Sinks created so far (none: no record arrived, and the leg is finished at the end).
    sinks_made = 0
    #: A dry run said once that it withholds STATE.
    state_withheld = False

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("message_reader", LegReader(self))
        super().__init__(**kwargs)

    def build_destination(self) -> Destination:
        raise NotImplementedError

    def setting_problems(self) -> list[str]:
        """singer-sdk's generic target settings this target cannot honour are refused."""
        problems = super().setting_problems()
        if self.config.get("load_method") == "overwrite":
            problems.append(
                "load_method 'overwrite' is not supported: a sync never deletes contacts that "
                "are not in its input; deletes follow the source (tombstones, or a complete "
                "listing ending in ACTIVATE_VERSION). Leave load_method unset (or upsert)"
            )
        if self.config.get("flattening_enabled"):
            problems.append(
                "flattening_enabled is not supported: contacts keep their lists and objects "
                "(e-mail addresses, phones, the business address), and flattened into strings "
                "every record would be rejected; leave it unset"
            )
        if self.config.get("add_record_metadata"):
            problems.append(
                "add_record_metadata is not supported: contacts have no place for _sdc_ "
                "columns; leave it unset"
            )
        return problems

    def on_fatal(self, exc: BaseException) -> None:
        """A run that ends on an error still writes its report: the error, the counts so far."""
        if self.finished_report is not None:
            return
        if "leg" in self.__dict__:
            report = self.leg.report
        else:
            report = RunReport(str(self.source_side), str(self.source_side.other))
        report.error = report.error or " ".join(str(exc).split()) or type(exc).__name__
        try:
            self.write_report(report)
        except OSError as write_error:
            self.logger.warning("could not write the run report: %s", write_error)
        if "partition_ledger" in self.__dict__:
            self.partition_ledger.close()

    def source_record(self, record: Mapping[str, Any]) -> SourceRecord:
        raise NotImplementedError

    @property
    def two_way(self) -> bool:
        return True

    @property
    def dry_run(self) -> bool:
        return bool(self.config.get("dry_run"))

    def use_link_partition(self, source: str | None, stream: str) -> None:
        """The link scope of this run: the sync's (``source`` None) or that of the import from
        ``source``. One run writes one scope; a stream of the other kind stops the run before
        any of its records is written."""
        chosen: tuple[str | None, str] = self.__dict__.setdefault("_link_source", (source, stream))
        if chosen[0] != source:

            def kind(name: str | None) -> str:
                return "the sync's own" if name is None else f"an import from {name}"

            raise ValueError(
                f"stream {stream!r} ({kind(source)}) and stream {chosen[1]!r} "
                f"({kind(chosen[0])}) arrived in one run: a target run links one scope; run "
                "the import as a pipeline of its own"
            )
        if source is not None:
            self.logger.info(
                "stream %r comes from %s, not from the sync: an import, linked in a scope of "
                "its own (the sync never deletes or re-links it; it deletes nothing by absence)",
                stream,
                source,
            )

    @cached_property
    def partition_ledger(self) -> PartitionLedger:
        source = self.__dict__.get("_link_source", (None, ""))[0]
        scope = (
            cs.link_partition(self.config)
            if source is None
            else cs.import_partition(self.config, source)
        )
        return Ledger(self.config.get("ledger_url")).open_partition(
            scope, owner=self.name, read_only=self.dry_run
        )

    @cached_property
    def leg(self) -> SyncLeg:
        settings = LegSettings(
            source_side=self.source_side,
            policy=ConflictPolicy.parse(self.config.get("conflict_policy")),
            two_way=self.two_way,
            max_delete_ratio=float(self.config.get("max_delete_ratio", 0.5)),
            allow_mass_delete=bool(self.config.get("allow_mass_delete")),
            dry_run=self.dry_run,
            folder_check=cs.folder_check(self.config),
        )
        destination = LazyDestination(self.source_side.other, self.build_destination)
        leg = SyncLeg(self.partition_ledger, destination, settings)
        leg.retry_failures()
        return leg

    def get_sink_class(self, stream_name: str) -> type[BatchSink]:
        return ContactsSink

    def on_state(self, message: Mapping[str, Any]) -> bool:
        """A STATE message, before singer-sdk keeps it (returns whether it may).

        tap-outlook-contacts keeps the id of the folder it read in its bookmark: the leg
        compares it with the folder the sync is bound to before a complete listing deletes.
        A dry run emits no STATE: Meltano saves what a target emits, and a saved bookmark (or
        Graph delta link) would make the next real run skip the changes this run only planned.
        """
        found = listed_folder(message.get("value"))
        if found is not None:
            self.leg.listed_folder = found
        if not self.dry_run:
            return True
        if not self.state_withheld:
            self.state_withheld = True
            self.logger.info("dry run: no state is emitted, the next run reads the same changes")
        return False

    def mapping_for(self, message: Mapping[str, Any]) -> ContactsMapping | None:
        """The mapping to apply in-process to this SCHEMA's stream (None: it is read as it is).

        A stream of the partner tap, not mapped by contactsync-mapper before this target, is
        mapped here exactly as the mapper would (same functions, same checks, same counts), with
        this target's ``sync_type`` and ``sync_option``: the job then needs no mapper process.
        """
        stream, schema = message.get("stream"), message.get("schema")
        partner = partner_tap(self.partner_mapping, os.environ)
        if not maps_in_process(self.partner_mapping, str(stream), schema, partner):
            return None
        mapping = ContactsMapping(
            self.partner_mapping,
            self.config.get("sync_type"),
            self.config.get("sync_option"),
            self.logger,
            hint=f"{self.name} maps it itself: is a field deselected in the tap's catalog?",
        )
        self.logger.info(
            "stream %r is the partner tap's: %s in this process (no mapper needed)",
            stream,
            mapping.describe(),
        )
        return mapping

    def on_schema(self, message: Mapping[str, Any]) -> None:
        """A SCHEMA message, before singer-sdk reads it: one without properties stops the run."""
        if not message.get("schema", {}).get("properties"):
            raise ValueError(
                f"stream {message.get('stream')!r}: its SCHEMA declares no properties; "
                "send contact records with the fields the matching tap emits"
            )

    def process_endofpipe(self) -> None:
        reader = self.message_reader
        for mapping in reader.mappings.values() if isinstance(reader, LegReader) else ():
            self.logger.info(mapping.summary())
        # With no record at all there is no sink to clean up, but earlier failures and
        # restores are still owed: finish the leg here then.
        if not self.sinks_made:
            self.finish_leg()
        super().process_endofpipe()

    def finish_leg(self) -> RunReport:
        """End of input: restores, held deletes behind the guard, the report, the lock."""
        if self.finished_report is not None:
            return self.finished_report
        try:
            self.finished_report = self.leg.finish()
        finally:
            self.write_report(self.leg.report)
            self.partition_ledger.close()
        return self.finished_report

    def write_report(self, report: RunReport) -> None:
        for line in report.summary().splitlines():
            self.logger.info(line)
        if path := self.config.get("report_path"):
            report.write(path)
