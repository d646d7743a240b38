"""How `contactsync run` reads a failed `meltano run`: the cause from its log, the report."""
# ruff: noqa: E501 - log lines as Meltano writes them

from __future__ import annotations

import json
from pathlib import Path

from contactsync.ops.meltano_runs import failure_cause, write_failed_report

T = "2026-12-05T08:33:40.775546Z"

PLUGIN_FAILED = f"""\
{T} [info     ] meltano      Running job with name 'sandbox:tap-to-target:alex'
{T} [info     ] tap-pipeliner-contacts METRIC                         metric_name=record_count metric_value=4
{T} [warning  ] tap-pipeliner-contacts stopped: the next plugin of the pipeline stopped reading
{T} [error    ] target-outlook-contacts signed out: run `contactsync login` again cmd_type=elb name=target-outlook-contacts stdio=stderr
{T} [error    ] meltano      Loader failed
{T} [error    ] meltano      Block run completed
{T} [info     ] meltano      Run completed
"""

MELTANO_REFUSED = f"""\
{T} [info     ] meltano      Running job with name 'sandbox:tap-to-target:alex'
{T} [info     ] tap-pipeliner-contacts METRIC: {{"type": "counter", "metric": "http_request_count", "error": 1}}
{T} [error    ] meltano      Another 'sandbox:tap-to-target:alex' pipeline is already running which started at 2026-12-05 08:30. Wait until 2026-12-05 08:35 when the job will be automatically cancelled if stale, or ignore this check using the '--force' option.
{T} [info     ] meltano      Run completed
"""


def test_the_cause_is_the_failing_plugins_final_error_line() -> None:
    assert failure_cause(PLUGIN_FAILED) == (
        "target-outlook-contacts: signed out: run `contactsync login` again"
    )


def test_meltanos_own_reason_when_no_plugin_said_anything() -> None:
    cause = failure_cause(MELTANO_REFUSED)
    assert cause is not None and cause.startswith("Another 'sandbox:tap-to-target:alex' pipeline")
    assert "METRIC" not in cause and cause != "Run completed"


def test_a_traceback_line_when_nothing_else_names_the_error() -> None:
    log = f"{T} [info     ] meltano      Run completed\nTypeError: Object of type Decimal\n"
    assert failure_cause(log) == "TypeError: Object of type Decimal"
    assert failure_cause(f"{T} [info     ] meltano      Run completed\n") is None


def test_the_error_goes_into_the_report_of_the_leg_that_failed(tmp_path: Path) -> None:
    first = tmp_path / "pipeliner-to-outlook.json"
    first.write_text(json.dumps({"leg": "pipeliner->outlook", "counts": {"created": 3}}))
    write_failed_report(tmp_path, "two-way-your-contacts", "tap-outlook-contacts: throttled")
    second = json.loads((tmp_path / "outlook-to-pipeliner.json").read_text())
    assert second["error"] == "tap-outlook-contacts: throttled"
    assert json.loads(first.read_text()).get("error") is None
    # A first-leg plugin's error lands in the first leg's report, with its counts kept.
    write_failed_report(tmp_path, "two-way-your-contacts", "target-outlook-contacts: 401")
    report = json.loads(first.read_text())
    assert report["error"] == "target-outlook-contacts: 401" and report["counts"]["created"] == 3
