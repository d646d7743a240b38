"""The floor of a quiet run: `meltano run` of a job shaped like ours (two taps, two targets)
whose plugins are bare singer-sdk ones (``bench.floor``) that have nothing to do.

What any four-plugin Meltano job costs before its plugins do any work of their own: Meltano's
start-up and settings resolution, four interpreters importing singer-sdk. Measured beside our
quiet run in the same bench (issue #15), so that the day's machine speed cancels out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import TreeSampler

ROOT = Path(__file__).resolve().parents[1]
MELTANO = str(Path(sys.executable).parent / "meltano")

#: A job of the two-way job's shape: each leg a tap and a target, all four bare singer-sdk.
PROJECT = {
    "version": 1,
    "default_environment": "dev",
    "project_id": "00000000-0000-4000-8000-00000000f100",
    "send_anonymous_usage_stats": False,
    "environments": [{"name": "dev"}],
    "plugins": {
        "extractors": [
            {
                "name": "floor-tap",
                "namespace": "floor_tap",
                "executable": "{bin}/floor-tap",
                "capabilities": ["catalog", "discover", "state"],
                "catalog": "{catalog}",  # shipped, as ours are: no discovery process
                "settings": [{"name": "count", "kind": "integer"}],
                "config": {"count": 0},
            },
            {"name": "floor-tap-back", "inherit_from": "floor-tap"},
        ],
        "loaders": [
            {
                "name": "floor-target",
                "namespace": "floor_target",
                "executable": "{bin}/floor-target",
            },
            {"name": "floor-target-back", "inherit_from": "floor-target"},
        ],
    },
    "jobs": [
        {
            "name": "quiet",
            "tasks": ["floor-tap floor-target", "floor-tap-back floor-target-back"],
        }
    ],
}

_SCRIPT = """#!{python}
import sys
sys.path.insert(0, {root!r})
from bench.floor import {cls}
{cls}.cli()
"""


class QuietFloor:
    """The floor project in ``workdir``, made once; each ``run()`` is one measured run."""

    def __init__(self, workdir: Path) -> None:
        self.project = workdir / "quiet-floor"
        bin_dir = self.project / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, cls in (("floor-tap", "FloorTap"), ("floor-target", "DiscardTarget")):
            script = bin_dir / name
            script.write_text(_SCRIPT.format(python=sys.executable, root=str(ROOT), cls=cls))
            script.chmod(0o755)
        config = self.project / "discover.json"
        config.write_text(json.dumps({"count": 0}))
        catalog = self.project / "catalog.json"
        with catalog.open("w") as out:
            cmd = [str(bin_dir / "floor-tap"), "--config", str(config), "--discover"]
            subprocess.run(cmd, stdout=out, stderr=subprocess.DEVNULL, check=True)
        text = json.dumps(PROJECT).replace("{bin}", str(bin_dir)).replace("{catalog}", str(catalog))
        (self.project / "meltano.yml").write_text(text)  # JSON is YAML
        # Our runs' Meltano settings come from the bench's environment; none of them apply here.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MELTANO_")}

    def run(self) -> dict[str, Any]:
        started, load = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
        proc = subprocess.Popen(
            [MELTANO, "run", "quiet"],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = TreeSampler(proc.pid).start()
        try:
            _, stderr = proc.communicate(timeout=300)
        finally:
            procs = sampler.stop()
        if proc.returncode != 0:
            raise RuntimeError(
                f"quiet floor: meltano run exited {proc.returncode}:\n{stderr[-2000:]}"
            )
        processes: dict[str, dict[str, Any]] = {}
        for stats in procs.values():
            entry = processes.setdefault(stats.name, {"count": 0, "cpu_s": 0.0})
            entry["count"] += 1
            entry["cpu_s"] = round(entry["cpu_s"] + stats.cpu_s, 2)
        return {
            "wall_s": round(time.perf_counter() - started, 2),
            "load_before": load,
            "processes": processes,
        }
