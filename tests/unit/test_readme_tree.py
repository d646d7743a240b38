"""The README's architecture tree and the package tell the same story: every module of
``contactsync`` is listed under its package there, and every module listed exists."""

from __future__ import annotations

import re
from pathlib import Path

import contactsync

PACKAGE = Path(contactsync.__file__).parent
README = Path(__file__).resolve().parents[2] / "README.md"


def _tree() -> dict[str, set[str]]:
    """Modules named in the README's ``core/`` tree, by package folder ("" for the top)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Architecture") :]
    block = section[section.index("```") + 3 :]
    block = block[: block.index("```")]
    lines = block[block.index("  src/contactsync/") :].splitlines()[1:]
    found: dict[str, set[str]] = {}
    folder = ""
    for line in lines:
        if not line.startswith("    ") or not line.strip():
            break  # the next top-level entry of the tree
        name = line.strip().split("  ")[0]
        if line.startswith("      "):
            found.setdefault(folder, set()).update(re.findall(r"(\w+)\.py", name))
        elif name.endswith("/"):
            folder = name.rstrip("/")
            found.setdefault(folder, set())
        else:
            folder = ""
            found.setdefault("", set()).update(re.findall(r"(\w+)\.py", name))
    return found


def _package() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"": set()}
    for path in PACKAGE.glob("*.py"):
        if path.stem != "__init__":
            found[""].add(path.stem)
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        found[folder.name] = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("__")}
    return found


def test_every_module_is_in_the_readme_tree_and_nothing_else() -> None:
    tree, package = _tree(), _package()
    assert set(tree) == set(package), "packages differ"
    for folder, modules in package.items():
        assert tree[folder] == modules, folder or "contactsync/"
