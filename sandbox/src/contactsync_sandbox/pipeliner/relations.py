"""A contact's relations: account relations and sharing with users and units.

A contact input's `account_relations`, `sharing_clients` and `sharing_units` replace the
contact's set (`plan_relation_set`); the relation routes create, change and delete one relation.
A change of account relations always bumps the contact; a change of sharing bumps it while the
`sharing_bumps_contact` setting is true (see `settings.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import fields as F
from .entities import last_segment
from .errors import invalid, validation
from .inputs import check_input
from .registry import RELATION_SETS
from .space import Row, Space

# ---------------------------------------------------------------------- relation sets


def plan_relation_set(
    space: Space, contact_id: str | None, field: str, items: list[Any], vl: int
) -> Callable[[str], bool]:
    """Plan `account_relations` / `sharing_clients` / `sharing_units` of a contact input.

    The list replaces the contact's set: `{"id": <relation id or URI>}` keeps an existing
    relation of this contact, an object of the create input (without `contact_id`) adds
    one (e.g. `{"client_id": ..., "role": 2}`), relations not listed are deleted.
    """
    type_name, key, target, input_schema = RELATION_SETS[field]
    rows = space.rows(type_name)
    keep: list[str] = []
    creates: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        label = f"{field}[{index}]"
        if "id" in item:
            if set(item) != {"id"}:
                raise invalid(f"[{label}] an item with 'id' keeps that relation; no other keys")
            rid = last_segment(item["id"])
            rel = rows.get(rid) if rid else None
            if rel is None or rel.get("is_deleted") or rel.get("contact_id") != contact_id:
                raise validation(
                    f"[{label}.id] {type_name} {item['id']} of this contact doesn't exist"
                )
            keep.append(rel["id"])
            continue
        item = check_input(
            {k: v for k, v in item.items() if k != "contact_id" or v == contact_id},
            input_schema,
            required=(key,),
            where=label,
            vl=vl,
        )
        space.related(target, item[key], key, type_name, vl)
        creates.append(item)
    keys = [rows[rid][key] for rid in keep] + [item[key] for item in creates]
    if len(set(keys)) != len(keys):
        raise validation(f"[{field}] the same {key} appears twice")
    if field == "account_relations" and sum(bool(c.get("is_primary")) for c in creates) > 1:
        raise validation(f"[{field}] at most one relation can be primary")

    def commit(cid: str) -> bool:
        changed = False
        current = space.by_contact[field].get(cid, [])
        for rid in current:
            rel = rows[rid]
            if not rel.get("is_deleted") and rid not in keep:
                rel["is_deleted"] = True
                space.bump(type_name, rel)
                changed = True
        for item in creates:
            _create_relation(space, field, cid, item)
            changed = True
        return changed

    return commit


def _create_relation(space: Space, field: str, contact_id: str, data: Mapping[str, Any]) -> Row:
    type_name, key, _target, _input = RELATION_SETS[field]
    row: Row = {"id": space.new_id(), "contact_id": contact_id, key: data[key]}
    for name, value in data.items():
        if name in ("modified", "created", "revision", "contact_id", "account_roles"):
            continue
        row[name] = value
    space.stamp_new(row)
    space.insert(type_name, row)
    space.by_contact[field].setdefault(contact_id, []).append(row["id"])
    if field == "account_relations" and row.get("is_primary"):
        _clear_other_primaries(space, contact_id, row["id"])
    return row


def _clear_other_primaries(space: Space, contact_id: str, primary_id: str) -> None:
    rows = space.rows("ContactAccountRelation")
    for rid in space.by_contact["account_relations"].get(contact_id, ()):
        rel = rows[rid]
        if rid != primary_id and rel.get("is_primary"):
            rel["is_primary"] = False
            space.bump("ContactAccountRelation", rel)


def _touch_contact_for_sharing(space: Space, contact_id: str, actor: str | None = None) -> None:
    if space.settings["sharing_bumps_contact"]:
        contact = space.rows("Contact").get(contact_id)
        if contact is not None:
            space.bump("Contact", contact, actor)


# ---------------------------------------------------------------------- relations: API


def create_account_relation(
    space: Space, data: Any, *, vl: int = 0, actor: str | None = None
) -> Row:
    data = check_input(data, "createContactAccountRelationInput", vl=vl)
    contact = space.related(
        "Contact", data["contact_id"], "contact_id", "ContactAccountRelation", vl
    )
    space.related("Account", data["account_id"], "account_id", "ContactAccountRelation", vl)
    if data.get("account_roles"):
        raise validation("[account_roles] the sandbox does not model account roles")
    _no_duplicate(space, "account_relations", contact["id"], "account_id", data["account_id"])
    row = _create_relation(space, "account_relations", contact["id"], data)
    space.bump("Contact", contact, actor)
    return row


def create_sharing_client(space: Space, data: Any, *, vl: int = 0, actor: str | None = None) -> Row:
    data = check_input(data, "createContactSharingClientRelationInput", vl=vl)
    owner = "ContactSharingClientRelation"
    contact = space.related("Contact", data["contact_id"], "contact_id", owner, vl)
    space.related("Client", data["client_id"], "client_id", owner, vl)
    _no_duplicate(space, "sharing_clients", contact["id"], "client_id", data["client_id"])
    row = _create_relation(space, "sharing_clients", contact["id"], data)
    _touch_contact_for_sharing(space, contact["id"], actor)
    return row


def create_sharing_unit(space: Space, data: Any, *, vl: int = 0, actor: str | None = None) -> Row:
    data = check_input(data, "createContactSharingSalesUnitRelationInput", vl=vl)
    owner = "ContactSharingSalesUnitRelation"
    contact = space.related("Contact", data["contact_id"], "contact_id", owner, vl)
    space.related("SalesUnit", data["unit_id"], "unit_id", owner, vl)
    _no_duplicate(space, "sharing_units", contact["id"], "unit_id", data["unit_id"])
    row = _create_relation(space, "sharing_units", contact["id"], data)
    _touch_contact_for_sharing(space, contact["id"], actor)
    return row


def update_sharing_client(
    space: Space, rid: str, data: Any, *, vl: int = 0, actor: str | None = None
) -> Row:
    row = space.get("ContactSharingClientRelation", rid)
    data = check_input(data, "updateContactSharingClientRelationInput", vl=vl)
    owner = "ContactSharingClientRelation"
    contact_id = data.get("contact_id", row["contact_id"])
    client_id = data.get("client_id", row["client_id"])
    space.related("Contact", contact_id, "contact_id", owner, vl)
    space.related("Client", client_id, "client_id", owner, vl)
    if (contact_id, client_id) != (row["contact_id"], row["client_id"]):
        _no_duplicate(space, "sharing_clients", contact_id, "client_id", client_id)
    before = dict(row)
    row.update({k: v for k, v in data.items() if k in ("contact_id", "client_id", "role")})
    if row == before:
        return row
    if row["contact_id"] != before["contact_id"]:
        ids = space.by_contact["sharing_clients"]
        ids[before["contact_id"]].remove(rid)
        ids.setdefault(row["contact_id"], []).append(rid)
    space.bump(owner, row)
    for cid in dict.fromkeys((before["contact_id"], row["contact_id"])):
        _touch_contact_for_sharing(space, cid, actor)
    return row


def delete_relation(space: Space, field: str, rid: str, *, actor: str | None = None) -> Row:
    type_name = RELATION_SETS[field][0]
    row = space.get(type_name, rid)
    row["is_deleted"] = True
    space.bump(type_name, row)
    if field == "account_relations":
        contact = space.rows("Contact").get(row["contact_id"])
        if contact is not None:
            space.bump("Contact", contact, actor)
    else:
        _touch_contact_for_sharing(space, row["contact_id"], actor)
    return row


def set_relation_role(
    space: Space, field: str, rel: Row, role: Any, *, actor: str | None = None
) -> Row:
    """Change the role (1 watcher, 2 editor) of a sharing relation (control API)."""
    if isinstance(role, bool) or role not in F.ENUMS["role"]:
        raise invalid(f"[role] {role!r} is not one of {sorted(F.ENUMS['role'])}")
    if rel.get("role") != role:
        rel["role"] = role
        space.bump(RELATION_SETS[field][0], rel)
        _touch_contact_for_sharing(space, rel["contact_id"], actor)
    return rel


def _no_duplicate(space: Space, field: str, contact_id: str, key: str, value: str) -> None:
    type_name = RELATION_SETS[field][0]
    rows = space.rows(type_name)
    for rid in space.by_contact[field].get(contact_id, ()):
        rel = rows[rid]
        if not rel.get("is_deleted") and rel.get(key) == value:
            raise validation(
                f"[{key}] {type_name} {rid} already links contact {contact_id} and {value}"
            )


def find_relation(space: Space, field: str, contact_id: str, key_value: str) -> Row | None:
    type_name, key, _t, _i = RELATION_SETS[field]
    rows = space.rows(type_name)
    for rid in space.by_contact[field].get(contact_id, ()):
        rel = rows[rid]
        if not rel.get("is_deleted") and rel.get(key) == key_value:
            return rel
    return None
