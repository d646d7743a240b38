"""Dagster definitions: one partition per contactsync user, each run one `contactsync run --user`.

* ``contactsync_users``: dynamic partitions, one per active user of the registry (the ledger's
  database). The sensor ``contactsync_registry`` keeps them equal to the registry: an activated
  user becomes a partition and gets a first run at once, a configured user gets a run with the
  new settings, a deactivated one loses their partition (nothing is deleted anywhere: the
  partition's history stays in Dagster, the links and state in PostgreSQL).
* ``contact_sync``: the partitioned asset; materializing partition EMAIL runs that user's
  Meltano job through the CLI, which picks the job from the sync type and keeps Meltano state
  (``--state-id-suffix``) and links in the shared databases. Counts become metadata.
* ``contactsync_schedule``: every user's run on a cron (default every 15 minutes), skipping users
  whose previous run is still queued or running.

Where runs execute, and how many at once, is the Dagster instance's business (dagster.yaml):
the queued run coordinator limits concurrency overall and to one run per partition (per user),
and the run launcher puts runs on this machine, on Docker, Kubernetes or ECS. Settings come from
the environment (see docs/orchestrator.md): those the CLI reads, plus
``CONTACTSYNC_SCHEDULE_CRON``, ``CONTACTSYNC_SCHEDULE`` (``on``/``off``) and
``CONTACTSYNC_SENSOR_INTERVAL`` (seconds), ``CONTACTSYNC_RETRY_DELAY`` (seconds before the one
retry of a failed run).
"""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg

from contactsync_orchestrator.cli import Contactsync, ContactsyncError

USERS = dg.DynamicPartitionsDefinition(name="contactsync_users")
#: The tag every partitioned run carries; dagster.yaml limits it to one run per value (user).
PARTITION_TAG = "dagster/partition"
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return default if not value else value in ("1", "on", "true", "yes")


class ContactsyncResource(dg.ConfigurableResource):
    """The project's `contactsync` command; empty fields come from the environment."""

    executable: str = ""
    project_dir: str = ""
    timeout_seconds: float = 3600.0

    def cli(self) -> Contactsync:
        return Contactsync(
            executable=self.executable,
            project_dir=self.project_dir,
            timeout_seconds=self.timeout_seconds,
        )


@dg.asset(
    partitions_def=USERS,
    group_name="contactsync",
    kinds={"meltano", "python"},
    retry_policy=dg.RetryPolicy(
        max_retries=1, delay=float(os.environ.get("CONTACTSYNC_RETRY_DELAY", "30"))
    ),
    description="A user's Outlook contacts folder in sync with Pipeliner (their Meltano job).",
)
def contact_sync(
    context: dg.AssetExecutionContext, contactsync: ContactsyncResource
) -> dg.MaterializeResult:
    email = context.partition_key
    try:
        outcome = contactsync.cli().run_user(email, log=context.log.info)
    except ContactsyncError as exc:
        raise dg.Failure(description=str(exc)) from exc
    metadata: dict[str, Any] = {"user": email, "summary": outcome.summary, **outcome.counts()}
    if not outcome.ok:
        raise dg.Failure(
            description=f"contactsync run --user {email} failed: "
            + (outcome.summary or outcome.output_tail[-2000:]),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


contactsync_user_job = dg.define_asset_job(
    "contactsync_user_job",
    selection=[contact_sync],
    partitions_def=USERS,
    executor_def=dg.in_process_executor,  # one step: no second process per run
    description="One user's sync (one partition).",
)


@dg.sensor(
    job=contactsync_user_job,
    minimum_interval_seconds=int(os.environ.get("CONTACTSYNC_SENSOR_INTERVAL", "60")),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps one partition per active user of the registry; runs a user whose "
    "settings changed (activation, configure).",
)
def contactsync_registry(
    context: dg.SensorEvaluationContext, contactsync: ContactsyncResource
) -> dg.SensorResult:
    try:
        users = contactsync.cli().users()
    except ContactsyncError as exc:  # e.g. not enabled yet: nothing to do, say why
        return dg.SensorResult(skip_reason=str(exc))
    active = {u.email: u for u in users if u.active}
    known = set(context.instance.get_dynamic_partitions(USERS.name))
    added = sorted(set(active) - known)
    removed = sorted(known - set(active))
    requests = [  # the run key makes Dagster run each settings version once
        dg.RunRequest(partition_key=email, run_key=f"{email}|{user.updated_at}")
        for email, user in sorted(active.items())
    ]
    partitions: list[Any] = []
    if added:
        partitions.append(USERS.build_add_request(added))
    if removed:
        partitions.append(USERS.build_delete_request(removed))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partitions)


@dg.schedule(
    job=contactsync_user_job,
    cron_schedule=os.environ.get("CONTACTSYNC_SCHEDULE_CRON", "*/15 * * * *"),
    execution_timezone="UTC",
    default_status=(
        dg.DefaultScheduleStatus.RUNNING
        if _env_flag("CONTACTSYNC_SCHEDULE", True)
        else dg.DefaultScheduleStatus.STOPPED
    ),
    description="Every active user's sync; a user whose last run is still going is skipped.",
)
def contactsync_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    busy = {
        run.tags.get(PARTITION_TAG)
        for run in context.instance.get_runs(
            filters=dg.RunsFilter(job_name=contactsync_user_job.name, statuses=list(IN_FLIGHT))
        )
    }
    tick = context.scheduled_execution_time.isoformat()
    for email in context.instance.get_dynamic_partitions(USERS.name):
        if email not in busy:
            yield dg.RunRequest(partition_key=email, run_key=f"{email}|{tick}")


defs = dg.Definitions(
    assets=[contact_sync],
    jobs=[contactsync_user_job],
    sensors=[contactsync_registry],
    schedules=[contactsync_schedule],
    resources={"contactsync": ContactsyncResource()},
)
