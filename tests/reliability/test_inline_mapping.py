"""A target maps its partner tap's stream itself (the project's jobs run no mapper process): the
same scenario through ``tap | contactsync-mapper | target`` and through ``tap | target`` ends
with the same contacts on both sides, and the target's in-process mapping refuses what the
mapper refuses, naming the cause. (The rest of this package runs ``tap | target``.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contactsync.outlook.projection import from_graph
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.pipeliner.records import CONTACT_SCHEMA as PIPELINER_SCHEMA
from tests.reliability.conftest import (
    converge,
    edit_both_sides,
    email_of_graph,
    seed_scenario,
)
from tests.support.pipeline import Sync
from tests.support.plugins import run_plugin


def _sides(sync: Sync) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides' table values by e-mail address (ids differ from one run to the other)."""
    pipeliner = {
        (c.get("email1") or "").lower(): from_pipeliner(c) for c in sync.in_scope_pipeliner()
    }
    outlook = {email_of_graph(c) or "": from_graph(c) for c in sync.outlook_contacts()}
    return pipeliner, outlook


def _scenario(sandbox: Any, token_cache: Path, workdir: Path, *, mapper: bool) -> Sync:
    sync = Sync(sandbox, token_cache, workdir)
    sync.mapper = mapper
    expect = seed_scenario(sync)
    result, _ = converge(sync, expect)
    assert result.ok, result.problems
    expect = edit_both_sides(sync, expect)
    result, _ = converge(sync, expect)
    assert result.ok, result.problems
    return sync


def test_the_target_maps_as_the_mapper_does(
    clean_sandbox: Any, token_cache: Path, tmp_path: Path
) -> None:
    through_mapper = _scenario(clean_sandbox, token_cache, tmp_path / "mapper", mapper=True)
    assert "no mapper needed" not in through_mapper.logs()
    expected = _sides(through_mapper)
    in_process = _scenario(clean_sandbox, token_cache, tmp_path / "inline", mapper=False)
    logs = in_process.logs()
    assert "'contacts' is the partner tap's: mapping pipeliner_to_outlook" in logs
    assert "'contacts' is the partner tap's: mapping outlook_to_pipeliner" in logs
    assert "contactsync-mapper" not in {name for leg in in_process.legs for name in leg.logs}
    assert _sides(in_process) == expected
    # Each leg's report counts what the mapper's would (the out-of-scope colleague's contacts
    # are tombstones either way).
    first = [leg.report["counts"] for leg in in_process.legs[:2]]
    assert first == [leg.report["counts"] for leg in through_mapper.legs[:2]]


def _pipeliner_stream(schema: dict[str, Any]) -> list[dict[str, Any]]:
    record = {"id": "10000000-0000-4000-8000-000000000001", "first_name": "Ada"}
    record.update({"last_name": "Lovelace", "_sync_user_relation": "owner"})
    return [
        {"type": "SCHEMA", "stream": "contacts", "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "contacts", "record": record},
    ]


def test_a_deselected_field_the_mapping_needs_stops_the_run_naming_it(
    sync: Sync, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under Meltano, the run's extractor is the partner tap: its stream is mapped here, and a
    SCHEMA without the user's relation (deselected with `meltano select`) cannot be."""
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAMESPACE", "tap_pipeliner_contacts")
    properties = dict(PIPELINER_SCHEMA["properties"])
    del properties["_sync_user_relation"]
    schema = {"type": "object", "properties": properties}
    config = sync.config("target-outlook-contacts")
    run = run_plugin("target-outlook-contacts", config, tmp_path, stdin=_pipeliner_stream(schema))
    assert run.returncode != 0
    assert "no `_sync_user_relation`" in run.stderr
    assert "target-outlook-contacts maps it itself" in run.stderr
    report = json.loads(Path(config["report_path"]).read_text())
    assert "_sync_user_relation" in report["error"]


def test_another_taps_stream_is_not_mapped(
    sync: Sync, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stream in Pipeliner's vocabulary from another tap is an import in the target's own
    vocabulary: the target does not guess that it is the partner tap's."""
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAMESPACE", "tap_csv")
    monkeypatch.setenv("MELTANO_EXTRACTOR_NAME", "tap-csv")
    schema = {"type": "object", "properties": dict(PIPELINER_SCHEMA["properties"])}
    del schema["properties"]["_sync_user_relation"]
    config = sync.config("target-outlook-contacts")
    stream = _pipeliner_stream(schema)
    del stream[1]["record"]["_sync_user_relation"]
    run = run_plugin("target-outlook-contacts", config, tmp_path, stdin=stream)
    assert "partner tap" not in run.stderr
    report = json.loads(Path(config["report_path"]).read_text())
    assert report["counts"].get("rejected") == 1  # Graph's fields: none (first_name is not one)
