"""The target: contacts in Pipeliner's vocabulary, written through the contactsync engine."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from singer_sdk import Target
from singer_sdk.sinks import BatchSink

from contactsync import settings as cs
from contactsync.engine import LegSettings, SyncLeg
from contactsync.ledger import Ledger, ScopeLedger
from contactsync.link import ScopeKey, Side
from contactsync.merge import ConflictPolicy
from contactsync.pipeliner_api import PipelinerClient, ResolvedUser
from contactsync.pipeliner_destination import PipelinerDestination
from contactsync.pipeliner_records import source_record
from contactsync.report import RunReport
from contactsync.scope import SyncScope


class ContactsSink(BatchSink):
    """Hands each batch of up to 100 records to the engine, which writes and links them."""

    MAX_SIZE_DEFAULT = 100

    def __init__(
        self,
        target: TargetPipelinerContacts,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: list[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self.owner = target

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Always: ``_sdc_deleted_at`` is how a tombstone arrives, and must not be stripped."""
        return True

    def process_batch(self, context: dict[str, Any]) -> None:
        target = self.owner
        records = []
        for raw in context.get("records", []):
            try:
                records.append(source_record(raw))
            except ValueError as exc:
                key = raw.get("_source_id") or raw.get("id") or "(no key)"
                self.logger.warning("rejected record %s: %s", key, exc)
                target.leg.report.issue(str(key), "rejected", str(exc))
                target.leg.report.count("rejected")
        target.leg.process(records)

    def clean_up(self) -> None:
        self.owner.finish_leg()
        super().clean_up()


class TargetPipelinerContacts(Target):
    """Creates, updates and deletes Pipeliner contacts from any tap's contact records.

    Records are keyed by ``_source_id`` (e.g. an Outlook contact id; linked through the ledger)
    or by the Pipeliner ``id``. Only fields that changed are written, merged field by field.
    """

    name = "target-pipeliner-contacts"
    default_sink_class = ContactsSink
    _finished: RunReport | None = None
    config_jsonschema = cs.schema(
        cs.PIPELINER_CONNECTION,
        cs.SYNC_USER,
        cs.LINK_SCOPE,
        cs.SYNC_SCOPE,
        cs.SYNC_WRITES,
        cs.HTTP_LIMITS,
        required=("service_url", "space_id", "api_username", "api_password"),
    )

    @cached_property
    def client(self) -> PipelinerClient:
        return PipelinerClient(cs.pipeliner_settings(self.config))

    @cached_property
    def sync_user(self) -> ResolvedUser:
        if not (self.config.get("user_id") or self.config.get("user_email")):
            raise cs.SettingError("set user_id or user_email: whose contacts are synced?")
        return self.client.resolve_user(
            user_id=self.config.get("user_id"), email=self.config.get("user_email")
        )

    @cached_property
    def scope_ledger(self) -> ScopeLedger:
        key = ScopeKey(
            user=self.sync_user.client["id"],
            space=self.config["space_id"],
            mailbox=self.config.get("mailbox") or "me",
            folder=self.config.get("folder") or "Pipeliner",
        )
        return Ledger(self.config.get("ledger_url")).open_scope(key, owner=self.name)

    @cached_property
    def leg(self) -> SyncLeg:
        scope = SyncScope.parse(
            self.config.get("sync_type") or "two_way_your_contacts",
            self.config.get("sync_option"),
        )
        destination = PipelinerDestination(self.client, self.sync_user, scope)
        leg_settings = LegSettings(
            source_side=Side.OUTLOOK,
            policy=ConflictPolicy.parse(self.config.get("conflict_policy")),
            two_way=True,
            max_delete_ratio=float(self.config.get("max_delete_ratio", 0.5)),
            allow_mass_delete=bool(self.config.get("allow_mass_delete")),
            dry_run=bool(self.config.get("dry_run")),
        )
        leg = SyncLeg(self.scope_ledger, destination, leg_settings)
        leg.retry_failures()
        return leg

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        if not message_dict.get("schema", {}).get("properties"):
            raise ValueError(
                f"stream {message_dict.get('stream')!r}: its SCHEMA declares no properties; "
                "send contact records with the fields tap-pipeliner-contacts emits "
                "(first_name, email1, …)"
            )
        super()._process_schema_message(message_dict)

    def get_sink_class(self, stream_name: str) -> type[BatchSink]:
        return ContactsSink

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


if __name__ == "__main__":
    TargetPipelinerContacts.cli()
