"""Render the outcomes recorded by the reliability tests as Markdown tables.

CONTACTSYNC_RELIABILITY_JSON=/tmp/rel .venv/bin/python -m pytest tests/reliability -n 2
.venv/bin/python -m tests.reliability.render /tmp/rel > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any


def load(prefix: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(prefix).parent.glob(Path(prefix).name + ".*.json")):
        rows += json.loads(path.read_text())
    return rows


def _test(row: dict[str, Any]) -> str:
    return "`" + row["test"].split("::", 1)[1].split("[")[0] + "`"


def render(rows: list[dict[str, Any]]) -> str:
    out: list[str] = []
    faults = [r for r in rows if r["section"] == "faults"]
    if faults:
        out += [
            "| fault | API | faulty answers | faulted run | writes failed, replayed |"
            " clean reruns | lost | duplicated | survived |",
            "|---|---|---:|---|---:|---:|---:|---:|---|",
        ]
        for r in faults:
            out.append(
                f"| {r['fault']} | {r['api']} | {r['injected']} | {r['first_run']} | "
                f"{r.get('failed_writes', '')} | "
                f"{r['reruns']} | {r['lost']} | {r['duplicates']} | "
                f"{'yes' if r['survived'] else '**no**'} |"
            )
        out.append(
            f"\n{len(faults)} cells, {sum(r['injected'] for r in faults)} faulty answers, "
            f"{sum(r['survived'] for r in faults)} survived, "
            f"{sum(r['lost'] for r in faults)} lost, "
            f"{sum(r['duplicates'] for r in faults)} duplicated.\n"
        )
    schema = [r for r in rows if r["section"] == "settings-schema"]
    if schema:
        plugins = {r["cell"].split()[0] for r in schema}
        out.append(
            f"\nsettings (schemas): {len(schema)} cases over {len(plugins)} plugins (every "
            "setting with a wrong type, every required one missing): "
            f"{sum(r['survived'] for r in schema)} refused at start naming the setting.\n"
        )
    by_section: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["section"] not in ("faults", "settings-schema"):
            by_section[r["section"]].append(r)
    for section, items in by_section.items():
        out += [f"\n{section}:\n", "| case | outcome | lost | duplicated | ok | test |"]
        out.append("|---|---|---:|---:|---|---|")
        for r in items:
            out.append(
                f"| {r.get('cell', '')} | {r.get('outcome', '')} | {r.get('lost', '')} | "
                f"{r.get('duplicates', '')} | {'yes' if r.get('survived') else '**no**'} | "
                f"{_test(r)} |"
            )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(load(sys.argv[1])))
