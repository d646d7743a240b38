"""One sync leg per target run, fed batch by batch by one sink."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from singer_sdk import Target
from singer_sdk.sinks import BatchSink

from contactsync import settings as cs
from contactsync.engine import Destination, LegSettings, SyncLeg
from contactsync.ledger import Ledger, ScopeLedger
from contactsync.link import Side
from contactsync.merge import ConflictPolicy
from contactsync.plan import SourceRecord
from contactsync.report import RunReport


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
        self.seen: set[str] = set()

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Always: ``_sdc_deleted_at`` is how a tombstone arrives, and must not be stripped."""
        return True

    def process_batch(self, context: dict[str, Any]) -> None:
        leg = self.owner.leg
        records = []
        for raw in context.get("records", []):
            try:
                records.append(self.owner.source_record(raw))
            except ValueError as exc:
                key = raw.get("_source_id") or raw.get("id") or "(no key)"
                self.seen.add(str(key))  # listed by the source, even if we cannot use it
                self.logger.warning("rejected record %s: %s", key, exc)
                leg.report.issue(str(key), "rejected", str(exc))
                leg.report.count("rejected")
        self.seen.update(r.id for r in records)
        leg.process(records)

    def activate_version(self, new_version: int) -> None:
        """Our taps send ACTIVATE_VERSION after a complete listing of their side (see their
        READMEs): every linked contact not received in this run is gone."""
        self.owner.drain_one(self)
        self.owner.leg.complete_listing(self.seen)

    def clean_up(self) -> None:
        self.owner.finish_leg()
        super().clean_up()


class LegTarget(Target):
    """A target that is one leg of a sync: subclasses name the sides and the destination."""

    default_sink_class = ContactsSink
    #: The side the records come from.
    source_side: Side
    _finished: RunReport | None = None

    def build_destination(self) -> Destination:
        raise NotImplementedError

    def source_record(self, record: Mapping[str, Any]) -> SourceRecord:
        raise NotImplementedError

    @property
    def two_way(self) -> bool:
        return True

    @cached_property
    def scope_ledger(self) -> ScopeLedger:
        return Ledger(self.config.get("ledger_url")).open_scope(
            cs.link_scope(self.config), owner=self.name
        )

    @cached_property
    def leg(self) -> SyncLeg:
        settings = LegSettings(
            source_side=self.source_side,
            policy=ConflictPolicy.parse(self.config.get("conflict_policy")),
            two_way=self.two_way,
            max_delete_ratio=float(self.config.get("max_delete_ratio", 0.5)),
            allow_mass_delete=bool(self.config.get("allow_mass_delete")),
            dry_run=bool(self.config.get("dry_run")),
        )
        leg = SyncLeg(self.scope_ledger, self.build_destination(), settings)
        leg.retry_failures()
        return leg

    def get_sink_class(self, stream_name: str) -> type[BatchSink]:
        return ContactsSink

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        if not message_dict.get("schema", {}).get("properties"):
            raise ValueError(
                f"stream {message_dict.get('stream')!r}: its SCHEMA declares no properties; "
                "send contact records with the fields the matching tap emits"
            )
        super()._process_schema_message(message_dict)

    def process_endofpipe(self) -> None:
        # With no record at all there is no sink to clean up, but earlier failures and
        # restores are still owed: finish the leg here then.
        if not self._sinks_active and not self._sinks_to_clear:
            self.finish_leg()
        super().process_endofpipe()

    def finish_leg(self) -> RunReport:
        """End of input: restores, held deletes behind the guard, the report, the lock."""
        if self._finished is not None:
            return self._finished
        try:
            self._finished = self.leg.finish()
        finally:
            self._write_report(self.leg.report)
            self.scope_ledger.close()
        return self._finished

    def _write_report(self, report: RunReport) -> None:
        for line in report.summary().splitlines():
            self.logger.info(line)
        if path := self.config.get("report_path"):
            report.write(path)
