"""docs/access-rules.md, row by row: the table of cases is the specification of
contactsync.pipeliner.scope.

The rows are read from the document, so a row changed there without the code (or the other way
round) fails here, and a table that lost its rows fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contactsync.pipeliner.scope import (
    AccessLevel,
    ContactSharing,
    Relation,
    ShareMode,
    SharingRole,
    SyncUser,
    UnitReach,
    UnitTree,
    UserRole,
    can_create,
    can_delete,
    can_edit,
    relation,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "access-rules.md"
ME, SOMEONE = "c-me", "c-someone"
UNITS = {
    "parent unit": "u-parent",
    "own unit": "u-own",
    "child unit": "u-child",
    "other unit": "u-x",
}
TREE = UnitTree({"u-parent": None, "u-own": "u-parent", "u-child": "u-own", "u-x": None})
LEVELS = {level.name.replace("_", "").lower(): level for level in AccessLevel}
DIRECTIONS = {d.name.replace("_", "").lower(): d for d in UnitReach}
MODES = {"standard": 0, "private": 1, "all view": 2, "all edit": 3}
YES_NO = {"yes": True, "no": False}


def _rows() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## The cases", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 11 and cells[0].isdigit():
            rows.append(cells)
    return rows


ROWS = _rows()


def test_the_table_has_every_case() -> None:
    assert [int(r[0]) for r in ROWS] == list(range(1, len(ROWS) + 1))
    assert len(ROWS) >= 25
    # Every row names a source, and every source it names is defined on the page.
    defined = set(re.findall(r"^- \*\*(\[\w+\])\*\*", DOC.read_text(), flags=re.M))
    for row in ROWS:
        used = set(re.findall(r"\[\w+\]", row[10]))
        assert used and used <= defined, row


def _case(row: list[str]) -> tuple[ContactSharing, SyncUser]:
    _, level, direction, delete, private, contact, grant, *_ = row
    parts = [p.strip() for p in contact.split(",")]
    mode, unit_name, flags = parts[0], parts[1], set(parts[2:])
    managed = unit_name.endswith("(managed)")
    unit = UNITS[unit_name.removesuffix("(managed)").strip()]
    role = UserRole(
        access_contacts=True,
        level=LEVELS[level.lower()],
        direction=DIRECTIONS[direction.lower()],
        can_delete=YES_NO[delete],
        see_private=YES_NO[private],
    )
    user = SyncUser(
        ME,
        role,
        unit_ids=frozenset({UNITS["own unit"]}),
        managed_unit_ids=frozenset({unit} if managed else ()),
        units=TREE,
    )
    clients: tuple[tuple[str, SharingRole], ...] = ()
    shared_units: tuple[tuple[str, SharingRole], ...] = ()
    share_role = SharingRole.EDITOR if "editor" in grant else SharingRole.WATCHER
    if grant in ("editor share", "watcher share"):
        clients = ((ME, share_role),)
    elif grant.endswith("unit editor share") or grant.endswith("unit watcher share"):
        where = grant.split(" editor share")[0].split(" watcher share")[0]
        target = UNITS["own unit"] if where == "unit" else UNITS[where]
        shared_units = ((target, share_role),)
    else:
        assert grant in ("owner", "none"), f"unknown grant {grant!r}"
    sharing = ContactSharing(
        owner_id=ME if grant == "owner" else SOMEONE,
        unit_id=unit,
        share_mode=ShareMode(MODES[mode]),
        sharing_clients=clients,
        sharing_units=shared_units,
        is_delete_protected="protected" in flags,
        is_archived="archived" in flags,
    )
    return sharing, user


@pytest.mark.parametrize("row", ROWS, ids=[f"row-{r[0]}" for r in ROWS])
def test_each_case(row: list[str]) -> None:
    contact, user = _case(row)
    expected_relation, expected_edit, expected_delete = Relation(row[7]), row[8], row[9]
    rel = relation(contact, user)
    assert rel is expected_relation
    assert can_edit(contact, user, rel) is YES_NO[expected_edit]
    assert can_delete(contact, user, rel) is YES_NO[expected_delete]
    # Never more rights than edit for a delete; never edit without at least seeing it.
    assert not can_delete(contact, user) or can_edit(contact, user)
    assert not can_edit(contact, user) or rel is not Relation.NONE


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (AccessLevel.NO_ACCESS, False),
        (AccessLevel.READONLY, False),
        (AccessLevel.EDITOR, True),
        (AccessLevel.EDITOR_OR_UNIT_MANAGER, True),
        (AccessLevel.ALL, True),
    ],
)
def test_creating_needs_write_access(level: AccessLevel, expected: bool) -> None:
    user = SyncUser(ME, UserRole(True, level, UnitReach.OWNED), units=TREE)
    assert can_create(user) is expected
    no_module = SyncUser(ME, UserRole(False, level, UnitReach.OWNED), units=TREE)
    assert can_create(no_module) is False
