"""The wheels of `make dist` work outside this repository: for each plugin, a fresh virtualenv
in a temporary directory installs it from `dist/` (our packages) and the package registry (the
third-party ones, at the exact versions of constraints.txt), then runs its `--about`.

Run by `make dist-check` (part of `make test`). It reuses uv's cache, so it costs seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
UV = str(Path(sys.executable).parent / "uv")
#: Each plugin's distribution (with the extras a deployment needs) and its executable.
PLUGINS = {
    "tap-pipeliner-contacts": "tap-pipeliner-contacts",
    "tap-outlook-contacts": "tap-outlook-contacts",
    "target-outlook-contacts[postgres]": "target-outlook-contacts",
    "target-pipeliner-contacts[postgres]": "target-pipeliner-contacts",
    "contactsync-mapper": "contactsync-mapper",
}


def run(cmd: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    return done.stdout


def check(requirement: str, executable: str, outside: Path, pins: Path) -> str:
    venv = outside / executable
    run([UV, "venv", "-q", "--python", sys.executable, str(venv)], outside)
    python = str(venv / "bin" / "python")
    run(
        [
            UV, "pip", "install", "-q", f"--python={python}",
            "--find-links", str(DIST),
            "-c", str(ROOT / "constraints.txt"), "-c", str(pins),
            requirement,
        ],
        outside,
    )  # fmt: skip
    about = json.loads(run([str(venv / "bin" / executable), "--about", "--format=json"], outside))
    where = run([python, "-c", "import contactsync; print(contactsync.__file__)"], outside)
    if about.get("name") != executable or str(ROOT) in where:
        raise SystemExit(f"{executable}: not installed from dist/ ({where.strip()})")
    return f"{executable} {about['version']}: installed from dist/ in {venv}, --about ok"


def main() -> int:
    wheels = sorted(DIST.glob("*.whl"))
    if not wheels:
        raise SystemExit("dist/ holds no wheel: run `make dist` first")
    versions = {w.name.split("-")[0].replace("_", "-"): w.name.split("-")[1] for w in wheels}
    with tempfile.TemporaryDirectory(prefix="contactsync-dist-") as tmp:
        outside = Path(tmp)
        pins = outside / "ours.txt"  # our packages: exactly the versions in dist/
        pins.write_text("".join(f"{name}=={v}\n" for name, v in versions.items()))
        with ThreadPoolExecutor(max_workers=3) as pool:  # mostly waiting on file copies
            jobs = [pool.submit(check, r, e, outside, pins) for r, e in PLUGINS.items()]
            for job in jobs:
                print(job.result())
    return 0


if __name__ == "__main__":
    sys.exit(main())
