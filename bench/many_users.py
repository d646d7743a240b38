"""Many users with nothing to do: `contactsync run --all --parallel K` over N sandbox users
(issue #15): users per minute and CPU seconds per user-run, the operator's figures.

Starts a sandbox seeded with N extra Pipeliner users (Sales Reps of one unit, no contacts) and
their mailboxes, enables the deployment app-only (client secret: no sign-in per user), activates
every user two-way into a new folder, runs everyone once (the initial runs), then measures
``--rounds`` quiet rounds of each kind: with ``--no-precheck`` (every user's `meltano run`)
and with the pre-check (`contactsync run`'s default: a user with nothing to do is skipped):
wall time, and CPU of the whole `contactsync run` process tree (every `meltano run` and
plugin, reaped: RUSAGE_CHILDREN) and of the sandbox apart. Then a few single-user runs
(`contactsync run --user`, one process per user as the Dagster deployment starts them),
skipped. Prints one JSON object; ``bench.run --only many_users`` keeps it in
benchmarks.json. Loopback only.

    python -m bench.many_users [--users 20] [--parallel 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import _stat
from contactsync_sandbox.seed import default_seed

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def seed(users: int) -> dict[str, Any]:
    """The default seed plus ``users`` users like Alex (same unit and role), each with an empty
    mailbox."""
    data = copy.deepcopy(default_seed())
    template = data["pipeliner"]["users"][0]
    for i in range(users):
        user = {
            **copy.deepcopy(template),
            "id": f"c1000000-0000-4000-8000-{i:012d}",
            "email": f"user{i}@contoso.example",
            "first_name": "User",
            "last_name": f"{i}",
        }
        user.pop("demo_role", None)
        data["pipeliner"]["users"].append(user)
        data["microsoft"]["mailboxes"].append(
            {
                "id": f"d1000000-0000-4000-8000-{i:012d}",
                "user_principal_name": user["email"],
                "display_name": f"User {i}",
                "pipeliner_user_id": user["id"],
                "contacts_folder": {"contacts": [], "childFolders": []},
            }
        )
    data["pipeliner"]["demo_contacts"] = []
    return data


class Deployment:
    """One operator's deployment (data dir, registry, Meltano state) against one sandbox."""

    def __init__(self, work: Path, users: int) -> None:
        self.work = work
        seed_file = work / "seed.json"
        seed_file.write_text(json.dumps(seed(users)))
        self.sandbox_log = open(work / "sandbox.log", "w")  # noqa: SIM115
        self.sandbox = subprocess.Popen(
            [
                str(BIN / "contactsync-sandbox"),
                "serve",
                "--free-ports",
                *("--seed", str(seed_file), "--state-dir", str(work / "sandbox-state")),
            ],
            stdout=subprocess.PIPE,
            stderr=self.sandbox_log,
            text=True,
        )
        assert self.sandbox.stdout is not None
        self.info: dict[str, Any] = json.loads(self.sandbox.stdout.readline())
        app = default_seed()["microsoft"]["app_registration"]
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONTACTSYNC_", "MELTANO_", "PIPELINER_", "MS_"))
        }
        self.env.update(
            CONTACTSYNC_DATA_DIR=str(work / "data"),
            CONTACTSYNC_LEDGER_URL=str(work / "registry.sqlite"),
            MELTANO_DATABASE_URI=f"sqlite:///{work / 'meltano.db'}",
            MELTANO_PROJECT_ROOT=str(ROOT),
            PIPELINER_API_PASSWORD=self.info["pipeliner_api_password"],
            MS_CLIENT_SECRET=app["client_secret"],
        )
        self.users = [f"user{i}@contoso.example" for i in range(users)]

    def cs(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "contactsync"), *args],
            env=self.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"contactsync {' '.join(args)}: {done.stdout}\n{done.stderr}")
        return done

    def set_up(self) -> None:
        info = self.info
        self.cs(
            "enable",
            "--service-url",
            info["pipeliner_url"],
            "--space-id",
            info["pipeliner_space_id"],
            "--api-username",
            info["pipeliner_api_username"],
            "--authority",
            info["authority"],
            "--client-id",
            info["identity_client_id"],
            "--graph-url",
            info["graph_url"],
            "--ca-bundle",
            info["ca_path"],
            "--app-only",
        )
        for email in self.users:
            self.cs(
                "activate",
                "--user",
                email,
                "--create-folder",
                "Pipeliner",
                "--sync-type",
                "two_way_your_contacts",
            )

    def sandbox_cpu(self) -> float:
        stat = _stat(self.sandbox.pid)
        return stat[1] if stat else 0.0

    def run_all(self, parallel: int, *extra: str) -> dict[str, Any]:
        """One `contactsync run --all --parallel K`: wall, CPU of its tree, the sandbox's CPU."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        sandbox_before, load_before = self.sandbox_cpu(), os.getloadavg()
        started = time.perf_counter()
        out = self.cs("run", "--all", "--parallel", str(parallel), *extra).stdout
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        n = len(self.users)
        return {
            "users": n,
            "parallel": parallel,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "cpu_per_user_s": round(cpu / n, 2),
            "users_per_minute": round(n / wall * 60, 1),
            "sandbox_cpu_s": round(self.sandbox_cpu() - sandbox_before, 1),
            "load_before": [round(x, 2) for x in load_before],
            "skipped": out.count(": skipped: nothing changed"),
        }

    def run_one(self, email: str) -> dict[str, Any]:
        """`contactsync run --user EMAIL` as its own process (as a Dagster run starts it)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        out = self.cs("run", "--user", email).stdout
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "cpu_s": round(
                (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 2
            ),
            "wall_s": round(wall, 2),
            "skipped": "skipped: nothing changed" in out,
        }

    def close(self) -> None:
        self.sandbox.terminate()
        try:
            self.sandbox.wait(10)
        except subprocess.TimeoutExpired:
            self.sandbox.kill()
        self.sandbox_log.close()


def measure(users: int, parallel: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="contactsync-many-") as tmp:
        deployment = Deployment(Path(tmp), users)
        try:
            deployment.set_up()
            initial = deployment.run_all(parallel)
            quiet = [deployment.run_all(parallel, "--no-precheck") for _ in range(rounds)]
            checked = [deployment.run_all(parallel) for _ in range(rounds)]
            single = [deployment.run_one(email) for email in deployment.users[:5]]
        finally:
            deployment.close()
    best = min(quiet, key=lambda r: r["cpu_s"])
    return {
        "initial": initial,
        "quiet": quiet,  # --no-precheck: every user's meltano run
        "best": best,
        "precheck": checked,  # the default: skipped when nothing changed
        "precheck_best": min(checked, key=lambda r: r["cpu_s"]),
        "single_user_precheck": single,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.users, args.parallel, args.rounds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
