"""What every plugin does alike, as real processes against the sandbox: the SDK's request
metrics and a progress line while it works, settings it cannot honour refused at start, and a
failed run ending on one ERROR line (the traceback only at DEBUG)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from contactsync.outlook.records import CONTACT_SCHEMA
from contactsync.sync.record import SOURCE_PROPERTIES
from tests.plugins import test_target_outlook
from tests.plugins.test_target_outlook import pipeliner_record, target_config
from tests.support.plugins import (
    BIN,
    USERS,
    OutlookActor,
    PipelinerActor,
    pipeliner_connection,
    run_plugin,
    singer_stream,
)

SCHEMA = {"type": "object", "properties": {**CONTACT_SCHEMA["properties"], **SOURCE_PROPERTIES}}
EUROPE = "a0000000-0000-4000-8000-000000000001"
token_cache = test_target_outlook.token_cache  # the signed-in cache of the target tests
outlook = test_target_outlook.outlook


def metrics(stderr: str, name: str) -> list[dict[str, Any]]:
    return [
        json.loads(m.group(1))
        for m in re.finditer(r"METRIC: (\{.*\})", stderr)
        if json.loads(m.group(1))["metric"] == name
    ]


def test_a_long_read_reports_request_metrics_and_progress(sandbox: Any, tmp_path: Path) -> None:
    pipeliner = PipelinerActor(sandbox.control("pipeliner"))
    pipeliner.seed(
        [
            {"owner_id": USERS["alex"], "unit_id": EUROPE, "first_name": f"P{n}", "last_name": "X"}
            for n in range(30)
        ]
    )
    control = sandbox.control("pipeliner")
    control.latency(0.15, path_prefix="/api/v100/rest/spaces/", method="GET")
    try:
        config = {
            **pipeliner_connection(sandbox.info),
            "page_size": 5,
            "progress_interval_seconds": 0.3,
        }
        run = run_plugin("tap-pipeliner-contacts", config, tmp_path)
    finally:
        control.clear_faults()
    assert run.returncode == 0, run.stderr[-2000:]
    durations = metrics(run.stderr, "http_request_duration")
    contacts = [p for p in durations if p["tags"]["endpoint"].endswith("/entities/Contacts")]
    assert len(contacts) >= 6  # one per page of 5
    tags = contacts[0]["tags"]
    assert tags["endpoint"] == "/api/v100/rest/spaces/{id}/entities/Contacts"  # no id, no query
    assert tags["http_status_code"] == 200 and tags["status"] == "succeeded"
    counts = metrics(run.stderr, "http_request_count")
    assert sum(p["value"] for p in counts if p["tags"]["endpoint"] == tags["endpoint"]) == len(
        contacts
    )
    progress = re.findall(r"contacts read: (\d+) so far \((\d+)/s", run.stderr)
    assert len(progress) >= 2, run.stderr[-2000:]
    assert int(progress[-1][0]) > int(progress[0][0])


def test_batch_size_rows_is_honoured_and_writes_are_measured(
    outlook: OutlookActor, sandbox: Any, token_cache: Path, tmp_path: Path
) -> None:
    folder = f"Pipeliner {uuid.uuid4().hex[:8]}"
    config = target_config(sandbox, token_cache, tmp_path, folder, batch_size_rows=5)
    records = [pipeliner_record(n) for n in range(20)]
    run = run_plugin(
        "target-outlook-contacts", config, tmp_path, stdin=singer_stream(records, SCHEMA)
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(outlook.contacts(folder)) == 20
    # Batches of 5 records: four $batch requests (the default of 100 would make one of 20).
    assert outlook.requests("POST", "$batch") == 4
    batches = [
        p
        for p in metrics(run.stderr, "http_request_duration")
        if p["tags"]["endpoint"] == "/v1.0/$batch"
    ]
    assert len(batches) == 4 and all(p["tags"]["http_status_code"] == 200 for p in batches)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"load_method": "overwrite"}, "load_method"),
        ({"add_record_metadata": True}, "add_record_metadata"),
        # Flattened, a contact's lists become strings and every record would be rejected.
        ({"flattening_enabled": True, "flattening_max_depth": 3}, "flattening_enabled"),
    ],
)
def test_sdk_settings_a_target_cannot_honour_are_refused_at_start(
    setting: dict[str, Any],
    named: str,
    outlook: OutlookActor,
    sandbox: Any,
    token_cache: Path,
    tmp_path: Path,
) -> None:
    folder = f"Pipeliner {uuid.uuid4().hex[:8]}"
    config = target_config(sandbox, token_cache, tmp_path, folder, **setting)
    run = run_plugin(
        "target-outlook-contacts",
        config,
        tmp_path,
        stdin=singer_stream([pipeliner_record(1)], SCHEMA),
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert "ERROR" in last and named in last and "settings refused" in last
    assert outlook.requests("POST") == 0  # nothing written, not even the folder


def test_a_failed_run_ends_on_one_error_line_and_a_report(
    outlook: OutlookActor, sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed out (no token cache): one ERROR line saying what to do, no traceback unless
    asked for, and the run report written with the error."""
    folder = f"Pipeliner {uuid.uuid4().hex[:8]}"
    config = target_config(sandbox, tmp_path / "no-cache.json", tmp_path, folder)
    stream = singer_stream([pipeliner_record(1)], SCHEMA)
    run = run_plugin("target-outlook-contacts", config, tmp_path, stdin=stream)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert "ERROR" in lines[-1] and "contactsync login" in lines[-1], lines[-3:]
    assert "Traceback" not in run.stderr
    assert sum("ERROR" in ln for ln in lines) == 1, lines
    report = json.loads((tmp_path / "report.json").read_text())
    assert "contactsync login" in report["error"]
    monkeypatch.setenv("LOGLEVEL", "DEBUG")  # the SDK's log level: now the traceback shows
    debug = run_plugin("target-outlook-contacts", config, tmp_path / "debug", stdin=stream)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_the_outlook_stream_declares_incremental_replication(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"authority": "https://127.0.0.1:9/t", "client_id": "x"}))
    done = subprocess.run(
        [str(BIN / "tap-outlook-contacts"), "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
    )
    [stream] = json.loads(done.stdout)["streams"]
    assert stream["replication_method"] == "INCREMENTAL"  # Graph delta, not FULL_TABLE


#: Our code that runs inside singer-sdk: the shared glue, both taps, both targets, the mapper.
PLUGIN_SOURCES = [
    "contactsync-singer/src",
    "tap-pipeliner-contacts/src",
    "tap-outlook-contacts/src",
    "target-pipeliner-contacts/src",
    "target-outlook-contacts/src",
    "contactsync-mapper/src",
]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def sdk_private_names() -> set[str]:
    """Every ``_name`` singer-sdk defines: methods, attributes set on ``self``, class names."""
    import singer_sdk

    found: set[str] = set()
    for path in Path(singer_sdk.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = node.name
            elif isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                name = node.id
            else:
                continue
            if _private(name):
                found.add(name)
    return found


def test_no_plugin_code_touches_a_singer_sdk_private() -> None:
    """singer-sdk's private methods and attributes change without notice between releases; our
    plugins use its public hooks only (issue #16): no ``_name`` of singer-sdk is overridden,
    read, called or named in a string (``getattr``), and no private module is imported."""
    sdk = sdk_private_names()
    assert {"_validate_and_parse", "_write_state_message", "_sinks_active"} <= sdk  # the scan works
    root = Path(__file__).resolve().parents[2]
    touched = []
    for folder in PLUGIN_SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            methods = {
                id(item)
                for cls in ast.walk(tree)
                if isinstance(cls, ast.ClassDef)
                for item in cls.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Attribute):
                    names = [node.attr]
                elif id(node) in methods:
                    names = [node.name]  # type: ignore[attr-defined]
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    names = [node.value]
                elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "singer_sdk"
                ):
                    names = [part for part in node.module.split(".") if _private(part)]
                    names += [alias.name for alias in node.names if _private(alias.name)]
                elif isinstance(node, ast.Import):
                    names = [
                        part
                        for alias in node.names
                        if alias.name.startswith("singer_sdk")
                        for part in alias.name.split(".")
                        if _private(part)
                    ]
                for name in names:
                    if name in sdk or (
                        _private(name) and isinstance(node, ast.Import | ast.ImportFrom)
                    ):
                        touched.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    assert not touched, "singer-sdk privates used:\n" + "\n".join(touched)


def test_settings_from_the_environment_are_read_as_their_schema_means_them(tmp_path: Path) -> None:
    """`--config ENV` (singer-sdk's settings from environment variables): a number given as
    text is read as a number, as from a config file; a wrong one is refused naming it."""
    env = {
        "PATH": os.environ["PATH"],
        "TARGET_PIPELINER_CONTACTS_SERVICE_URL": "https://127.0.0.1:9",
        "TARGET_PIPELINER_CONTACTS_SPACE_ID": "space",
        "TARGET_PIPELINER_CONTACTS_API_USERNAME": "user",
        "TARGET_PIPELINER_CONTACTS_API_PASSWORD": "secret",
        "TARGET_PIPELINER_CONTACTS_USER_EMAIL": "alex@contoso.example",
        "TARGET_PIPELINER_CONTACTS_LEDGER_URL": str(tmp_path / "ledger.sqlite"),
        "TARGET_PIPELINER_CONTACTS_MAX_DELETE_RATIO": " 0.3 ",
    }
    cmd = [str(BIN / "target-pipeliner-contacts"), "--config", "ENV"]
    ok = subprocess.run(cmd, input="", capture_output=True, text=True, env=env, check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    env["TARGET_PIPELINER_CONTACTS_MAX_DELETE_RATIO"] = "a third"
    bad = subprocess.run(cmd, input="", capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 1
    assert "settings refused: 'a third' is not of type 'number'" in bad.stderr
    assert "max_delete_ratio" in bad.stderr
