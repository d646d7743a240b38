"""Suite-wide collection order: the longest tests first.

`make test` spreads the suite over pytest-xdist workers, which hand out tests in collection order.
A five-minute state machine collected last runs alone at the end while the other worker idles, so
the suite is ordered by what a test costs (real processes first, pure functions last): the short
ones then fill the gaps, and with ``--dist worksteal`` (make test) an idle worker takes tests still
queued on a busy one. The order is a stable sort on the test's directory, the same on every
worker, as xdist requires.
"""

from __future__ import annotations

import pytest

# The services name the kernel's sides (Side.CRM "Pipeliner", Side.BOOK "Outlook") on import; a
# test of the kernel alone reads its messages as the plugins write them.
import contactsync.outlook
import contactsync.pipeliner  # noqa: F401

#: Directories of tests/ by the time their tests take, longest first; the rest come after.
_LONGEST_FIRST = ("property", "e2e", "reliability", "plugins", "sandbox", "contract", "unit")


def _rank(item: pytest.Item) -> int:
    parts = item.path.parts
    top = parts[parts.index("tests") + 1] if "tests" in parts else ""
    return _LONGEST_FIRST.index(top) if top in _LONGEST_FIRST else len(_LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)
