"""The architecture, checked: the sync kernel (contactsync.sync) knows its two sides by role only.

It imports nothing of contactsync outside itself (no service package, no operator tool) and names
no vendor anywhere in its text: identifiers, strings, docstrings and comments. The one exception
is ``ledger_history``, the data the ledger migration reads to rename what schema 2 named after
the services. The services do not import each other, and nothing but the operator's tools
imports the operator's tools. A plain scan of the source: fast, and independent of what the
modules do at import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import contactsync

PACKAGE = Path(contactsync.__file__).parent
KERNEL = PACKAGE / "sync"
#: The data of the schema 2 -> 3 migration: the old, vendor-named columns and values.
HISTORY = KERNEL / "ledger_history.py"
#: A vendor's or its API's name, at the start of a word or after an underscore or a dot
#: ("paragraph" is no mention of Graph; ``graph_api``, ``GraphClient`` and ``pipeliner_id`` are).
VENDOR = re.compile(r"(?<![a-z])(pipeliner|outlook|graph|microsoft|msal|mapi)", re.IGNORECASE)


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, as an absolute name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path.name}: relative import of {node.module}"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_kernel_is_there() -> None:
    found = {p.name for p in _modules(KERNEL)}
    assert {"plan.py", "merge.py", "match.py", "link.py", "engine.py", "ledger.py"} <= found
    assert {"fields.py", "record.py", "report.py"} <= found


@pytest.mark.parametrize("path", _modules(KERNEL), ids=lambda p: p.name)
def test_the_kernel_imports_nothing_of_contactsync_but_itself(path: Path) -> None:
    outside = {
        name
        for name in _imports(path)
        if name.split(".")[0] == "contactsync"
        and name != "contactsync.sync"
        and not name.startswith("contactsync.sync.")
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize(
    "path", [p for p in _modules(KERNEL) if p != HISTORY], ids=lambda p: p.name
)
def test_the_kernel_names_no_vendor(path: Path) -> None:
    mentions = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if VENDOR.search(line)
    ]
    assert not mentions, f"{path.name} names a vendor:\n" + "\n".join(mentions)


@pytest.mark.parametrize(("service", "other"), [("pipeliner", "outlook"), ("outlook", "pipeliner")])
def test_a_service_does_not_import_the_other(service: str, other: str) -> None:
    for path in _modules(PACKAGE / service):
        wrong = {n for n in _imports(path) if n.startswith(f"contactsync.{other}")}
        assert not wrong, f"{service}/{path.name} imports {sorted(wrong)}"


def test_only_the_operators_tools_import_them() -> None:
    for path in _modules(PACKAGE):
        if PACKAGE / "ops" in path.parents:
            continue
        wrong = {n for n in _imports(path) if n.startswith("contactsync.ops")}
        assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)}"


def test_the_scan_would_see_a_vendor() -> None:
    """The pattern itself: what it must catch and what it must let through."""
    for text in ("GraphClient", "pipeliner_id", "the Outlook copy", "contactsync.outlook", "msal"):
        assert VENDOR.search(text), text
    for text in ("a paragraph", "crm_id", "the address book", "photograph"):
        assert not VENDOR.search(text), text
