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
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from contactsync.space_secrets import SpaceSecrets
from contactsync.users import RunRecord, SpaceConfig, UserSync

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
#: The plugins reading ``sync_option`` (the one-way-all job must not get one).
OPTION_PLUGINS: Final = (
    "CONTACTSYNC_MAPPER",
    "TAP_PIPELINER_CONTACTS",
    "TARGET_PIPELINER_CONTACTS",
)
#: Report file of each target, by the leg it writes.
REPORTS: Final = {
    "TARGET_OUTLOOK_CONTACTS": "pipeliner-to-outlook.json",
    "TARGET_OUTLOOK_CONTACTS_ONE_WAY": "pipeliner-to-outlook.json",
    "TARGET_PIPELINER_CONTACTS": "outlook-to-pipeliner.json",
}
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
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def record(self) -> RunRecord:
        return RunRecord(
            started_at=self.started_at,
            finished_at=self.finished_at,
            status="ok" if self.ok else "failed",
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
        for plugin in OPTION_PLUGINS:
            env[f"{plugin}_SYNC_OPTION"] = user.sync_option
    return env


def base_env(setup: RunSetup, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The parent's environment, minus what would point Meltano at the main project."""
    env = {k: v for k, v in environ.items() if k != "MELTANO_PROJECT_ROOT"}
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
        links += [(project / name, slot / name) for name in (".env", "plugins")]
        for source, link in links:
            if source.exists() and not link.is_symlink():
                link.symlink_to(source, target_is_directory=source.is_dir())
        return slot


# --------------------------------------------------------------------------- running


def ensure_state_db(setup: RunSetup, environ: Mapping[str, str] = os.environ) -> None:
    """Create/migrate a new SQLite system database once, before runs race to do it."""
    uri = setup.state_db_uri
    if not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///") :]).exists():
        return
    with WorkingCopies(setup).acquire() as slot:
        subprocess.run(
            [setup.meltano, "state", "list"],
            cwd=slot,
            env=base_env(setup, environ),
            capture_output=True,
            timeout=300,
            check=False,
        )


def run_user(
    setup: RunSetup,
    space: SpaceConfig,
    secrets: SpaceSecrets,
    user: UserSync,
    environ: Mapping[str, str] = os.environ,
) -> RunResult:
    """`meltano run --state-id-suffix=<user> <job>` in a free working copy; never raises for a
    failed run (the result says what went wrong)."""
    reports = report_dir(setup, user)
    reports.mkdir(parents=True, exist_ok=True)
    for name in set(REPORTS.values()):
        (reports / name).unlink(missing_ok=True)  # never read a previous run's report
    log_path = setup.data_dir / "logs" / f"{user.state_suffix}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**base_env(setup, environ), **user_env(setup, space, secrets, user)}
    cmd = [setup.meltano, "run", f"--state-id-suffix={user.state_suffix}", user.job]
    started = datetime.now(UTC)
    error: str | None = None
    with WorkingCopies(setup).acquire() as slot, log_path.open("w", encoding="utf-8") as log:
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
            code = done.returncode
        except subprocess.TimeoutExpired:
            code, error = -1, f"timed out after {setup.timeout:.0f} s"
        except OSError as exc:
            code, error = -1, f"cannot start {setup.meltano}: {exc.strerror}"
    counts, report_error = read_reports(reports)
    if code != 0 and error is None:
        error = report_error or _last_error(log_path) or f"meltano exited with {code}"
    elif report_error and error is None:
        error = report_error
    if error:
        error = f"{error} (log: {log_path})"
    return RunResult(
        email=user.email,
        job=user.job,
        started_at=started,
        finished_at=datetime.now(UTC),
        returncode=code,
        counts=counts,
        error=error,
        log_path=log_path,
    )


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


def _last_error(log_path: Path) -> str | None:
    """The most telling line of a failed run's log: the last one naming an error."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(encoding="utf-8").splitlines()]
    except OSError:
        return None
    lines = [_LOG_PREFIX.sub("", ln) for ln in lines if ln]
    for line in reversed(lines):
        if any(s in line for s in ("Error:", "error:", "Exception:", "failed")):
            return line[-400:]
    return lines[-1][-400:] if lines else None


#: Meltano's log prefix: ``2026-01-01T00:00:00.000000Z [error    ] meltano      ``.
_LOG_PREFIX = re.compile(r"^\S+Z \[\w+\s*\] \S+\s+")


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
