"""Run users' syncs as `meltano run` processes: one user's settings as Meltano environment
variables, many users at once without tripping over each other.

Meltano keeps per-plugin files (config, catalog, state) under ``.meltano/run/<plugin>/`` of the
project, so two runs of the same tap in one project directory overwrite each other's files.
Each run therefore gets a **working copy** of the project: a directory with a copy of
``meltano.yml`` and a ``.meltano/`` whose plugin directories (the installed virtualenvs) are
symlinks to the project's, with its own ``run/``. Copies are slots, reused across runs and held
with ``flock`` while in use, so concurrent `contactsync run` processes on one machine (an
orchestrator's workers) never share one either. What must be shared is shared by URL:

* Meltano's state (per user: ``--state-id-suffix``) lives in one system database,
  ``MELTANO_DATABASE_URI`` (default: the project's ``.meltano/meltano.db``; PostgreSQL for a
  deployment);
* the links live in the ledger (``ledger_url``, the registry's database).

Secrets travel only in the child's environment; nothing here prints or logs them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from contactsync.ops import precheck as checks
from contactsync.ops.precheck import DEFAULT_MAX_INTERVAL_SECONDS
from contactsync.ops.space_secrets import SpaceSecrets
from contactsync.ops.users import RunRecord, SpaceConfig, UserSync
from contactsync.settings import link_partition
from contactsync.sync.ledger import Ledger, LedgerError, LedgerLocked, PartitionLedger
from contactsync.sync.link import Partition
from contactsync.sync.report import RunReport

#: Per-plugin environment-variable prefixes (plugin names of meltano.yml), by the API they use.
PIPELINER_PLUGINS: Final = (
    "TAP_PIPELINER_CONTACTS",
    "TAP_PIPELINER_CONTACTS_ALL",
    "TARGET_PIPELINER_CONTACTS",
)
OUTLOOK_PLUGINS: Final = (
    "TAP_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS_ONE_WAY",
)
#: The job-wide ``sync_option`` (meltano.yml hands it to the tap, the mapper and the target;
#: the one-way-all job must not get one).
OPTION_VARIABLE: Final = "CONTACTSYNC_SYNC_OPTION"
#: Report file of each target, by the leg it writes.
REPORTS: Final = {
    "TARGET_OUTLOOK_CONTACTS": "pipeliner-to-outlook.json",
    "TARGET_OUTLOOK_CONTACTS_ONE_WAY": "pipeliner-to-outlook.json",
    "TARGET_PIPELINER_CONTACTS": "outlook-to-pipeliner.json",
}
#: Logs kept per user (one file per run).
KEEP_LOGS: Final = 20
#: The mailbox part of a user's run lock's scope key: no real mailbox is named so.
RUN_LOCK_MAILBOX: Final = "(contactsync run)"
#: ``.meltano/`` entries shared by every working copy (installed plugins); the rest is per copy.
SHARED_MELTANO_DIRS: Final = (
    "extractors",
    "loaders",
    "mappers",
    "utilities",
    "transformers",
    "orchestrators",
    "files",
)


@dataclass(frozen=True)
class RunSetup:
    """Where runs happen and what they share; every path absolute."""

    project_dir: Path  # the Meltano project: meltano.yml and the installed plugins in .meltano/
    data_dir: Path  # per-user files: reports/, logs/, and the working copies in workers/
    ledger_url: str  # absolute SQLite path or a database URL (the registry's)
    state_db_uri: str  # MELTANO_DATABASE_URI shared by every run
    environment: str | None = None  # Meltano environment (None: the project's default)
    meltano: str = field(default_factory=lambda: default_meltano())
    timeout: float = 3600.0  # seconds one user's run may take
    lock_wait: float = 60.0  # seconds to wait for a killed run's last plugin to let go
    precheck: bool = True  # skip the run of a user with provably nothing to do (precheck.py)
    full_check_every: float = DEFAULT_MAX_INTERVAL_SECONDS  # a real run at least this often


def default_meltano() -> str:
    """The `meltano` beside this Python (the project venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "meltano"
    return str(beside) if beside.exists() else (shutil.which("meltano") or "meltano")


@dataclass(frozen=True)
class RunResult:
    """What one user's run did."""

    email: str
    job: str
    started_at: datetime
    finished_at: datetime
    returncode: int
    counts: dict[str, dict[str, int]]  # per leg ("pipeliner->outlook"): non-zero counters
    error: str | None
    log_path: Path | None  # None for a skipped run (no process, no log)
    refused: bool = False  # not started: another run of the user is alive
    skipped: str | None = None  # not started: the pre-check found nothing to do (why)
    ran_because: str | None = None  # why the pre-check ran the job (None: no pre-check)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None

    @property
    def status(self) -> str:
        """ok, skipped, refused or failed (as the registry keeps it)."""
        if self.skipped:
            return "skipped"
        return "ok" if self.ok else "refused" if self.refused else "failed"

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def record(self) -> RunRecord:
        return RunRecord(
            started_at=self.started_at,
            finished_at=self.finished_at,
            status=self.status,
            counts=self.counts,
            error=self.error,
        )


def report_dir(setup: RunSetup, user: UserSync) -> Path:
    return setup.data_dir / "reports" / user.state_suffix


def user_env(
    setup: RunSetup, space: SpaceConfig, secrets: SpaceSecrets, user: UserSync
) -> dict[str, str]:
    """The Meltano setting variables of one user's run (they win over meltano.yml)."""
    shared = {
        "SPACE_ID": space.space_id,
        "CA_BUNDLE": space.ca_bundle or "",
        "USER_EMAIL": user.email,
        "MAILBOX": user.mailbox,
        "FOLDER": user.folder_id,  # the id: a renamed folder stays the same scope
        "LEDGER_URL": setup.ledger_url,
    }
    pipeliner = {
        "SERVICE_URL": space.service_url,
        "API_USERNAME": space.api_username,
        "API_PASSWORD": secrets.api_password,
    }
    graph = {
        "AUTHORITY": space.authority,
        "CLIENT_ID": space.client_id,
        "GRAPH_URL": space.graph_url,
        "CREATE_FOLDER": "false",  # `activate` made the folder; a run never invents one
        "CLIENT_SECRET": secrets.client_secret or "",
        "TOKEN_CACHE_PATH": user.token_cache or "",
    }
    env: dict[str, str] = {}
    for plugins, specific in ((PIPELINER_PLUGINS, pipeliner), (OUTLOOK_PLUGINS, graph)):
        for plugin in plugins:
            for key, value in {**shared, **specific}.items():
                env[f"{plugin}_{key}"] = value
    for plugin, name in REPORTS.items():
        env[f"{plugin}_REPORT_PATH"] = str(report_dir(setup, user) / name)
    if user.sync_option and user.sync_type != "one_way_all_contacts":
        env[OPTION_VARIABLE] = user.sync_option
    return env


#: Variables of the operator's environment a run must not inherit: they would point every
#: worker at one project or one `.meltano/` (MELTANO_SYS_DIR_ROOT: parallel runs would share
#: `run/` and delete each other's catalogs), or give every user the operator's sync option.
NOT_INHERITED: Final = ("MELTANO_PROJECT_ROOT", "MELTANO_SYS_DIR_ROOT", OPTION_VARIABLE)


def base_env(setup: RunSetup, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The parent's environment, minus what would point Meltano at the main project."""
    env = {k: v for k, v in environ.items() if k not in NOT_INHERITED}
    env["MELTANO_DATABASE_URI"] = setup.state_db_uri
    env.setdefault("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
    # The copies share the project's plugin virtualenvs: a run must never (re)install into them
    # (two copies installing at once break them); a missing plugin fails the run instead.
    env["MELTANO_AUTO_INSTALL"] = "false"
    if setup.environment:
        env["MELTANO_ENVIRONMENT"] = setup.environment
    return env


# --------------------------------------------------------------------------- working copies


class WorkingCopies:
    """Slots ``<data_dir>/workers/<n>/``, each a runnable copy of the Meltano project."""

    def __init__(self, setup: RunSetup) -> None:
        self.setup = setup
        self.root = setup.data_dir / "workers"

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Path]:
        """The first free slot, locked for this run (a new one when all are busy)."""
        self.root.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            fd = os.open(self.root / f"{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                n += 1
                continue
            try:
                yield self._prepare(self.root / str(n))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return

    def _prepare(self, slot: Path) -> Path:
        project = self.setup.project_dir
        (slot / ".meltano").mkdir(parents=True, exist_ok=True)
        spec = (project / "meltano.yml").read_bytes()
        target = slot / "meltano.yml"
        if not target.exists() or target.read_bytes() != spec:  # Meltano wants a real file
            tmp = slot / "meltano.yml.tmp"
            tmp.write_bytes(spec)
            tmp.replace(target)
        links = [(project / ".meltano" / d, slot / ".meltano" / d) for d in SHARED_MELTANO_DIRS]
        # catalogs/: the taps' shipped catalogs (meltano.yml's `catalog` extra; no discovery).
        links += [(project / name, slot / name) for name in (".env", "plugins", "catalogs")]
        for source, link in links:
            if source.exists() and not link.is_symlink():
                link.symlink_to(source, target_is_directory=source.is_dir())
        return slot


# --------------------------------------------------------------------------- running


def ensure_state_db(setup: RunSetup, environ: Mapping[str, str] = os.environ) -> None:
    """Create/migrate a new system database once, before parallel runs race to do it (they
    fail with "Cannot upgrade the system database" otherwise, on SQLite and PostgreSQL)."""
    if _state_db_ready(setup.state_db_uri):
        return
    with WorkingCopies(setup).acquire() as slot:
        env = base_env(setup, environ)
        env["MELTANO_SYS_DIR_ROOT"] = str(slot / ".meltano")
        subprocess.run(
            [setup.meltano, "state", "list"],
            cwd=slot,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )


def _state_db_ready(uri: str) -> bool:
    """Whether Meltano's system database exists and has been migrated at least once."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).exists()
    from sqlalchemy import create_engine, inspect  # only for a database server

    try:
        engine = create_engine(uri)
    except Exception:  # an unknown driver: let Meltano say what is wrong
        return True
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("alembic_version")
    except Exception:
        return False  # Meltano will create it, or say why it cannot
    finally:
        engine.dispose()


def run_user(
    setup: RunSetup,
    space: SpaceConfig,
    secrets: SpaceSecrets,
    user: UserSync,
    environ: Mapping[str, str] = os.environ,
) -> RunResult:
    """`meltano run --state-id-suffix=<user> <job>` in a free working copy; never raises for a
    failed run (the result says what went wrong).

    Holds the user's run lock (``user_run_lock``) for the whole run, so a second `contactsync
    run` of the same user is refused at once, naming the holder. Holding it, and with the
    user's ledger scope free (no plugin of an earlier run still writing), no run of this user is
    alive: a "running" job record Meltano kept from a killed run is stale, so the run passes
    ``--force`` instead of waiting minutes for Meltano to give that record up.
    """
    started = datetime.now(UTC)
    reports = report_dir(setup, user)
    reports.mkdir(parents=True, exist_ok=True)
    try:
        lock = user_run_lock(setup, space, user)
    except LedgerError as exc:
        return _refused(user, started, f"not started: {exc}", new_log_path(setup, user, started))
    env, fingerprint = _run_env(setup, space, secrets, user, environ)
    with lock:
        busy = wait_for_scope(setup, space, user, setup.lock_wait)
        if busy is not None:
            return _refused(
                user,
                started,
                f"not started: a plugin of an earlier run is still working: {busy}",
                new_log_path(setup, user, started),
            )
        decision = None
        if setup.precheck:
            decision = precheck_user(setup, space, user, env, fingerprint)
            if not decision.run:
                return RunResult(
                    email=user.email,
                    job=user.job,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    returncode=0,
                    counts={},
                    error=None,
                    log_path=None,
                    skipped=decision.reason,
                )
        log_path = new_log_path(setup, user, started)
        if decision is not None:
            log_path.write_text(f"pre-check: run, {decision.reason}\n", encoding="utf-8")
        # Until this run has succeeded, the next pre-check must not skip (even if we are killed).
        remember_run(setup, space, user, fingerprint, ok=False)
        for name in set(REPORTS.values()):
            (reports / name).unlink(missing_ok=True)  # never read a previous run's report
        code, error = _meltano_run(setup, user, env, log_path)
        if code != 0:  # a plugin of a killed run may still be finishing: let it write first
            wait_for_scope(setup, space, user, setup.lock_wait)
        counts, report_error = read_reports(reports)
        remember_run(setup, space, user, fingerprint, ok=code == 0 and not report_error)
    if code != 0 and error is None:
        error = (
            report_error
            or failure_cause(log_path.read_text(encoding="utf-8", errors="replace"))
            or (f"meltano was killed (signal {-code})" if code < 0 else None)
            or f"meltano exited with {code}"
        )
    elif report_error and error is None:
        error = report_error
    if code != 0 and error:
        write_failed_report(reports, user.job, error)
        counts, _ = read_reports(reports)
    return RunResult(
        email=user.email,
        job=user.job,
        started_at=started,
        finished_at=datetime.now(UTC),
        returncode=code,
        counts=counts,
        error=error,
        log_path=log_path,
        ran_because=decision.reason if decision is not None else None,
    )


def _run_env(
    setup: RunSetup,
    space: SpaceConfig,
    secrets: SpaceSecrets,
    user: UserSync,
    environ: Mapping[str, str],
) -> tuple[dict[str, str], str]:
    """The environment of the user's `meltano run`, and the fingerprint of its settings."""
    env = {**base_env(setup, environ), **user_env(setup, space, secrets, user)}
    fingerprint = checks.settings_fingerprint(
        user.job, {"environment": setup.environment}, env, setup.project_dir
    )
    return env, fingerprint


def precheck_decision(
    setup: RunSetup,
    space: SpaceConfig,
    secrets: SpaceSecrets,
    user: UserSync,
    environ: Mapping[str, str] = os.environ,
) -> checks.Decision:
    """What `run_user`'s pre-check would decide now, running nothing (tests, benchmarks)."""
    env, fingerprint = _run_env(setup, space, secrets, user, environ)
    with user_run_lock(setup, space, user):
        return precheck_user(setup, space, user, env, fingerprint)


def precheck_user(
    setup: RunSetup, space: SpaceConfig, user: UserSync, env: Mapping[str, str], fingerprint: str
) -> checks.Decision:
    """The pre-check of a user whose run lock is held and ledger scope free (precheck.py)."""
    taps = [tap for tap, _ in checks.JOB_TASKS[user.job]]
    request = checks.Request(
        email=user.email,
        job=user.job,
        sync_type=user.sync_type,
        sync_option=user.sync_option,
        state_suffix=user.state_suffix,
        environment=setup.environment,
        state_db_uri=setup.state_db_uri,
        pipeliner=checks.plugin_settings(env, taps[0]),
        outlook=checks.plugin_settings(env, "tap-outlook-contacts"),
        fingerprint=fingerprint,
        max_interval=setup.full_check_every,
        project_dir=setup.project_dir,
    )
    try:
        with _read_partition(setup, space, user, "contactsync run (pre-check)") as (ledger, scope):
            return checks.check(request, checks.Store(ledger.engine), scope)
    except Exception as exc:  # in doubt, run
        return checks.run_because(f"the pre-check could not read the ledger: {exc}"[:300])


@contextlib.contextmanager
def _read_partition(
    setup: RunSetup, space: SpaceConfig, user: UserSync, owner: str
) -> Iterator[tuple[Ledger, PartitionLedger]]:
    """The user's ledger partition, read-only, for what the pre-check reads and remembers."""
    with (
        Ledger(setup.ledger_url) as ledger,
        ledger.open_partition(user_scope(space, user), owner=owner, read_only=True) as scope,
    ):
        yield ledger, scope


def remember_run(
    setup: RunSetup, space: SpaceConfig, user: UserSync, fingerprint: str, *, ok: bool
) -> None:
    """Keep what the next pre-check compares with: when this real run ended, whether it
    succeeded, the settings it ran with, the ledger's parked records and moved links."""
    try:
        with _read_partition(setup, space, user, "contactsync run (after the run)") as (
            ledger,
            scope,
        ):
            waiting = checks.waiting_work(scope)
            last = checks.LastRun(datetime.now(UTC), ok, fingerprint, waiting.digest)
            checks.Store(ledger.engine).put(user.email, last)
    except Exception as exc:  # the next run is then simply not skipped
        print(
            f"contactsync run: could not record the run for the pre-check: {exc}", file=sys.stderr
        )


def _meltano_run(
    setup: RunSetup, user: UserSync, environ: Mapping[str, str], log_path: Path
) -> tuple[int, str | None]:
    env = dict(environ)
    cmd = [setup.meltano, "run", "--force", f"--state-id-suffix={user.state_suffix}", user.job]
    with WorkingCopies(setup).acquire() as slot, log_path.open("a", encoding="utf-8") as log:
        env["MELTANO_SYS_DIR_ROOT"] = str(slot / ".meltano")  # this worker's own run/
        log.write(f"$ {' '.join(cmd)}  (in {slot})\n")
        log.flush()
        try:
            done = subprocess.run(
                cmd,
                cwd=slot,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=setup.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return -1, f"timed out after {setup.timeout:.0f} s"
        except OSError as exc:
            return -1, f"cannot start {setup.meltano}: {exc.strerror}"
    return done.returncode, None


def _refused(user: UserSync, started: datetime, reason: str, log_path: Path) -> RunResult:
    log_path.write_text(reason + "\n", encoding="utf-8")
    return RunResult(
        email=user.email,
        job=user.job,
        started_at=started,
        finished_at=datetime.now(UTC),
        returncode=-1,
        counts={},
        error=reason,
        log_path=log_path,
        refused=True,
    )


# --------------------------------------------------------------------------- locks


def user_scope(space: SpaceConfig, user: UserSync) -> Partition:
    """The ledger scope the user's targets lock while they write (as they compute it)."""
    return link_partition(
        {
            "user_email": user.email,
            "space_id": space.space_id,
            "mailbox": user.mailbox,
            "folder": user.folder_id,
        }
    )


class _HeldLock:
    def __init__(self, ledger: Ledger, scope: PartitionLedger) -> None:
        self.ledger, self.scope = ledger, scope

    def __enter__(self) -> _HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.scope.close()
        finally:
            self.ledger.close()


def user_run_lock(setup: RunSetup, space: SpaceConfig, user: UserSync) -> _HeldLock:
    """The lock a `contactsync run` holds on one user for the whole `meltano run`.

    It is a ledger run lock (a file lock beside a SQLite ledger, a PostgreSQL advisory lock on a
    shared one) on a scope of its own, so it works across the machines of a deployment and dies
    with the process that holds it. Raises LedgerLocked naming the holder.
    """
    ledger = Ledger(setup.ledger_url)
    key = Partition(
        user=user.email, space=space.space_id, mailbox=RUN_LOCK_MAILBOX, folder=user.state_suffix
    )
    try:
        return _HeldLock(
            ledger, ledger.open_partition(key, owner=f"contactsync run of {user.email}")
        )
    except BaseException:
        ledger.close()
        raise


def wait_for_scope(
    setup: RunSetup, space: SpaceConfig, user: UserSync, seconds: float
) -> str | None:
    """Wait until no process holds the user's ledger scope; who holds it if still busy.

    A killed `meltano run` can leave its target running for a moment (it finishes the batch it
    holds when its input closes): the next run waits for it rather than fail on the lock.
    """
    deadline = time.monotonic() + seconds
    with Ledger(setup.ledger_url) as ledger:
        while True:
            try:
                ledger.open_partition(
                    user_scope(space, user), owner="contactsync run (probe)"
                ).close()
                return None
            except LedgerLocked as exc:
                if time.monotonic() >= deadline:
                    return exc.holder.describe() if exc.holder else str(exc)
            time.sleep(0.5)


# --------------------------------------------------------------------------- logs and reports


def new_log_path(setup: RunSetup, user: UserSync, started: datetime) -> Path:
    """A log file of this run alone; the user's newest ``KEEP_LOGS`` are kept."""
    folder = setup.data_dir / "logs" / user.state_suffix
    folder.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%S")
    path = folder / f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:6]}.log"
    path.touch()
    for old in sorted(folder.glob("*.log"))[:-KEEP_LOGS]:
        old.unlink(missing_ok=True)
    return path


#: Legs of each job, in the order they run, by their report file.
JOB_LEGS: Final = {
    "two-way-your-contacts": ("pipeliner-to-outlook.json", "outlook-to-pipeliner.json"),
    "one-way-your-contacts": ("pipeliner-to-outlook.json",),
    "one-way-all-contacts": ("pipeliner-to-outlook.json",),
}


#: The plugins of the Outlook -> Pipeliner leg (the others are of the Pipeliner -> Outlook one).
_SECOND_LEG_PLUGINS: Final = ("tap-outlook-contacts", "target-pipeliner-contacts")


def write_failed_report(directory: Path, job: str, error: str) -> None:
    """Put a failed run's error into the report of the leg it failed in, with the counts that
    leg got to (or none), so that a crashed run never leaves no report, or a clean one.

    The leg is the one of the plugin the error names; else the first leg without a report.
    """
    legs = JOB_LEGS.get(job, ())
    if not legs:
        return
    plugin = error.split(":", 1)[0].strip()
    if plugin.startswith(_SECOND_LEG_PLUGINS) and len(legs) > 1:
        name = legs[1]
    elif plugin.startswith(("tap-pipeliner-contacts", "target-outlook-contacts")):
        name = legs[0]
    else:
        name = next((n for n in legs if not (directory / n).exists()), legs[-1])
    path = directory / name
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        source, dest = name.removesuffix(".json").split("-to-")
        RunReport(source, dest, error=error).write(path)
        return
    if not report.get("error"):
        report["error"] = error
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)


def read_reports(directory: Path) -> tuple[dict[str, dict[str, int]], str | None]:
    """Non-zero counts per leg, and the first leg's error, from the targets' JSON reports."""
    counts: dict[str, dict[str, int]] = {}
    error = None
    for name in sorted(set(REPORTS.values()), reverse=True):  # pipeliner->outlook first
        path = directory / name
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        leg = str(report.get("leg") or name.removesuffix(".json"))
        counts[leg] = {k: int(v) for k, v in (report.get("counts") or {}).items() if v}
        error = error or report.get("error")
    return counts, error


#: Meltano's log line: ``2026-01-01T00:00:00.000000Z [error    ] <logger> <message>``, where the
#: logger is ``meltano`` or the plugin whose line it relays.
_LOG_LINE = re.compile(r"^\S+Z \[(?P<level>\w+)\s*\] (?P<name>\S+)\s+(?P<message>.*)$")
#: Context Meltano may append to a relayed line.
_LOG_CONTEXT = re.compile(
    r"(\s+(cmd_type|consumer|job_name|name|producer|run_id|stdio|string_id|state_id)=\S+)+$"
)
#: Meltano's own summary lines of a failed run: they say that something failed, not what.
_GENERIC = (
    "Block run completed",
    "Unexpected completion sequence",
    "Intermediate block",
    "Extractor failed",
    "Loader failed",
    "Mappers failed",
    "Mapper failed",
    "Run completed",
    "Need help fixing this problem",
)


def failure_cause(log: str) -> str | None:
    """What made a `meltano run` fail, from its log.

    The failing plugin's final ERROR line comes first (our plugins end a failed run with one
    that says what happened and what to do); else Meltano's own reason (e.g. "Another … pipeline
    is already running …"); else the last line naming an error. Never a METRIC line, never
    Meltano's "Run completed".
    """
    plugin_errors: list[str] = []
    meltano_errors: list[str] = []
    others: list[str] = []
    for raw in log.splitlines():
        line = raw.strip()
        match = _LOG_LINE.match(line)
        if not match:
            if re.match(r"^[A-Za-z_.]*(Error|Exception):", line):
                others.append(line)
            continue
        level, name = match["level"].lower(), match["name"]
        message = _LOG_CONTEXT.sub("", match["message"]).strip()
        if not message or message.startswith("METRIC"):
            continue
        if level in ("error", "critical"):
            if name != "meltano":
                plugin_errors.append(f"{name}: {message}")
            elif not message.startswith(_GENERIC):
                meltano_errors.append(message)
        elif re.search(r"\b\w*(Error|Exception):", message):
            others.append(f"{name}: {message}" if name != "meltano" else message)
    for found in (plugin_errors, meltano_errors, others):
        if found:
            return found[-1][:600]
    return None


Event = Callable[[str, UserSync, RunResult | None], None]


def run_users(
    setup: RunSetup,
    space: SpaceConfig,
    secrets: SpaceSecrets,
    users: Sequence[UserSync],
    *,
    parallel: int = 1,
    on_event: Event | None = None,
    environ: Mapping[str, str] = os.environ,
) -> list[RunResult]:
    """Every user's run, ``parallel`` at a time; ``on_event("start"|"done", user, result)``."""
    notify = on_event or (lambda *_: None)
    if len(users) > 1 and parallel > 1:
        ensure_state_db(setup, environ)

    def one(user: UserSync) -> RunResult:
        notify("start", user, None)
        result = run_user(setup, space, secrets, user, environ)
        notify("done", user, result)
        return result

    if parallel <= 1 or len(users) <= 1:
        return [one(u) for u in users]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="contactsync-run") as pool:
        futures = [pool.submit(one, u) for u in users]
        return [f.result() for f in futures]
