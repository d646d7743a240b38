"""A two-way sync as Meltano runs it, without Meltano's start-up: per leg, tap | mapper | target
as three real processes joined by OS pipes, the Singer state of each leg kept between runs the
way Meltano keeps it (the last STATE the target emitted, even when the run failed or was killed).

Used where a test needs many runs (the plugin-level state machine); tests of the Meltano project
itself use `meltano run` (tests/e2e).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.plugins import BIN


@dataclass(frozen=True)
class Leg:
    """One `tap mapper target` task of a job, with each plugin's config."""

    name: str
    tap: tuple[str, Mapping[str, Any]]
    mapper: tuple[str, Mapping[str, Any]]
    target: tuple[str, Mapping[str, Any]]


@dataclass
class LegRun:
    """How one leg ended: each process's exit code (negative: killed by that signal)."""

    leg: str
    returncodes: dict[str, int]
    killed: bool
    stderr: str

    @property
    def ok(self) -> bool:
        return not self.killed and all(code == 0 for code in self.returncodes.values())


@dataclass
class Pipeline:
    """The legs of one job, run in order; state per leg kept in ``states``."""

    legs: list[Leg]
    workdir: Path
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(
        self,
        *,
        kill_leg: str | None = None,
        kill_when: Callable[[], bool] | None = None,
        timeout: float = 120,
    ) -> list[LegRun]:
        """Run every leg; in ``kill_leg``, SIGKILL the target once ``kill_when()`` holds (or
        when it has exited by itself first). Like `meltano run`, a failed leg stops the job."""
        runs = []
        for leg in self.legs:
            watch = kill_when if leg.name == kill_leg else None
            run = self._run_leg(leg, watch, timeout)
            runs.append(run)
            if not run.ok:
                break
        return runs

    def _write_config(self, leg: str, executable: str, config: Mapping[str, Any]) -> Path:
        path = self.workdir / f"{leg}.{executable}.config.json"
        path.write_text(json.dumps(config))
        return path

    def _run_leg(self, leg: Leg, kill_when: Callable[[], bool] | None, timeout: float) -> LegRun:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        logs = {
            role: self.workdir / f"{leg.name}.{role}.log" for role in ("tap", "mapper", "target")
        }
        tap_cmd = [str(BIN / leg.tap[0]), "--config", str(self._write_config(leg.name, *leg.tap))]
        if leg.name in self.states:
            state_path = self.workdir / f"{leg.name}.state.json"
            state_path.write_text(json.dumps(self.states[leg.name]))
            tap_cmd += ["--state", str(state_path)]
        with (
            logs["tap"].open("w") as tap_log,
            logs["mapper"].open("w") as mapper_log,
            logs["target"].open("w") as target_log,
        ):
            tap = subprocess.Popen(
                tap_cmd, stdout=subprocess.PIPE, stderr=tap_log, cwd=self.workdir, env=env
            )
            mapper = subprocess.Popen(
                [
                    str(BIN / leg.mapper[0]),
                    "--config",
                    str(self._write_config(leg.name, *leg.mapper)),
                ],
                stdin=tap.stdout,
                stdout=subprocess.PIPE,
                stderr=mapper_log,
                cwd=self.workdir,
                env=env,
            )
            target = subprocess.Popen(
                [
                    str(BIN / leg.target[0]),
                    "--config",
                    str(self._write_config(leg.name, *leg.target)),
                ],
                stdin=mapper.stdout,
                stdout=subprocess.PIPE,
                stderr=target_log,
                cwd=self.workdir,
                env=env,
                text=True,
            )
            assert tap.stdout is not None and mapper.stdout is not None
            tap.stdout.close()  # the pipes now belong to the next process alone
            mapper.stdout.close()
            reader = threading.Thread(target=self._keep_state, args=(leg.name, target), daemon=True)
            reader.start()
            killed = False
            if kill_when is not None:
                killed = _kill_when(target, kill_when, timeout)
            procs = {"tap": tap, "mapper": mapper, "target": target}
            if killed:  # Meltano stops the rest of the pipeline when its target dies
                for proc in (tap, mapper):
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
            codes = {role: proc.wait(timeout=timeout) for role, proc in procs.items()}
            reader.join(timeout)
        stderr = "".join(f"--- {role}\n{path.read_text()[-4000:]}" for role, path in logs.items())
        return LegRun(leg.name, codes, killed, stderr)

    def _keep_state(self, leg: str, target: subprocess.Popen[str]) -> None:
        assert target.stdout is not None
        for line in target.stdout:  # a Singer target writes each state as one JSON line
            if line.startswith("{"):
                self.states[leg] = json.loads(line)


def _kill_when(
    target: subprocess.Popen[str], condition: Callable[[], bool], timeout: float
) -> bool:
    """SIGKILL ``target`` as soon as ``condition()`` holds; False if it ended by itself first."""
    deadline = time.monotonic() + timeout
    while target.poll() is None:
        if condition():
            target.send_signal(signal.SIGKILL)
            return True
        if time.monotonic() > deadline:
            raise TimeoutError("the target neither ended nor reached the kill point")
        time.sleep(0.02)
    return False
