"""Checks of the Dagster definitions against a stand-in `contactsync` (no Meltano, no network).

Run by the orchestrator's own Python (tests/e2e/test_orchestrator.py::test_definitions calls
it), since the project venv has no Dagster: the sensor keeps one partition per active user and
runs users whose settings changed, the schedule skips users with a run in flight, and a run's
output becomes metadata or a failure. Prints "ok" at the end.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from contactsync_orchestrator.definitions import (
    PARTITION_TAG,
    USERS,
    ContactsyncResource,
    contact_sync,
    contactsync_registry,
    contactsync_schedule,
    contactsync_user_job,
    defs,
)

FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args[0] == "status":
    print(open(os.environ["FAKE_REGISTRY"]).read())
elif args[0] == "run":
    email = args[args.index("--user") + 1]
    print(f"[0/1] {{email}}: one-way-your-contacts started")
    if email.startswith("fail"):
        print(f"[1/1] {{email}}: FAILED after 0.1 s: Pipeliner: 401 (log: /x.log)")
        sys.exit(1)
    print(f"[1/1] {{email}}: done in 0.1 s; to Outlook: 3 created, 1 updated")
"""


def registry(path: Path, users: dict[str, tuple[bool, str]]) -> None:
    rows = [
        {"email": e, "active": a, "sync_type": "one_way_your_contacts", "updated_at": u}
        for e, (a, u) in users.items()
    ]
    path.write_text(json.dumps({"space": {}, "users": rows}))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test() as instance:
        fake = Path(tmp) / "contactsync"
        fake.write_text(FAKE.format(python=sys.executable))
        fake.chmod(0o755)
        reg = Path(tmp) / "registry.json"
        os.environ["FAKE_REGISTRY"] = str(reg)
        resource = ContactsyncResource(executable=str(fake))

        def tick() -> dg.SensorResult:
            resources = {"contactsync": resource}
            context = dg.build_sensor_context(instance=instance, resources=resources)
            result = contactsync_registry(context)
            assert isinstance(result, dg.SensorResult)
            for request in result.dynamic_partitions_requests or ():
                if isinstance(request, dg.AddDynamicPartitionsRequest):
                    instance.add_dynamic_partitions(USERS.name, list(request.partition_keys))
                else:
                    for key in request.partition_keys:
                        instance.delete_dynamic_partition(USERS.name, key)
            return result

        registry(reg, {"a@x.io": (True, "t1"), "b@x.io": (True, "t1"), "c@x.io": (False, "t1")})
        first = tick()
        assert set(instance.get_dynamic_partitions(USERS.name)) == {"a@x.io", "b@x.io"}
        assert {r.partition_key for r in first.run_requests or ()} == {"a@x.io", "b@x.io"}
        keys = {r.run_key for r in first.run_requests or ()}
        # b configures (new updated_at), a deactivates: b gets a new run key, a loses its partition.
        registry(reg, {"a@x.io": (False, "t2"), "b@x.io": (True, "t2"), "c@x.io": (False, "t1")})
        second = tick()
        assert set(instance.get_dynamic_partitions(USERS.name)) == {"b@x.io"}
        assert [r.run_key for r in second.run_requests or ()] == ["b@x.io|t2"]
        assert "b@x.io|t2" not in keys

        # A run's output: counts as metadata; a failure carries the CLI's reason.
        instance.add_dynamic_partitions(USERS.name, ["fail@x.io"])
        done = dg.materialize(
            [contact_sync],
            partition_key="b@x.io",
            instance=instance,
            resources={"contactsync": resource},
        )
        assert done.success
        meta = done.asset_materializations_for_node("contact_sync")[0].metadata
        assert meta["to Outlook created"].value == 3 and meta["to Outlook updated"].value == 1
        failed = dg.materialize(
            [contact_sync],
            partition_key="fail@x.io",
            instance=instance,
            resources={"contactsync": resource},
            raise_on_error=False,
        )
        assert not failed.success
        failure = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failure and "Pipeliner: 401" in str(failure[0].event_specific_data), failure

        # The schedule: every partition, but not one whose run is still in flight.
        instance.add_dynamic_partitions(USERS.name, ["d@x.io"])
        job = defs.resolve_job_def(contactsync_user_job.name)
        instance.create_run_for_job(
            job, tags={PARTITION_TAG: "d@x.io"}, status=dg.DagsterRunStatus.NOT_STARTED
        )
        when = datetime(2026, 1, 1, 12, 15, tzinfo=UTC)
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        wanted = {r.partition_key: r.run_key for r in contactsync_schedule(context)}
        assert set(wanted) == {"b@x.io", "fail@x.io"}, wanted  # d@x.io: a run is queued
        assert wanted["b@x.io"] == "b@x.io|" + when.isoformat()
    print("ok")


if __name__ == "__main__":
    main()
