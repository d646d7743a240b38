"""examples/ci as another project's CI runs it: `make test` in that directory builds its own
virtualenv (Meltano, pytest, contactsync-sandbox), installs its Meltano plugins, and runs its
tests through the sandbox's public entry points only (CLI, pytest plugin). Nothing of ours is
imported there; this test only starts the example's own make step and reports what it said.

The first run builds the virtualenv and installs the plugins (about 20 s with a warm uv cache);
later runs reuse them while requirements.txt, meltano.yml and the packages' pyproject.toml files
are unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ci"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="the example's entry point is make")
def test_the_ci_example_passes_as_its_own_project():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        ["make", "--no-print-directory", "test"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
    assert "2 passed" in done.stdout, done.stdout[-3000:]
