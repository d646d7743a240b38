"""singer-sdk's own floor: a minimal SDK tap piped into a minimal SDK target that discards.

``python -m bench.floor tap --count N`` emits N contact-shaped records (the fields of
``contactsync.pipeliner.records.CONTACT_SCHEMA``, filled like a generated sandbox contact);
``python -m bench.floor target`` reads them through the SDK's batch sink and drops them. What
they cost per record is what any SDK tap and target pay before doing any work of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from singer_sdk import Stream, Tap, Target
from singer_sdk.sinks import BatchSink

from contactsync.pipeliner.records import CONTACT_SCHEMA

CONFIG: dict[str, Any] = {"type": "object", "properties": {"count": {"type": ["integer"]}}}


def _record(n: int) -> dict[str, Any]:
    record: dict[str, Any] = {name: None for name in CONTACT_SCHEMA["properties"]}
    record.update(
        id=f"10000000-0000-4000-8000-{n:012x}",
        first_name=f"First{n}",
        last_name=f"Last{n}",
        email1=f"person{n}@bench.example",
        phone1=f"+1 555 {n % 10000:04d}",
        owner_id="c0000000-0000-4000-8000-000000000001",
        unit_id="a0000000-0000-4000-8000-000000000001",
        share_mode=0,
        sharing_clients=[],
        sharing_units=[],
        is_deleted=False,
        is_delete_protected=False,
        created="2026-01-01T00:00:00+00:00",
        modified="2026-01-01T00:00:00+00:00",
        revision=n,
        _sync_user_relation="owner",
        _sync_user_can_delete=True,
    )
    return record


class FloorStream(Stream):
    name = "contacts"
    primary_keys = ("id",)
    schema = CONTACT_SCHEMA

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict[str, Any]]:
        for n in range(int(self.config.get("count", 1000))):
            yield _record(n)


class FloorTap(Tap):
    name = "tap-floor"
    config_jsonschema = CONFIG

    def discover_streams(self) -> list[Stream]:
        return [FloorStream(self)]


class DiscardSink(BatchSink):
    MAX_SIZE_DEFAULT = 100

    def process_batch(self, context: dict[str, Any]) -> None:
        context.get("records", []).clear()


class DiscardTarget(Target):
    name = "target-floor"
    config_jsonschema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}
    default_sink_class = DiscardSink


if __name__ == "__main__":
    role = sys.argv.pop(1)
    if role == "tap":
        count = int(sys.argv[sys.argv.index("--count") + 1])
        FloorTap(config={"count": count}).sync_all()
    else:
        DiscardTarget(config={}).listen()
