"""`make bench`: the sync through real `meltano run` against the sandbox, measured (issue #6).

Starts two sandboxes on free ports (one holding the data, one left empty for the baseline
runs), signs in through MSAL's device-code flow, and points Meltano at them through its setting
environment variables. Every figure comes from the sandbox's request counters, the target's
run report, /proc (peak RSS and CPU of each process, see ``bench.procs``) and a wall clock.
Writes ``docs/benchmarks.json``; ``bench.report`` turns it into ``docs/benchmarks.md`` and the
plot. Nothing here contacts anything but 127.0.0.1.

    python -m bench.run [--sizes 1000,10000,50000] [--out docs/benchmarks.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.procs import TreeSampler, _stat
from bench.quiet_floor import QuietFloor
from contactsync.sync.ledger import Ledger
from contactsync.sync.link import Partition
from contactsync_sandbox.client import SandboxControl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.meltano_env import meltano_env, private_sys_dir  # noqa: E402
from tests.support.plugins import USERS, sign_in  # noqa: E402

BIN = Path(sys.executable).parent
MELTANO = str(BIN / "meltano")
SPACE = "5a5a5a5a-0000-4000-8000-000000000001"
ALEX = "alex@contoso.example"
APIS = ("pipeliner", "graph", "identity")
#: DESIGN §7: reading Pipeliner costs 1 request per 100 contacts, writing Outlook 1 per 20.
PIPELINER_PAGE, GRAPH_BATCH = 100, 20
OUTLOOK_PLUGINS = (
    "TAP_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS",
    "TARGET_OUTLOOK_CONTACTS_ONE_WAY",
)
#: Graph's documented budget: 10,000 requests per 10 minutes per app and mailbox.
GRAPH_BUDGET, GRAPH_WINDOW = 10_000, 600.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the sandbox -----------------------------------------------------------------------------


class Sandbox:
    """`contactsync-sandbox serve --free-ports` as a child process (its CPU is measured too)."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.name = name
        self.workdir = workdir
        self.stderr = open(workdir / f"sandbox-{name}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(BIN / "contactsync-sandbox"),
                "serve",
                "--free-ports",
                "--state-dir",
                str(workdir / "sandbox-state"),
            ],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.info: dict[str, Any] = json.loads(self.proc.stdout.readline())
        self._controls: dict[str, SandboxControl] = {}

    def control(self, name: str) -> SandboxControl:
        if name not in self._controls:
            self._controls[name] = SandboxControl(
                self.info["urls"][name], self.info["ca_path"], timeout=300
            )
        return self._controls[name]

    def cpu_s(self) -> float:
        stat = _stat(self.proc.pid)
        return stat[1] if stat else 0.0

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.stderr.close()

    # Pipeliner and Graph as a person working in them, through the control API.

    def seed_pipeliner(self, count: int) -> None:
        """The default identities and accounts, and ``count`` plain contacts owned by Alex."""
        from contactsync_sandbox.seed import default_seed

        pipeliner = {k: v for k, v in default_seed()["pipeliner"].items() if k != "demo_contacts"}
        control = self.control("pipeliner")
        control.seed({**pipeliner, "contacts": []})
        if count:
            control._call(
                "POST",
                "/pipeliner/generate",
                json={"count": count, "owner_id": USERS["alex"], "seed": 1},
            )

    def graph(self, method: str, path: str, body: Any = None) -> Any:
        return self.control("graph")._call(method, f"/graph{path}", json=body)

    def new_folder(self, name: str) -> None:
        self.graph(
            "POST", f"/mailboxes/{ALEX}/folders", {"displayName": name, "parent": "Contacts"}
        )

    def drop_folder(self, name: str) -> None:
        url = f"{self.control('graph').control_url}/graph/mailboxes/{ALEX}/folders/{name}"
        self.control("graph").session.delete(url, timeout=300)

    def folder_count(self, name: str) -> int:
        for folder in self.graph("GET", f"/mailboxes/{ALEX}/folders")["folders"]:
            if folder.get("displayName", folder.get("name")) == name:
                counts = folder.get("counts") or {}
                return int(counts.get("contacts", folder.get("contacts", 0)))
        raise KeyError(name)

    def graph_stats(self) -> dict[str, int]:
        """Inner requests (budget units) and 429s of Alex's mailbox so far."""
        totals = {"requests": 0, "throttled_budget": 0, "throttled_concurrency": 0}
        for mailbox in self.graph("GET", "/stats")["mailboxes"].values():
            for key in totals:
                totals[key] += int(mailbox.get(key, 0))
        return totals


# --- one user's project ------------------------------------------------------------------------


class Project:
    """One user's sync through Meltano, isolated: own folder, ledger, state, reports."""

    def __init__(self, sandbox: Sandbox, cache: Path, workdir: Path, folder: str) -> None:
        self.sandbox = sandbox
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.suffix = uuid.uuid4().hex[:8]
        self.env = meltano_env(sandbox.info, cache, workdir, folder)
        # One private .meltano per sandbox (as before): its runs go one at a time.
        self.env["MELTANO_SYS_DIR_ROOT"] = str(private_sys_dir(sandbox.workdir))
        # The emulator has no budget unless a scenario sets one: no client-side budget either
        # (Graph's 10,000 per 10 minutes would pace the 50,000-contact run for an hour).
        self.pace(0, 600.0)

    def pace(self, requests: int, window: float) -> None:
        """The Outlook plugins' client-side Graph budget (contactsync.outlook.pacing)."""
        for plugin in OUTLOOK_PLUGINS:
            self.env[f"{plugin}_GRAPH_REQUESTS_PER_WINDOW"] = str(requests)
            self.env[f"{plugin}_GRAPH_WINDOW_SECONDS"] = str(window)

    def links(self) -> list[tuple[str, str]]:
        scope = Partition(ALEX, SPACE, "me", self.folder)
        with (
            Ledger(str(self.workdir / "ledger.sqlite")) as ledger,
            ledger.open_partition(scope) as s,
        ):
            return sorted((lk.crm_id, lk.book_id or "") for lk in s.iter_links())

    def run(self, job: str, label: str, n: int, timeout: float = 3600) -> dict[str, Any]:
        """One measured `meltano run`: wall, requests per API, each process's peak RSS and CPU."""
        sandbox = self.sandbox
        for api in APIS:
            sandbox.control(api).reset_counters()
        for report in self.workdir.glob("target_*.json"):
            report.unlink()
        graph_before = sandbox.graph_stats()
        load_before, cpu_before = load(), sandbox.cpu_s()
        stderr_path = self.workdir / f"{label}.stderr.log"
        cmd = [MELTANO, "run", f"--state-id-suffix={self.suffix}", job]
        log(f"{label}: meltano run {job} (N={n}, load {load_before})")
        started = time.perf_counter()
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )
            sampler = TreeSampler(proc.pid).start()
            try:
                returncode = proc.wait(timeout)
            finally:
                procs = sampler.stop()
        wall = time.perf_counter() - started
        if returncode != 0:
            tail = stderr_path.read_text()[-3000:]
            raise RuntimeError(f"{label}: meltano run exited {returncode}:\n{tail}")
        sandbox_cpu = sandbox.cpu_s() - cpu_before
        graph_after = sandbox.graph_stats()
        counters = {api: sandbox.control(api).counters() for api in APIS}
        processes: dict[str, dict[str, Any]] = {}
        for stats in procs.values():
            entry = processes.setdefault(stats.name, {"count": 0, "peak_rss_mb": 0.0, "cpu_s": 0.0})
            entry["count"] += 1
            entry["peak_rss_mb"] = max(entry["peak_rss_mb"], round(stats.peak_rss_kb / 1024, 1))
            entry["cpu_s"] = round(entry["cpu_s"] + stats.cpu_s, 2)
        reports = {}
        for path in self.workdir.glob("target_*.json"):
            body = json.loads(path.read_text())
            reports[path.stem] = {
                "counts": body.get("counts", {}),
                "issues": len(body.get("issues", [])),
            }
        result = {
            "label": label,
            "job": job,
            "n": n,
            "wall_s": round(wall, 2),
            "load_before": load_before,
            "load_after": load(),
            "requests": {api: counters[api]["total"]["requests"] for api in APIS},
            "statuses": {api: counters[api]["total"]["statuses"] for api in APIS},
            "endpoints": {
                api: {k: v["requests"] for k, v in counters[api]["endpoints"].items()}
                for api in ("pipeliner", "graph")
            },
            "graph_max_in_flight": counters["graph"]["total"]["max_in_flight"],
            "graph_units": graph_after["requests"] - graph_before["requests"],
            "graph_429": sum(
                graph_after[k] - graph_before[k] for k in graph_after if k != "requests"
            ),
            "sandbox_cpu_s": round(sandbox_cpu, 2),
            "processes": processes,
            "reports": reports,
        }
        rss = {name: entry["peak_rss_mb"] for name, entry in processes.items()}
        log(f"{label}: {wall:.1f}s, requests {result['requests']}, peak RSS MB {rss}")
        return result


# --- the scenarios -------------------------------------------------------------------------------


def floor_requests(n: int) -> dict[str, int]:
    return {"pipeliner": math.ceil(n / PIPELINER_PAGE), "graph": math.ceil(n / GRAPH_BATCH)}


def failed(result: dict[str, Any]) -> int:
    return sum(r["counts"].get("failed", 0) for r in result["reports"].values())


class Bench:
    def __init__(
        self,
        workdir: Path,
        sizes: list[int],
        throttle: tuple[int, float],
        request_seconds: float = 0.015,
        users: int = 20,
        parallel: int = 2,
    ) -> None:
        self.users, self.parallel = users, parallel
        self.workdir = workdir
        self.sizes = sizes
        self.throttle = throttle
        self.request_seconds = request_seconds
        self.main = Sandbox(workdir, "main")
        self.empty = Sandbox(workdir, "empty")
        self.caches = {
            name: sign_in(box, workdir / f"token-cache-{name}.json")
            for name, box in (("main", self.main), ("empty", self.empty))
        }
        self.results: dict[str, Any] = {}

    def close(self) -> None:
        self.main.close()
        self.empty.close()

    def project(self, sandbox: Sandbox, label: str) -> Project:
        folder = f"Bench {label}"
        sandbox.new_folder(folder)
        cache = self.caches["main" if sandbox is self.main else "empty"]
        return Project(sandbox, cache, self.workdir / label, folder)

    @contextmanager
    def fresh(self, n: int, label: str) -> Iterator[Project]:
        """A space of ``n`` contacts owned by Alex and an empty folder, removed afterwards."""
        self.main.seed_pipeliner(n)
        project = self.project(self.main, label)
        try:
            yield project
        finally:
            self.main.drop_folder(project.folder)

    def one_way(self) -> None:
        """1 (and 5): the initial one-way sync of N contacts, no throttling."""
        runs = []
        for n in self.sizes:
            with self.fresh(n, f"one-way-{n}") as project:
                result = project.run("one-way-your-contacts", f"one-way-{n}", n)
                result["folder_count"] = self.main.folder_count(project.folder)
                result["failed_writes"] = failed(result)
                result["floor_requests"] = floor_requests(n)
                if n == self._cpu_size():
                    self.results["cpu"] = self.cpu_floor(n, result)
            runs.append(result)
        self.results["one_way"] = runs

    def cpu(self) -> None:
        """6 alone: the one-way run at the CPU size and the floor, keeping the other rows of
        one_way (``--only cpu --merge`` re-measures the per-contact CPU row only)."""
        n = self._cpu_size()
        with self.fresh(n, f"one-way-{n}") as project:
            result = project.run("one-way-your-contacts", f"one-way-{n}", n)
            self.results["cpu"] = self.cpu_floor(n, result)

    def _cpu_size(self) -> int:
        return 10_000 if 10_000 in self.sizes else max(self.sizes)

    def throttled(self) -> None:
        """2: the same initial sync under Graph's limits, scaled to a shorter window."""
        n = self._cpu_size()
        requests, window = self.throttle
        with self.fresh(n, f"throttled-{n}") as project:
            # Graph's documented model (issue #13): 4 concurrent requests per mailbox, an
            # unordered batch's requests 4 at a time, each taking request_seconds; the budget
            # scaled. The client paces itself at the same budget (contactsync.outlook.pacing).
            self.main.graph(
                "POST",
                "/throttle",
                {
                    "concurrency": 4,
                    "batch_parallelism": 4,
                    "request_seconds": self.request_seconds,
                    "requests": requests,
                    "window_seconds": window,
                },
            )
            project.pace(requests, window)
            try:
                result = project.run("one-way-your-contacts", f"throttled-{n}", n)
                log_entries = self.main.control("graph").requests()
            finally:
                self.main.graph(
                    "POST", "/throttle", {"requests": None, "concurrency": 4, "request_seconds": 0}
                )
            result["folder_count"] = self.main.folder_count(project.folder)
            result["failed_writes"] = failed(result)
        result["throttled_share_of_writes"] = round(result["graph_429"] / n, 4)
        result["graph_window_requests"] = requests
        batches = [e for e in log_entries if e["endpoint"].endswith("$batch")]
        first = min(e["started"] for e in batches)
        last = max(e["started"] + e["duration_ms"] / 1000 for e in batches)
        phase = last - first
        ceiling = requests * (phase / window + 1)  # a sliding window admits a first burst
        last_start = max(e["started"] for e in batches) - first
        earliest = window * ((result["graph_units"] - 1) // requests)
        result.update(
            throttle={
                "concurrency": 4,
                "requests": requests,
                "window_seconds": window,
                "request_seconds": self.request_seconds,
                "client_pacing": {"requests": requests, "window_seconds": window},
                "scale": round((GRAPH_WINDOW / GRAPH_BUDGET) / (window / requests), 2),
            },
            write_phase_s=round(phase, 2),
            ceiling_units=round(ceiling),
            batches_logged=len(batches),
            batch_starts=[round(e["started"] - first, 2) for e in batches],
            ceiling_share=round(n / ceiling, 3),
            # The budget's pace: U units at B per window can be sent no sooner than the last
            # one at W * floor((U - 1) / B) after the first (a window's worth at once, then a
            # window's worth each window); the share is that over when our last batch was sent.
            earliest_last_s=earliest,
            last_batch_s=round(last_start, 2),
            budget_share=round(min(1.0, earliest / last_start) if last_start else 1.0, 3),
        )
        self.results["throttled"] = result

    def two_way(self) -> None:
        """3 and 4: quiet two-way runs against empty runs and the quiet floor (the same job
        shape with bare singer-sdk plugins), then 1% changed on each side."""
        sizes = [n for n in self.sizes if n >= 10_000] or [max(self.sizes)]
        self.empty.seed_pipeliner(0)
        empty = self.project(self.empty, "empty")
        empty.run("two-way-your-contacts", "empty-initial", 0)
        runs = []
        for n in sizes:
            with self.fresh(n, f"two-way-{n}") as project:
                initial = project.run("two-way-your-contacts", f"two-way-initial-{n}", n)
                quiet, baseline, floor = [], [], []
                floor_project = QuietFloor(self.workdir)
                for i in range(5):  # interleaved, so all three see the same load
                    baseline.append(empty.run("two-way-your-contacts", f"empty-{n}-{i}", 0))
                    quiet.append(project.run("two-way-your-contacts", f"quiet-{n}-{i}", n))
                    floor.append(floor_project.run())
                    log(f"quiet floor {i}: {floor[-1]['processes']}")
                changed = self.change_one_percent(project, n)
                result = project.run("two-way-your-contacts", f"changed-{n}", n)
            runs.append(
                {
                    "n": n,
                    "initial": initial,
                    "quiet": quiet,
                    "empty": baseline,
                    "quiet_floor": floor,  # bench.quiet_floor: four bare singer-sdk plugins
                    "quiet_wall_median": statistics.median(r["wall_s"] for r in quiet),
                    "empty_wall_median": statistics.median(r["wall_s"] for r in baseline),
                    "changed": {**result, "changed_each_side": changed},
                }
            )
        self.results["two_way"] = runs

    def many_users(self) -> None:
        """Users with nothing to do: `contactsync run --all --parallel K` (bench.many_users)."""
        from bench.many_users import measure

        log(f"many users: {self.users} users, --parallel {self.parallel}")
        self.results["many_users"] = measure(self.users, self.parallel, rounds=1)

    def change_one_percent(self, project: Project, n: int) -> int:
        """Edit 1% of the contacts in Pipeliner and another 1% in Outlook, as their users."""
        k = max(1, n // 100)
        links = project.links()
        pipeliner = self.main.control("pipeliner")
        for i, (pid, _) in enumerate(links[:k]):
            pipeliner._call(
                "PATCH",
                f"/pipeliner/users/{USERS['alex']}/contacts/{pid}",
                json={"position": f"Changed in Pipeliner {i}"},
            )
        for i, (_, oid) in enumerate(links[k : 2 * k]):
            self.main.graph(
                "PATCH",
                f"/mailboxes/{ALEX}/contacts/{oid}",
                {"jobTitle": f"Changed in Outlook {i}"},
            )
        return k

    def cpu_floor(self, n: int, ours: dict[str, Any]) -> dict[str, Any]:
        """6: CPU per contact of what follows the tap (the target, mapping in-process; a mapper
        process if the job had one) vs a minimal SDK tap | target, same N."""
        log(f"cpu floor: minimal singer-sdk tap | target, N={n}")
        load_before = load()
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        tap = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "tap", "--count", str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        target = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", "target"],
            stdin=tap.stdout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        assert tap.stdout is not None
        tap.stdout.close()
        usage = {}
        for name, proc in (("tap", tap), ("target", target)):
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            usage[name] = {
                "cpu_s": round(rusage.ru_utime + rusage.ru_stime, 2),
                "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),
            }
        wall = time.perf_counter() - started
        floor_cpu = usage["tap"]["cpu_s"] + usage["target"]["cpu_s"]
        procs = ours["processes"]
        # The job's target maps in-process; a job with a mapper process would count it too.
        mapper_cpu = procs.get("contactsync-mapper", {}).get("cpu_s", 0.0)
        our_cpu = mapper_cpu + procs["target-outlook-contacts"]["cpu_s"]
        return {
            "n": n,
            "floor": {
                **usage,
                "wall_s": round(wall, 2),
                "load": load_before,
                "contacts_per_cpu_s": round(n / floor_cpu),
            },
            "ours": {
                "mapper_cpu_s": mapper_cpu,
                "target_cpu_s": procs["target-outlook-contacts"]["cpu_s"],
                "contacts_per_cpu_s": round(n / our_cpu),
            },
            "ratio": round(our_cpu / floor_cpu, 2),
        }


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [
            "git",
            "status",
            "--porcelain",
            "--",
            "core",
            "contactsync-mapper",
            "contactsync-singer",
            "tap-*",
            "target-*",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(mem) / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "meltano": version("meltano"),
        "singer-sdk": version("singer-sdk"),
        "commit": commit + (" + uncommitted changes" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.json"))
    parser.add_argument("--throttle-requests", type=int, default=1000)
    parser.add_argument("--throttle-window", type=float, default=10.0)
    parser.add_argument(
        "--throttle-request-seconds",
        type=float,
        default=0.015,
        help="Outlook's time per request under throttling (not documented; 0.1 s scaled 6x)",
    )
    parser.add_argument(
        "--only",
        default="one_way,throttled,two_way,many_users",
        help="scenarios to run (comma-separated; `cpu` is one_way's CPU row alone)",
    )
    parser.add_argument("--users", type=int, default=20, help="users of the many_users scenario")
    parser.add_argument("--parallel", type=int, default=2, help="its `run --all --parallel`")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other scenarios of --out and replace only those run (the report then "
        "says which rows were measured later, and at which commit)",
    )
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    scenarios = args.only.split(",")
    started = time.time()
    out = Path(args.out)

    def write(bench: Bench) -> None:
        """After each scenario, so that a failure later keeps what was measured."""
        results = {
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "duration_s": round(time.time() - started),
            "sizes": sizes,
            "machine": machine(),
            **bench.results,
        }
        if args.merge and out.exists():
            base = json.loads(out.read_text())
            later = base.get("merged", {})
            for name in bench.results:
                later[name] = {"generated": results["generated"], **results["machine"]}
            results = {**base, **bench.results, "merged": later}
        out.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {out}")

    with tempfile.TemporaryDirectory(prefix="contactsync-bench-") as tmp:
        bench = Bench(
            Path(tmp),
            sizes,
            (args.throttle_requests, args.throttle_window),
            args.throttle_request_seconds,
            args.users,
            args.parallel,
        )
        try:
            steps: dict[str, Callable[[], None]] = {
                "one_way": bench.one_way,
                "cpu": bench.cpu,
                "throttled": bench.throttled,
                "two_way": bench.two_way,
                "many_users": bench.many_users,
            }
            for name in scenarios:
                steps[name]()
                write(bench)
        finally:
            bench.close()
    from bench.report import render

    render(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
