"""meltano.yml is generated from the plugins' setting schemas; it must not drift from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_meltano_yml_is_what_the_generator_writes() -> None:
    # In a fresh interpreter: instantiating a singer-sdk plugin adds the SDK's built-in settings
    # to its class-level schema, which other tests in this process may have done.
    check = [sys.executable, str(ROOT / "scripts" / "gen_meltano_yml.py"), "--check"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"meltano.yml is out of date ({done.stderr.strip()}): run "
        ".venv/bin/python scripts/gen_meltano_yml.py"
    )


def test_every_secret_is_sensitive_and_kept_out_of_prod_config() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    plugins = [p for kind in project["plugins"].values() for p in kind]
    secrets = {
        s["name"] for p in plugins for s in p.get("settings", []) if s.get("kind") == "password"
    }
    assert {"api_password", "client_secret", "ledger_url"} <= secrets
    assert all(
        s.get("sensitive") for p in plugins for s in p.get("settings", []) if s["name"] in secrets
    )
    prod = next(e for e in project["environments"] if e["name"] == "prod")
    for kind in prod["config"]["plugins"].values():
        for plugin in kind:
            for name, value in plugin["config"].items():
                if name in secrets:
                    assert str(value).startswith("$"), f"{plugin['name']}.{name} is not from env"


def test_the_jobs_run_the_two_way_legs_in_order() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    jobs = {j["name"]: j["tasks"] for j in project["jobs"]}
    assert set(jobs) == {"two-way-your-contacts", "one-way-your-contacts", "one-way-all-contacts"}
    first, second = jobs["two-way-your-contacts"]
    assert first.startswith("tap-pipeliner-contacts ") and second.startswith(
        "tap-outlook-contacts "
    )
