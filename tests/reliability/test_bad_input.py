"""Bad input: malformed Singer messages, bad records (wrong types, missing keys, 4 e-mails,
100,000-character notes, invalid UTF-8, lone-surrogate escapes, control characters), and every
setting missing or wrong. A clear error names the record or setting; nothing is half-written;
the rest of a batch is still written where that is safe.

Also covered in tests/plugins: over-long names and 4 e-mails into Outlook
(test_target_outlook.py::test_bad_records_are_rejected_one_by_one), records without key or
fields (test_target_pipeliner.py::test_a_record_without_key_or_contact_fields_is_rejected),
bad records into the mapper (test_mapper.py::test_records_that_are_neither_contacts_nor_tombstones),
a selection of bad settings per plugin (the bad_settings tests of each plugin's module).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from contactsync.outlook.records import CONTACT_SCHEMA as OUTLOOK_SCHEMA
from contactsync.pipeliner.records import CONTACT_SCHEMA as PIPELINER_SCHEMA
from contactsync.sync.record import SOURCE_PROPERTIES
from tests.reliability.conftest import Sync, contact
from tests.support.plugins import BIN

TO_OUTLOOK = {"type": "object", "properties": {**OUTLOOK_SCHEMA["properties"], **SOURCE_PROPERTIES}}
TO_PIPELINER = {
    "type": "object",
    "properties": {**PIPELINER_SCHEMA["properties"], **SOURCE_PROPERTIES},
}


def run_raw(executable: str, config: dict[str, Any], workdir: Path, lines: list[bytes]) -> Any:
    """Run a plugin on exactly these stdin bytes (one line each)."""
    path = workdir / f"{executable}.raw.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [str(BIN / executable), "--config", str(path)],
        input=b"".join(line + b"\n" for line in lines),
        capture_output=True,
        timeout=120,
        cwd=workdir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def msg(**m: Any) -> bytes:
    return json.dumps(m).encode()


def schema_msg(schema: dict[str, Any]) -> bytes:
    return msg(type="SCHEMA", stream="contacts", schema=schema, key_properties=[])


def rec(r: dict[str, Any]) -> bytes:
    return msg(type="RECORD", stream="contacts", record=r)


def raw_rec(body: bytes) -> bytes:
    return b'{"type": "RECORD", "stream": "contacts", "record": ' + body + b"}"


def report(sync: Sync, target: str) -> dict[str, Any]:
    return json.loads((sync.workdir / f"{target}.report.json").read_text())


# --- malformed Singer messages --------------------------------------------------------------

MALFORMED = {
    "non-JSON line": (b"this is not json {", "Unable to parse line as JSON"),
    "unknown message type": (msg(type="BANANA", stream="contacts"), "Unknown message type"),
    "RECORD before SCHEMA": (None, "before"),
}


@pytest.mark.parametrize("plugin", ["target-outlook-contacts", "target-pipeliner-contacts"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_message_stops_the_run_and_writes_nothing(
    plugin: str, case: str, sync: Sync, record_outcome: Any
) -> None:
    sync.pipeliner.seed([])
    sync.outlook.new_folder(sync.folder)
    outlook = plugin == "target-outlook-contacts"
    schema = TO_OUTLOOK if outlook else TO_PIPELINER
    good = (
        {"_source_id": "p-1", "givenName": "Good", "surname": "One"}
        if outlook
        else {"_source_id": "o-1", "first_name": "Good", "last_name": "One"}
    )
    line, message = MALFORMED[case]
    lines = [rec(good)] if line is None else [schema_msg(schema), rec(good), line, rec(good)]
    done = run_raw(plugin, sync.config(plugin), sync.workdir, lines)
    stderr = done.stderr.decode(errors="replace")
    written = len(sync.outlook_contacts()) if outlook else len(sync.pipeliner.contacts())
    record_outcome(
        section="bad input",
        cell=f"{case} → {plugin}",
        outcome=f"exit {done.returncode}, {written} written",
        survived=done.returncode != 0 and message in stderr and written == 0,
    )
    assert done.returncode != 0
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert message in last, stderr[-2000:]
    assert written == 0 and sync.links() == {}


def test_malformed_messages_stop_the_mapper_naming_them(sync: Sync, record_outcome: Any) -> None:
    config_path = sync.workdir / "mapper.json"
    config_path.write_text(json.dumps({"direction": "pipeliner_to_outlook"}))
    for case, (line, _message) in MALFORMED.items():
        record = {"id": "c-1", "first_name": "A", "_sync_user_relation": "owner"}
        lines = [rec(record)] if line is None else [line]
        done = subprocess.run(
            [str(BIN / "contactsync-mapper"), "--config", str(config_path)],
            input=b"".join(x + b"\n" for x in lines),
            capture_output=True,
            timeout=60,
        )
        stderr = done.stderr.decode(errors="replace")
        ok = done.returncode != 0 and not done.stdout.strip()
        record_outcome(section="bad input", cell=f"{case} → contactsync-mapper", survived=ok)
        assert ok, stderr[-2000:]
        assert stderr.strip(), case


# --- bad records --------------------------------------------------------------------------------


def _bad_batch(outlook: bool) -> tuple[list[bytes], set[str], dict[str, str]]:
    """A batch mixing good and bad records: lines, keys that must be written, and the keys
    that must be reported with a word of the reason."""
    if outlook:
        name = ("givenName", "surname")
        four = [{"address": f"x{i}@bad.example", "name": ""} for i in range(4)]
        emails: dict[str, Any] = {"emailAddresses": four}
        notes = "personalNotes"
    else:
        name = ("first_name", "last_name")
        emails = {f"email{i}": f"x{i}@bad.example" for i in range(1, 5)}
        notes = "comments"
    g, s = name
    prefix = "p" if outlook else "o"
    lines = [
        schema_msg(TO_OUTLOOK if outlook else TO_PIPELINER),
        rec({"_source_id": f"{prefix}-ok1", g: "Good", s: "First"}),
        rec({"_source_id": f"{prefix}-type", g: 42, s: ["not", "a", "string"]}),
        rec({g: "No", s: "Key"}),
        rec({"_source_id": f"{prefix}-mail", g: "Four", s: "Mails", **emails}),
        rec({"_source_id": f"{prefix}-notes", g: "Long", s: "Notes", notes: "n" * 100_000}),
        raw_rec(
            b'{"_source_id": "' + prefix.encode() + b'-utf8", "' + g.encode() + b'": "\xff\xfe"}'
        ),
        raw_rec(
            b'{"_source_id": "' + prefix.encode() + b'-esc", "' + g.encode() + b'": "a\\ud800b"}'
        ),
        rec({"_source_id": f"{prefix}-ctl", g: "Ctl\x00\x07\x1bName", s: "Bell\u0085"}),
        rec({"_source_id": f"{prefix}-ok2", g: "Good", s: "Last"}),
    ]
    written = {f"{prefix}-ok1", f"{prefix}-ctl", f"{prefix}-ok2"}
    reported = {
        f"{prefix}-type": g,
        "(no key)": "key",
        f"{prefix}-utf8": "Unicode",
        f"{prefix}-esc": "Unicode",
    }
    if outlook:
        reported[f"{prefix}-mail"] = "3 e-mail"
    else:
        written.add(f"{prefix}-mail")  # email4 is never mapped: the rest is written
    return lines, written, reported


@pytest.mark.parametrize("plugin", ["target-outlook-contacts", "target-pipeliner-contacts"])
def test_bad_records_are_rejected_by_name_and_the_rest_is_written(
    plugin: str, sync: Sync, record_outcome: Any
) -> None:
    sync.pipeliner.seed([])
    sync.outlook.new_folder(sync.folder)
    outlook = plugin == "target-outlook-contacts"
    lines, written, reported = _bad_batch(outlook)
    for _attempt in (1, 2):  # the rerun writes nothing twice and reports the same records
        done = run_raw(plugin, sync.config(plugin), sync.workdir, lines)
        stderr = done.stderr.decode(errors="replace")
        assert done.returncode == 0, stderr[-3000:]
        issues = {i["record_id"]: i["reason"] for i in report(sync, plugin)["issues"]}
        if outlook:
            rows = sync.outlook_contacts()
            names = [f"{c.get('givenName')} {c.get('surname')}" for c in rows]
        else:
            rows = sync.pipeliner.contacts()
            names = [f"{c.get('first_name')} {c.get('last_name')}" for c in rows]
        links = sync.links()
        linked = set(links) if not outlook else {p for p in links}
        # Notes of 100,000 characters: written whole, or refused by the API by name.
        notes_key = f"{'p' if outlook else 'o'}-notes"
        expected = written | ({notes_key} if notes_key not in issues else set())
        assert len(rows) == len(expected), names
        assert "CtlName Bell" in names  # control characters dropped, the record written
        for key, word in reported.items():
            assert key in issues and word in issues[key], (key, issues)
        if notes_key in issues:
            assert "personalNotes" in issues[notes_key] or "comments" in issues[notes_key]
        assert len(linked) == len(expected)
    record_outcome(
        section="bad input",
        cell=f"bad records → {plugin}",
        outcome=f"{len(expected)} of 9 written; "
        + ", ".join(f"{k}: {v[:60]}" for k, v in sorted(issues.items())),
        lost=0,
        duplicates=0,
        survived=True,
    )


def test_a_record_the_mapper_drops_is_not_deleted_by_a_complete_listing(
    sync: Sync, tmp_path: Path, record_outcome: Any
) -> None:
    """A full listing (first read, or a resync) tells the target that every linked contact
    not in it is gone. A record the mapper could not map is still in the listing."""
    sync.pipeliner.seed([contact(1), contact(2)])
    sync.outlook.new_folder(sync.folder)
    first = sync.leg("pipeliner_to_outlook")
    assert first.ok, first.stderr[-3000:]
    assert len(sync.outlook_contacts()) == 2
    live = sync.in_scope_pipeliner()
    # The same listing again, as a tap would send it after a resync; one record is broken.
    records = [{**c, "_sync_user_relation": "owner", "_sync_user_can_delete": True} for c in live]
    records[1]["first_name"] = {"not": "a string"}
    stream = tmp_path / "listing.jsonl"
    lines = [
        msg(type="SCHEMA", stream="contacts", schema=PIPELINER_SCHEMA, key_properties=["id"]),
        *(rec(r) for r in records),
        msg(type="ACTIVATE_VERSION", stream="contacts", version=1),
    ]
    stream.write_bytes(b"".join(line + b"\n" for line in lines))
    leg = sync.leg("pipeliner_to_outlook", tap_output=stream)
    assert leg.ok, leg.stderr[-3000:]
    left = sync.outlook_contacts()
    record_outcome(
        section="bad input",
        cell="a record dropped by the mapper inside a complete listing",
        lost=2 - len(left),
        duplicates=0,
        survived=len(left) == 2,
    )
    assert len(left) == 2, "the copy of a contact the mapper could not map was deleted"
    assert records[1]["id"] in leg.stderr
