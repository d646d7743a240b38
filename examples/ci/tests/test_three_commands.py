"""The three commands of "Use it in your CI", as a CI step runs them in a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SCRIPT = """
set -euo pipefail
contactsync-sandbox serve --seed tests/fixtures/seed.json --free-ports > "$OUT/serve.log" 2>&1 &
trap 'kill $!' EXIT
eval "$(contactsync-sandbox env --user alex@contoso.example)"
meltano run two-way-your-contacts
contactsync-sandbox export --output "$OUT/after.json"
"""


def test_serve_env_meltano_run_then_export(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "CONTACTSYNC_SANDBOX_STATE_DIR": str(tmp_path / "sandbox"),
        "OUT": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", "-c", SCRIPT], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]

    after = json.loads((tmp_path / "after.json").read_text())
    alex = next(
        box
        for box in after["microsoft"]["mailboxes"]
        if box["user_principal_name"] == "alex@contoso.example"
    )
    folder = next(
        f for f in alex["contacts_folder"]["childFolders"] if f["displayName"] == "Pipeliner"
    )
    emails = sorted(c["emailAddresses"][0]["address"] for c in folder["contacts"])
    assert emails == ["ada@fabrikam.example", "grace@navy.example", "linus@kernel.example"]
    pipeliner = sorted(c["email1"] for c in after["pipeliner"]["contacts"])
    assert pipeliner == [
        "ada@fabrikam.example",
        "alan@bletchley.example",
        "grace@navy.example",
        "linus@kernel.example",
    ]
