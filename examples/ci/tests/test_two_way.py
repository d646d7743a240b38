"""The example's integration test: the two-way job on the project's own fixture, through
`meltano run`, with the sandbox's pytest fixtures (from the contactsync-sandbox package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contactsync_sandbox import SandboxHandle

PROJECT = Path(__file__).resolve().parents[1]
MELTANO = str(Path(sys.executable).parent / "meltano")
ALEX = "alex@contoso.example"


def meltano_run(job: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [MELTANO, "run", job],
        cwd=PROJECT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.sandbox_seed("fixtures/seed.json")
@pytest.mark.sandbox_user(ALEX)
@pytest.mark.sandbox_fault("outlook", "429", count=2, retry_after=0.2)
def test_two_way_sync_of_our_fixture(
    seeded_sandbox: SandboxHandle, sandbox_env: dict[str, str]
) -> None:
    meltano_run("two-way-your-contacts", sandbox_env)

    outlook = {
        c["emailAddresses"][0]["address"]: c
        for c in seeded_sandbox.outlook_contacts(ALEX, "Pipeliner")
    }
    pipeliner = {c["email1"]: c for c in seeded_sandbox.pipeliner_contacts()}
    # Alex's Pipeliner contacts are in the folder; Grace, there already, was linked, not copied.
    assert sorted(outlook) == [
        "ada@fabrikam.example",
        "grace@navy.example",
        "linus@kernel.example",
    ]
    assert outlook["ada@fabrikam.example"]["jobTitle"] == "CTO"
    assert outlook["ada@fabrikam.example"]["companyName"] == "Fabrikam"
    # The contact added in Outlook is now Alex's in Pipeliner; Megan's contact stayed out.
    linus = pipeliner["linus@kernel.example"]
    assert (linus["first_name"], linus["last_name"]) == ("Linus", "Torvalds")
    assert linus["owner_id"] == pipeliner["ada@fabrikam.example"]["owner_id"]
    assert "alan@bletchley.example" in pipeliner
    assert len(pipeliner) == 4

    to_outlook = seeded_sandbox.report("pipeliner-to-outlook")["counts"]
    assert (to_outlook["created"], to_outlook["linked"], to_outlook["failed"]) == (1, 1, 0)
    assert seeded_sandbox.report("outlook-to-pipeliner")["counts"]["created"] == 1
    # The two throttled answers were retried, not fatal.
    graph = seeded_sandbox.control("graph").counters()
    assert graph["total"]["statuses"]["429"] == 2
