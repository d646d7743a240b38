"""One emulated Pipeliner space: its state, how versions move, and lookups.

The space is the state the other modules work on: the entity types and their rows
(`registry.py`), the settings (`settings.py`), the clock and the revision counter. Writes
(`writes.py`, `relations.py`), rendering (`render.py`) and the parsing of read parameters
(`params.py`) are functions over a `Space`; the HTTP layer (`emulator.py`) parses requests and
calls them, and everything runs under the emulator's lock.

Versions move like the real service's: every change of an entity stamps a new `modified` (the
emulator clock never repeats or goes back) and the next value of the space-wide `revision`
counter (so `revision` increases on every change of the entity and is comparable across rows).
A no-op update (all values equal) changes nothing. Changes made through the control API "as a
user" also set `modified_by_user`; changes through the API (application keys) do not.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .entities import EntityType
from .errors import not_found, validation
from .registry import DEFAULT_CONTACT_TYPE_ID, RELATION_SETS, build_types
from .settings import DEFAULT_SETTINGS, check_settings
from .timefmt import Clock

Row = dict[str, Any]


class Space:
    """The whole state of the emulated Pipeliner service (one space)."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
        self.space_id = ""
        self.app_keys: list[dict[str, str]] = []
        self.default_contact_type_id = DEFAULT_CONTACT_TYPE_ID
        self.revision = 0
        # contact id → relation ids (deleted ones included), per relation collection
        self.by_contact: dict[str, dict[str, list[str]]] = {name: {} for name in RELATION_SETS}
        self.types: dict[str, EntityType] = build_types(self)

    def rows(self, type_name: str) -> dict[str, Row]:
        return self.types[type_name].collection.records

    # ------------------------------------------------------------------ versions

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision

    def stamp_new(self, row: Row, actor: str | None = None, created: int | None = None) -> Row:
        now = self.clock.now()
        row["created"] = created if created is not None else now
        row["modified"] = now
        row["revision"] = self.next_revision()
        if actor:
            row["modified_by_user"] = now
        return row

    def bump(self, type_name: str, row: Row, actor: str | None = None) -> None:
        """Record a change of `row`: new `modified`, next `revision`, re-sorted in indexes."""
        now = self.clock.now()
        row["modified"] = now
        row["revision"] = self.next_revision()
        if actor:
            row["modified_by_user"] = now
        self.types[type_name].collection.touch(row["id"])

    def insert(self, type_name: str, row: Row) -> Row:
        self.types[type_name].collection.add(row)
        return row

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    # ------------------------------------------------------------------ lookups

    def get(self, type_name: str, rid: str, include_deleted: bool = False) -> Row:
        """A row by id; 404 ERROR_ENTITY_NOT_FOUND if absent (or deleted, unless asked for)."""
        row = self.rows(type_name).get(rid)
        if row is None or (row.get("is_deleted") and not include_deleted):
            raise not_found(type_name, rid)
        return row

    def related(self, type_name: str, rid: Any, where: str, owner: str, vl: int = 0) -> Row:
        """A row a write refers to; 422 like the vendor's ERROR_RELATIONS_DOESNT_EXIST if not."""
        row = self.rows(type_name).get(rid) if isinstance(rid, str) else None
        if row is None or (row.get("is_deleted") and not vl & 16):
            raise validation(
                f"[{where}] Relation {owner}.{where}={rid} to {type_name} doesn't exist!"
            )
        return row

    def client_by_email(self, email: str) -> Row | None:
        folded = email.casefold()
        for row in self.rows("Client").values():
            if str(row.get("email", "")).casefold() == folded:
                return row
        return None

    def primary_relation(self, row: Mapping[str, Any]) -> Row | None:
        """The contact's live primary account relation, if it has one."""
        ids = self.by_contact["account_relations"].get(row["id"])
        if not ids:
            return None
        relations = self.rows("ContactAccountRelation")
        for rid in ids:
            rel = relations[rid]
            if rel.get("is_primary") and not rel.get("is_deleted"):
                return rel
        return None

    # ------------------------------------------------------------------ settings

    def update_settings(self, data: Any) -> dict[str, Any]:
        """Change settings (ValueError, naming the setting, if one is wrong); the new settings."""
        self.settings = check_settings(self.settings, data, self.types["Contact"].kinds)
        return dict(self.settings)
