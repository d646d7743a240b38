"""Crashes: the target killed (SIGKILL) after 0, 1 and several batches, run after run, with
edits in between; the tap killed in the middle of its pages; `meltano run` itself killed in
the middle of a `contactsync run --parallel`, and rerun at once. Each rerun picks up what the
killed one left (ledger, stamps, Singer state) and converges with no duplicate and no lost edit.

Also covered in tests/plugins (a single kill after several batches), in test_target_outlook.py
and test_target_pipeliner.py: test_killed_mid_run_then_rerun_creates_no_duplicate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from contactsync.ops.meltano_runs import RunSetup, user_run_lock
from contactsync.ops.users import Registry, state_suffix_for
from contactsync.outlook.projection import from_graph, pipeliner_stamp
from tests.e2e import test_cli_users, test_orchestrator
from tests.e2e.test_cli_users import ALEX, MEGAN, NESTOR, ROOT, Cli, Space
from tests.e2e.test_orchestrator import Databases
from tests.reliability.conftest import (
    GRAPH_DATA,
    PIPELINER_DATA,
    Sync,
    contact,
    email_of_graph,
    person,
)
from tests.support.plugins import BIN, wait_for

KILLS = (0, 1, 3)
cli = test_cli_users.cli  # the `contactsync` fixtures, for the runs that kill `meltano run`
databases = test_orchestrator.databases  # batches written before the kill, run after run


def _safe_count(sync: Sync) -> int:
    try:
        return len(sync.outlook_contacts())
    except Exception:  # the folder does not exist yet
        return 0


def test_target_outlook_killed_after_0_1_several_batches(sync: Sync, record_outcome: Any) -> None:
    total = 150
    sync.pipeliner.seed([contact(n) for n in range(1, total + 1)])
    sync.outlook.new_folder(sync.folder)
    sync.extra["target-outlook-contacts"] = {"max_concurrency": 1}  # one $batch at a time
    graph = sync.outlook.control
    edits: dict[str, str] = {}
    written: dict[int, int] = {}
    for batches in KILLS:
        before = _safe_count(sync)
        graph.latency(0.4, path_prefix=GRAPH_DATA + "$batch", method="POST")
        if batches == 0:  # slow reads: the kill lands while the target's first read is out
            graph.latency(1.0, path_prefix=GRAPH_DATA, method="GET")
        pipeline = sync.start_leg("pipeliner_to_outlook")
        if batches == 0:  # counted on arrival: the target is up, nothing written yet
            wait_for(lambda: sync.outlook.requests("GET") >= 1, what="the target to start")
        else:  # each $batch writes 20 contacts
            wait_for(
                lambda n=batches, b=before, p=pipeline: (
                    _safe_count(sync) >= b + 20 * n
                    or p.procs["target-outlook-contacts"].poll() is not None
                ),
                what=f"{batches} batches",
            )
        pipeline.kill("target-outlook-contacts")
        leg = sync.finish_leg(pipeline)
        graph.clear_faults()
        assert leg.returncodes["target-outlook-contacts"] == -9
        copies = sync.outlook_contacts()
        stamps = Counter(pipeliner_stamp(c) for c in copies)
        assert all(n == 1 for n in stamps.values()), "a contact was written twice"
        assert len(copies) < total
        # Edit a contact the killed run already wrote (or not): the edit must arrive.
        target = sorted(sync.in_scope_pipeliner(), key=lambda c: c["email1"])[batches]
        sync.pipeliner.edit("alex", target["id"], position=f"after kill {batches}")
        edits[target["email1"]] = f"after kill {batches}"
        written[batches] = len(copies) - before
    leg = sync.leg("pipeliner_to_outlook")
    assert leg.ok, leg.stderr[-3000:]
    copies = sync.outlook_contacts()
    emails = Counter(email_of_graph(c) for c in copies)
    lost = total - len(emails)
    duplicates = sum(n - 1 for n in emails.values())
    titles = {email_of_graph(c): from_graph(c)["job_title"] for c in copies}
    lost_edits = sum(titles.get(e) != v for e, v in edits.items())
    assert len(sync.links()) == total
    for row in KILLS:
        record_outcome(
            section="crashes",
            cell=f"target-outlook-contacts killed after {row} batch(es)",
            outcome=f"{written[row]} contacts written before the kill",
            lost=lost + lost_edits,
            duplicates=duplicates,
            survived=lost == duplicates == lost_edits == 0,
        )
    assert (lost, duplicates, lost_edits) == (0, 0, 0)


def test_target_pipeliner_killed_after_0_and_1_batches(sync: Sync, record_outcome: Any) -> None:
    total = 150
    sync.pipeliner.seed([])
    sync.outlook.new_folder(sync.folder)
    for n in range(1, total + 1):
        sync.outlook.create(sync.folder, **person(n))
    pipeliner = sync.pipeliner.control
    edits: dict[str, str] = {}
    written: dict[int, int] = {}
    for batches in (0, 1):
        before = len(sync.pipeliner.contacts())
        pipeliner.latency(0.5, path_prefix=PIPELINER_DATA, method="POST")
        if batches == 0:  # slow reads: the kill lands while the target's first read is out
            pipeliner.latency(1.0, path_prefix=PIPELINER_DATA, method="GET")
        pipeline = sync.start_leg("outlook_to_pipeliner")
        if batches == 0:  # counted on arrival: the target is up, nothing written yet
            wait_for(
                lambda: sync.pipeliner.requests("GET", "") >= 1, what="the target to read Pipeliner"
            )
        else:
            wait_for(
                lambda b=before, p=pipeline: (
                    len(sync.pipeliner.contacts()) >= b + 100
                    or p.procs["target-pipeliner-contacts"].poll() is not None
                ),
                what="one batch",
            )
        pipeline.kill("target-pipeliner-contacts")
        leg = sync.finish_leg(pipeline)
        pipeliner.clear_faults()
        assert leg.returncodes["target-pipeliner-contacts"] == -9, "finished before the kill"
        contacts = sync.pipeliner.contacts()
        emails = Counter(c["email1"] for c in contacts)
        assert all(n == 1 for n in emails.values()), "a contact was created twice"
        written[batches] = len(contacts) - before
        # An Outlook edit after the kill, to a contact the killed run did (or did not) write.
        copy = sorted(sync.outlook_contacts(), key=lambda c: email_of_graph(c) or "")[batches]
        sync.outlook.edit(copy["id"], jobTitle=f"after kill {batches}")
        edits[email_of_graph(copy) or ""] = f"after kill {batches}"
    leg = sync.leg("outlook_to_pipeliner")
    assert leg.ok, leg.stderr[-3000:]
    contacts = sync.pipeliner.contacts()
    emails = Counter(c["email1"] for c in contacts)
    lost = total - len(emails)
    duplicates = sum(n - 1 for n in emails.values())
    positions = {c["email1"]: c.get("position") for c in contacts}
    lost_edits = sum(positions.get(e) != v for e, v in edits.items())
    for row in (0, 1):
        record_outcome(
            section="crashes",
            cell=f"target-pipeliner-contacts killed after {row} batch(es)",
            outcome=f"{written[row]} contacts written before the kill",
            lost=lost + lost_edits,
            duplicates=duplicates,
            survived=lost == duplicates == lost_edits == 0,
        )
    assert (lost, duplicates, lost_edits) == (0, 0, 0)


@pytest.mark.parametrize("tap", ["tap-pipeliner-contacts", "tap-outlook-contacts"])
def test_tap_killed_mid_page_then_rerun_converges(
    tap: str, sync: Sync, record_outcome: Any
) -> None:
    total = 40
    pipeliner_side = tap == "tap-pipeliner-contacts"
    sync.pipeliner.seed([contact(n) for n in range(1, total + 1)] if pipeliner_side else [])
    sync.outlook.new_folder(sync.folder)
    if not pipeliner_side:
        for n in range(1, total + 1):
            sync.outlook.create(sync.folder, **person(n))
    direction = "pipeliner_to_outlook" if pipeliner_side else "outlook_to_pipeliner"
    control = sync.pipeliner.control if pipeliner_side else sync.outlook.control
    prefix = PIPELINER_DATA if pipeliner_side else GRAPH_DATA
    control.latency(0.3, path_prefix=prefix, method="GET")

    def pages() -> int:
        if pipeliner_side:
            return sync.pipeliner.requests("GET", "/entities/Contacts")
        return sync.outlook.requests("GET", "delta")

    pipeline = sync.start_leg(direction)
    wait_for(lambda: pages() >= 3, what="three pages")  # pages of 5: mid-listing
    pipeline.kill(tap)
    killed = sync.finish_leg(pipeline)
    control.clear_faults()
    assert killed.returncodes[tap] == -9
    # A partial listing deletes nothing, and nothing is written twice.
    if pipeliner_side:
        partial = Counter(email_of_graph(c) for c in sync.outlook_contacts())
    else:
        partial = Counter(c["email1"] for c in sync.pipeliner.contacts())
    assert all(n == 1 for n in partial.values())
    assert sum(partial.values()) < total

    # An edit after the kill, then the rerun.
    if pipeliner_side:
        first = sorted(sync.pipeliner.contacts(), key=lambda c: c["email1"])[0]
        sync.pipeliner.edit("alex", first["id"], position="after the kill")
        edited = first["email1"]
    else:
        first = sorted(sync.outlook_contacts(), key=lambda c: email_of_graph(c) or "")[0]
        sync.outlook.edit(first["id"], jobTitle="after the kill")
        edited = email_of_graph(first)
    rerun = sync.leg(direction)
    assert rerun.ok, rerun.stderr[-3000:]
    if pipeliner_side:
        rows = {email_of_graph(c): from_graph(c)["job_title"] for c in sync.outlook_contacts()}
        emails = Counter(email_of_graph(c) for c in sync.outlook_contacts())
    else:
        rows = {c["email1"]: c.get("position") for c in sync.pipeliner.contacts()}
        emails = Counter(c["email1"] for c in sync.pipeliner.contacts())
    lost = total - len(emails) + (rows.get(edited) != "after the kill")
    duplicates = sum(n - 1 for n in emails.values())
    record_outcome(
        section="crashes",
        cell=f"{tap} killed mid-page (after 3 pages of 5)",
        outcome=f"{sum(partial.values())} of {total} written before the kill",
        lost=lost,
        duplicates=duplicates,
        survived=lost == duplicates == 0,
    )
    assert (lost, duplicates) == (0, 0)


# --------------------------------------------------------------------------- meltano run itself


def _meltano_pid(suffix: str) -> int | None:
    """The `meltano run` process of one user's run (by its state-id suffix), if any."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if (
            any(w.endswith("/meltano") for w in words[:2])
            and f"--state-id-suffix={suffix}" in words
        ):
            return int(proc.name)
    return None


def test_meltano_run_killed_then_rerun_at_once_on_a_shared_deployment(
    cli: Cli,
    sandbox: Any,
    databases: Databases,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    record_outcome: Any,
) -> None:
    """A shared deployment (registry, ledger and Meltano state in PostgreSQL; the operator's
    environment sets MELTANO_SYS_DIR_ROOT): `contactsync run --all --parallel 3`, during which
    Alex's `meltano run` gets SIGKILL. The others finish; the next run of Alex, started at once,
    goes on (Meltano's job record of the killed run still says "running") and converges."""
    monkeypatch.setenv("CONTACTSYNC_LEDGER_URL", databases.registry)
    monkeypatch.setenv("MELTANO_DATABASE_URI", databases.meltano)
    shared = tmp_path / "image-wide-meltano"
    shared.mkdir()
    monkeypatch.setenv("MELTANO_SYS_DIR_ROOT", str(shared))  # e.g. set in a container image
    cli.db = Path("/nonexistent")  # the registry is in PostgreSQL now
    space = Space(sandbox)
    assert cli(*cli.enable_args, capsys=capsys)[0] == 0
    for email, args in {
        ALEX: ("--create-folder", space.folders[ALEX], "--sync-type", "two_way_your_contacts"),
        MEGAN: ("--create-folder", space.folders[MEGAN], "--sync-type", "one_way_your_contacts"),
        NESTOR: ("--folder", space.folders[NESTOR], "--sync-type", "one_way_all_contacts"),
    }.items():
        with cli.approving(email):
            code, _, err = cli("activate", "--user", email, *args, capsys=capsys)
        assert code == 0, err
    # Slow Graph writes for everyone, so that Alex's run is still going when it is killed.
    graph = sandbox.control("graph")
    graph.latency(1.0, path_prefix="/v1.0/", method="POST")
    suffix = state_suffix_for(ALEX)
    run = subprocess.Popen(
        [str(BIN / "contactsync"), "run", "--all", "--parallel", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        logs = cli.workdir / "data" / "logs" / suffix
        try:
            # The target writes (slowly): Meltano's job record is "running" by then.
            wait_for(
                lambda: any("opened ledger scope" in p.read_text() for p in logs.glob("*.log")),
                timeout=120,
                what="Alex's meltano run to start writing",
            )
        except AssertionError:
            run.kill()
            raise AssertionError(run.communicate()[0]) from None
        pid = _meltano_pid(suffix)
        assert pid is not None, "no `meltano run` process of Alex"
        os.kill(pid, signal.SIGKILL)
        out, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
        graph.clear_faults()
    assert run.returncode == 1, out
    assert "2 succeeded, 1 failed" in out, out  # each worker had its own .meltano/run/
    alex_line = next(ln for ln in out.splitlines() if f"] {ALEX}: FAILED" in ln)
    assert "meltano was killed (signal 9)" in alex_line, alex_line
    assert "METRIC" not in alex_line and "Run completed" not in alex_line
    assert not list(shared.iterdir()), "a worker used the operator's MELTANO_SYS_DIR_ROOT"
    status = cli.status(capsys)
    assert status[ALEX]["last_run"]["status"] == "failed"
    assert "killed" in status[ALEX]["last_run"]["error"]
    # The killed run's report says so (with the counts it got to), not the previous run's.
    reports = cli.workdir / "data" / "reports" / suffix
    errors = [json.loads(p.read_text())["error"] for p in reports.glob("*.json")]
    assert any(e and "killed" in e for e in errors), errors

    # At once: the killed run's job record is still "running" for Meltano; the ledger lock is
    # free, so the next run goes on.
    started = time.monotonic()
    code, out, err = cli("run", "--user", ALEX, capsys=capsys)
    rerun_seconds = time.monotonic() - started
    assert code == 0, out + err
    assert "1 succeeded, 0 failed" in out
    assert space.emails(ALEX) == ["p1.alex@client.example", "p2.alex@client.example"]
    assert cli.status(capsys)[ALEX]["last_run"]["status"] == "ok"

    # A second run of a user whose run is alive is refused at once, naming the holder.
    setup = RunSetup(
        project_dir=ROOT,
        data_dir=cli.workdir / "data",
        ledger_url=databases.registry,
        state_db_uri=databases.meltano,
    )
    with Registry(databases.registry) as registry:
        space_config, alex = registry.require_space(), registry.require(ALEX)
    with user_run_lock(setup, space_config, alex):
        code, out, _ = cli("run", "--user", ALEX, capsys=capsys)
    assert code == 1 and "REFUSED" in out and "locked by another contactsync run" in out, out
    refused = cli.status(capsys)[ALEX]["last_run"]
    assert refused["status"] == "refused" and f"pid {os.getpid()}" in refused["error"]

    emails = Counter(space.emails(ALEX))
    duplicates = sum(n - 1 for n in emails.values())
    record_outcome(
        section="crashes",
        cell="`meltano run` killed (SIGKILL) and rerun at once",
        outcome=f"rerun went on in {rerun_seconds:.0f} s (no wait for Meltano's stale job)",
        lost=2 - len(emails),
        duplicates=duplicates,
        survived=duplicates == 0 and len(emails) == 2,
    )
    record_outcome(
        section="crashes",
        cell="parallel runs under a shared MELTANO_SYS_DIR_ROOT (3 users, --parallel 3)",
        outcome="the 2 runs not killed succeeded; nothing written to the shared directory",
        lost=0,
        duplicates=0,
        survived=True,
    )
