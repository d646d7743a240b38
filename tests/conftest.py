"""Suite-wide collection order: each worker's longest tests first.

`make test` runs the suite on pytest-xdist workers with ``--dist worksteal``: the collection is cut
into one contiguous share per worker, and a worker that runs out takes the tail of another's
share. A five-minute state machine at the end of a share would run alone while the other worker
idles, so tests are sorted by what they cost (real processes first, pure functions last) and dealt
round-robin: every share starts with its long tests, and what is stolen from its tail is short.
The order is a stable sort on the test's directory, the same on every worker, as xdist requires.
"""

from __future__ import annotations

import os

import pytest

#: Directories of tests/ by the time their tests take, longest first; the rest come after.
_LONGEST_FIRST = ("property", "e2e", "reliability", "plugins", "sandbox", "contract", "unit")


def _rank(item: pytest.Item) -> int:
    parts = item.path.parts
    top = parts[parts.index("tests") + 1] if "tests" in parts else ""
    return _LONGEST_FIRST.index(top) if top in _LONGEST_FIRST else len(_LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        items[:] = [item for share in range(workers) for item in items[share::workers]]
