"""An oracle of docs/access-rules.md, written from the cases, not from
``contactsync.pipeliner.scope``.

It reads the sandbox's Pipeliner state (users, roles, units, contacts with their sharing rows) the
way an administrator would look at the space, and answers for one user: which contacts they can
see, which ones are theirs to sync (owner / editor) and which ones they may edit. Tests compare
what the sync did with these answers, so that a bug shared by the tap and the targets cannot hide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# access_entity_contact levels and directions (the vendor's OpenAPI enums)
NO_ACCESS, READONLY, EDITOR, EDITOR_OR_MANAGER, ALL_LEVEL = 0, 1, 2, 3, 4
OWNED, CURRENT, UP, DOWN, UP_AND_DOWN, ALL_UNITS = 1, 2, 3, 4, 5, 6
STANDARD, PRIVATE, ALL_VIEW, ALL_EDIT = 0, 1, 2, 3
WATCHER, EDITOR_SHARE = 1, 2


@dataclass(frozen=True)
class Person:
    """One Pipeliner user as the administrator sees them."""

    id: str
    role: Mapping[str, Any]
    units: frozenset[str]  # where they are member or manager
    managed: frozenset[str]  # units they manage, and everything below
    parents: Mapping[str, str | None]

    def _below(self, unit: str) -> set[str]:
        found, todo = set(), [unit]
        while todo:
            here = todo.pop()
            for child, parent in self.parents.items():
                if parent == here and child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def _above(self, unit: str) -> set[str]:
        found, here = set(), self.parents.get(unit)
        while here is not None and here not in found:
            found.add(here)
            here = self.parents.get(here)
        return found

    def reach(self) -> set[str] | None:
        """The units whose contacts the role's direction shows (None: every unit)."""
        direction = self.role.get("access_entity_contact_direction", OWNED)
        if direction == ALL_UNITS:
            return None
        if direction == OWNED:
            return set()
        units = set(self.units)
        for unit in self.units:
            if direction in (UP, UP_AND_DOWN):
                units |= self._above(unit)
            if direction in (DOWN, UP_AND_DOWN):
                units |= self._below(unit)
        return units


def person(state: Mapping[str, Any], email: str) -> Person:
    user = next(u for u in state["users"] if u["email"] == email)
    role = next(r for r in state["roles"] if r["id"] == user["master_right_id"])
    parents = {u["id"]: u.get("parent_id") or None for u in state["units"]}
    managers = set(user.get("unit_manager_ids") or ())
    probe = Person(user["id"], role, frozenset(), frozenset(), parents)
    managed = set(managers)
    for unit in managers:
        managed |= probe._below(unit)
    roots = {u for u in managers if not (probe._above(u) & managers)}
    units = set(user.get("unit_member_ids") or ()) | roots
    return Person(user["id"], role, frozenset(units), frozenset(managed), parents)


def _has_access(who: Person) -> bool:
    return bool(who.role.get("access_contacts")) and who.role.get("access_entity_contact", 0) > 0


def _shares(contact: Mapping[str, Any], who: Person) -> list[int]:
    roles = [
        s.get("role") or WATCHER
        for s in contact.get("sharing_clients") or ()
        if not s.get("is_deleted") and s.get("client_id") == who.id
    ]
    roles += [
        s.get("role") or WATCHER
        for s in contact.get("sharing_units") or ()
        if not s.get("is_deleted") and s.get("unit_id") in who.units
    ]
    return roles


def _seen_by_direction(contact: Mapping[str, Any], who: Person) -> bool:
    if contact.get("share_mode", STANDARD) == PRIVATE and not who.role.get(
        "access_entity_contact_private"
    ):
        return False
    reach = who.reach()
    return reach is None or contact.get("unit_id") in reach


def relation(contact: Mapping[str, Any], who: Person) -> str:
    if not _has_access(who):
        return "none"
    if contact.get("owner_id") == who.id:
        return "owner"
    shares = _shares(contact, who)
    mode = contact.get("share_mode", STANDARD)
    if EDITOR_SHARE in shares or mode == ALL_EDIT:
        best = "editor"
    elif shares or mode == ALL_VIEW or _seen_by_direction(contact, who):
        best = "viewer"
    else:
        return "none"
    if best == "editor" and who.role.get("access_entity_contact") == READONLY:
        return "viewer"
    return best


def may_edit(contact: Mapping[str, Any], who: Person) -> bool:
    level = who.role.get("access_entity_contact", 0)
    if not _has_access(who) or level == READONLY or contact.get("is_archived"):
        return False
    rel = relation(contact, who)
    if rel in ("owner", "editor"):
        return True
    if level == ALL_LEVEL:
        return _seen_by_direction(contact, who)
    if level == EDITOR_OR_MANAGER:
        return _seen_by_direction(contact, who) and contact.get("unit_id") in who.managed
    return False


def visible(state: Mapping[str, Any], email: str) -> set[str]:
    """Live contacts the user can see: what one_way_all_contacts brings."""
    who = person(state, email)
    return {
        c["id"] for c in state["contacts"] if not c.get("is_deleted") and relation(c, who) != "none"
    }


def theirs(state: Mapping[str, Any], email: str, option: str) -> set[str]:
    """Live contacts of an ``owner`` / ``owner_or_editor`` sync."""
    who = person(state, email)
    wanted = {"owner"} if option == "owner" else {"owner", "editor"}
    return {
        c["id"] for c in state["contacts"] if not c.get("is_deleted") and relation(c, who) in wanted
    }
