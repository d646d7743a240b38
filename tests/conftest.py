"""Suite-wide collection order: the longest tests first.

`make test` spreads the suite over pytest-xdist workers, which hand out tests in collection order.
A five-minute state machine collected last runs alone at the end while the other worker idles, so
the suite is ordered by what a test costs (real processes first, pure functions last): the short
ones then fill the gaps, and with ``--dist worksteal`` (make test) an idle worker takes tests still
queued on a busy one (xdist deals each worker a contiguous half and steals from the end of a
queue, so what is first in the order is started first). The order is a stable sort, the same on
every worker as xdist requires: the tests measured longest by name first (`pytest --durations`),
then by directory.
"""

from __future__ import annotations

import pytest

# The services name the kernel's sides (Side.CRM "Pipeliner", Side.BOOK "Outlook") on import; a
# test of the kernel alone reads its messages as the plugins write them.
import contactsync.outlook
import contactsync.pipeliner  # noqa: F401

#: Directories of tests/ by the time their tests take, longest first; the rest come after.
_LONGEST_FIRST = ("property", "e2e", "reliability", "plugins", "sandbox", "contract", "unit")


#: The longest single tests (minutes each), longest first: a test of several minutes started late
#: leaves the other worker idle at the end. Prefixes of node ids.
_LONGEST_TESTS = (
    "tests/e2e/test_orchestrator.py::test_twenty_users",
    "tests/property/test_plugin_state_machine.py",
    "tests/reliability/test_access.py::test_two_way_never_writes",
    "tests/e2e/test_cli_users.py::test_three_users",
    "tests/e2e/test_dry_run.py::test_a_dry_run_plans",
    "tests/e2e/test_ci_example.py",
    "tests/reliability/test_permanent_failures.py",
    "tests/reliability/test_faults.py",
)


def _rank(item: pytest.Item) -> tuple[int, int]:
    for n, prefix in enumerate(_LONGEST_TESTS):
        if item.nodeid.startswith(prefix):
            return (0, n)
    parts = item.path.parts
    top = parts[parts.index("tests") + 1] if "tests" in parts else ""
    return (1, _LONGEST_FIRST.index(top) if top in _LONGEST_FIRST else len(_LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)
