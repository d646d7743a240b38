"""Peak RSS and CPU time of each process of a `meltano run`, read from /proc while it runs.

Meltano strips PYTHONPATH from its plugins' environment and every plugin has its own
virtualenv, so nothing can be injected into them; instead a thread walks the process tree of
the `meltano` process every ``interval`` seconds. The figure kept is ``VmHWM`` from
``/proc/<pid>/status``: the kernel's own high-water mark of resident memory, so a sample taken
at any moment after a peak still sees it. Only growth in the last interval before a process
exits could be missed, and a Singer process does not grow while it shuts down. CPU time
(user + system, ``/proc/<pid>/stat``) is kept from the last sample the same way.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcStats:
    """What was last seen of one process."""

    pid: int
    name: str
    peak_rss_kb: int = 0
    cpu_s: float = 0.0


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of ``pid``; None once it is gone or a zombie (which has no
    memory or command line left to read)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid: int) -> str:
    """The program: the script a Python interpreter runs, else the executable."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
    if len(words) > 1 and words[0].startswith("python") and not words[1].startswith("-"):
        return words[1]
    return words[0] if words else "?"


@dataclass
class TreeSampler:
    """Samples the descendants of ``root`` until :meth:`stop`."""

    root: int
    interval: float = 0.05
    procs: dict[int, ProcStats] = field(default_factory=dict)
    _parents: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-sampler")
        self._thread.start()
        return self

    def stop(self) -> dict[int, ProcStats]:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.sample()
        return self.procs

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        alive = {int(e) for e in os.listdir("/proc") if e.isdigit()}
        for gone in set(self._parents) - alive:  # a pid may be reused by another process
            del self._parents[gone]
        for entry in alive:
            if entry not in self._parents:
                try:  # zombies included: their children are still ours
                    raw = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                self._parents[int(entry)] = int(raw[raw.rindex(")") + 2 :].split()[1])
        family = {self.root}
        changed = True
        while changed:  # the parent map is small: a fixed point is cheap
            changed = False
            for pid, ppid in self._parents.items():
                if ppid in family and pid not in family:
                    family.add(pid)
                    changed = True
        for pid in family:
            stat = _stat(pid)
            if stat is None:
                continue
            name = _name(pid)
            if name == "?":  # exiting: keep what was seen
                continue
            proc = self.procs.get(pid)
            if proc is None or proc.name != name:  # new, or exec'd: the figures start over
                proc = self.procs[pid] = ProcStats(pid, name)
            proc.peak_rss_kb = max(proc.peak_rss_kb, _hwm_kb(pid))
            proc.cpu_s = max(proc.cpu_s, stat[1])
