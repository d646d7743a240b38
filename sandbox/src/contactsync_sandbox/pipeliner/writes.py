"""Write rules of contacts, accounts and users (`Client`s): what the API accepts and what it does.

Writes are *planned* first (every check that can refuse them) and committed after, so that
`batch-modify?rollback-method=0` can refuse a whole batch without undoing anything: a `plan_*`
function raises the error or returns the `Plan` that commits. The relation sets a contact input
carries are planned by `relations.py`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from . import fields as F
from .entities import last_segment
from .errors import PipelinerError, invalid, validation
from .inputs import check_input
from .registry import RELATION_SETS
from .relations import plan_relation_set
from .space import Row, Space
from .timefmt import parse_us

Plan = Callable[[], Row]

#: Contact relation inputs the emulator does not model: only empty values are accepted.
_UNMODELLED_CONTACT_INPUTS = {
    "social_media": "ContactSocialRelation",
    "documents": "CloudObjectRelation",
    "primary_account_account_roles": "ContactAccountAccountRoleRelation",
    "tags": "TagRelation",
    "static_profiles": "ProfileRelation",
}
#: Contact fields stored as given (besides text fields and cf_*).
_CONTACT_PLAIN = (
    "gender",
    "is_archived",
    "share_mode",
    "is_unsubscribed",
    "owner_id",
    "unit_id",
    "contact_type_id",
    "picture_id",
    "currency_exchange_rates_list_id",
)


# ---------------------------------------------------------------------- contacts: writes


def plan_contact_create(
    space: Space,
    data: Any,
    *,
    actor: str | None = None,
    vl: int = 0,
    schema: str = "createContactInput",
    where: str = "",
) -> Plan:
    data = check_input(data, schema, custom=True, vl=vl, required=("owner_id",), where=where)
    owner = space.related("Client", data["owner_id"], "owner_id", "Contact", vl)
    unit_id = data.get("unit_id") or owner.get("default_unit_id")
    space.related("SalesUnit", unit_id, "unit_id", "Contact", vl)
    _check_unmodelled(data)
    if not (str(data.get("first_name", "")).strip() or str(data.get("last_name", "")).strip()):
        raise validation("[first_name] at least one of first_name, last_name is required")
    _check_required(space, data, None, vl)
    if "account_position" in data:
        # With a new primary account relation, account_position is that relation's position.
        for item in data.get("account_relations", ()):
            if isinstance(item, dict) and item.get("is_primary") and "position" not in item:
                item["position"] = data["account_position"]
    relation_plans = [
        plan_relation_set(space, None, name, data[name], vl)
        for name in RELATION_SETS
        if name in data
    ]
    created = parse_us(data["created"]) if "created" in data else None

    def commit() -> Row:
        row: Row = {
            "id": space.new_id(),
            "owner_id": owner["id"],
            "unit_id": unit_id,
            "contact_type_id": data.get("contact_type_id") or space.default_contact_type_id,
        }
        _apply_contact_fields(space, row, data)
        space.stamp_new(row, actor, created)
        space.insert("Contact", row)
        for plan in relation_plans:
            plan(row["id"])
        space.types["Contact"].collection.touch(row["id"])
        return row

    return commit


def plan_contact_update(
    space: Space,
    rid: Any,
    data: Any,
    *,
    actor: str | None = None,
    vl: int = 0,
    schema: str = "updateContactInput",
    where: str = "",
) -> Plan:
    if not isinstance(rid, str):
        raise invalid(f"[{where or 'id'}] expected a uuid string")
    row = space.get("Contact", rid)
    data = check_input(data, schema, custom=True, vl=vl, where=where)
    data = {k: v for k, v in data.items() if k != "id"}
    if row.get("is_archived") and data.get("is_archived") is not False:
        raise validation(
            f"[is_archived] Contact {rid} is archived and cannot be edited until reactivated"
        )
    if "owner_id" in data:
        space.related("Client", data["owner_id"], "owner_id", "Contact", vl)
    if "unit_id" in data:
        space.related("SalesUnit", data["unit_id"], "unit_id", "Contact", vl)
    _check_unmodelled(data)
    first = data.get("first_name", row.get("first_name", ""))
    last = data.get("last_name", row.get("last_name", ""))
    if not (str(first).strip() or str(last).strip()):
        raise validation("[first_name] at least one of first_name, last_name is required")
    _check_required(space, data, row, vl)
    relation_plans = [
        plan_relation_set(space, rid, name, data[name], vl)
        for name in RELATION_SETS
        if name in data
    ]

    def commit() -> Row:
        before = copy.copy(row)
        primary = space.primary_relation(row)
        position_before = primary.get("position") if primary else None
        _apply_contact_fields(space, row, data)
        changed = row != before
        new_position = data.get("account_position", position_before)
        if primary is not None and new_position != position_before:
            primary["position"] = new_position
            space.bump("ContactAccountRelation", primary, actor)
            changed = True
        for plan in relation_plans:
            changed = plan(rid) or changed
        if changed:
            space.bump("Contact", row, actor)
        return row

    return commit


def _apply_contact_fields(space: Space, row: Row, data: Mapping[str, Any]) -> None:
    kinds = space.types["Contact"].kinds
    has_primary = space.primary_relation(row) is not None or any(
        isinstance(item, dict) and item.get("is_primary")
        for item in data.get("account_relations", ())
    )
    for name, value in data.items():
        kind = kinds.kind(name)
        if name == "created":
            row["created"] = parse_us(value)
        elif name == "account_position":
            # Written through to what it shows (see registry._account_position): the primary
            # relation's position (plan_contact_update), else the Quick Account Position.
            if not has_primary:
                row["position"] = value
        elif name == "picture":
            row["picture_id"] = last_segment(value.get("id")) if value else None
        elif name.startswith("cf_") or kind == "str" or name in _CONTACT_PLAIN:
            row[name] = value
        # revision, relation sets and unmodelled relations: handled elsewhere / ignored


def _check_required(space: Space, data: Mapping[str, Any], row: Row | None, vl: int) -> None:
    """The space's required Contact fields, as `validation-level` asks.

    Pipeliner's API parameters page (developers.pipelinersales.com/api-docs/core-api-concepts/
    api-parameters, "Validation"): 0, the default, validates each field of the entity; 2
    validates only the fields changed in the request; 4 only system fields ("When the
    business has many required fields on the Entities, you might want to skip the
    validation of those fields"). So with 0 a write fails while any required field of the
    resulting contact is empty, with 2 only if it sends one empty, with 4 never.
    """
    required = space.settings["contact_required_fields"]
    if not required or vl & 4:
        return
    for name in required:
        if vl & 2 and name not in data:
            continue
        value = data[name] if name in data else (row or {}).get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise validation(f"[{name}] is required in this space (Contact field)")


def _check_unmodelled(data: Mapping[str, Any]) -> None:
    for name, entity in _UNMODELLED_CONTACT_INPUTS.items():
        if data.get(name):
            raise validation(f"[{name}] the sandbox does not model {entity}; send it empty")


def plan_contact_delete(space: Space, rid: Any, *, actor: str | None = None) -> Plan:
    if not isinstance(rid, str):
        raise invalid("[id] expected a uuid string")
    row = space.get("Contact", rid)
    if row.get("is_delete_protected"):
        raise PipelinerError(
            "ERROR_ENTITY_DELETE_PROTECTED", f"Contact {rid} is protected against delete"
        )

    def commit() -> Row:
        row["is_deleted"] = True
        row["_deleted_at"] = space.clock.peek()
        if space.settings["delete_bumps_modified"]:
            space.bump("Contact", row, actor)
        else:
            space.types["Contact"].collection.touch(row["id"])
        return row

    return commit


def purge_deleted(space: Space) -> int:
    """Forget contacts deleted more than `purge_deleted_after` seconds ago (see the module
    docstring); returns how many went."""
    after = space.settings["purge_deleted_after"]
    if after is None:
        return 0
    cutoff = space.clock.peek() - int(after * 1_000_000)
    collection = space.types["Contact"].collection
    gone = [
        rid
        for rid, row in collection.records.items()
        if row.get("is_deleted") and row.get("_deleted_at", row.get("modified", 0)) <= cutoff
    ]
    if gone:
        collection.replace_all(
            {rid: row for rid, row in collection.records.items() if rid not in set(gone)}
        )
    return len(gone)


def plan_contact_restore(space: Space, rid: Any, *, actor: str | None = None) -> Plan:
    if not isinstance(rid, str):
        raise invalid("[id] expected a uuid string")
    row = space.get("Contact", rid, include_deleted=True)

    def commit() -> Row:
        if row.get("is_deleted"):
            row["is_deleted"] = False
            space.bump("Contact", row, actor)
        return row

    return commit


# ---------------------------------------------------------------------- accounts, clients


def create_account(space: Space, data: Any, *, vl: int = 0) -> Row:
    data = check_input(data, "createAccountInput", vl=vl)
    owner = space.related("Client", data["owner_id"], "owner_id", "Account", vl)
    unit_id = data.get("unit_id") or owner.get("default_unit_id")
    space.related("SalesUnit", unit_id, "unit_id", "Account", vl)
    for name in (
        "picture",
        "social_media",
        "sharing_units",
        "sharing_clients",
        "documents",
        "tags",
        "static_profiles",
    ):
        if data.get(name):
            raise validation(f"[{name}] the sandbox does not model this relation; send it empty")
    if not str(data["name"]).strip():
        raise validation("[name] is required")
    kinds = F.schema("Account").kinds
    row: Row = {"id": space.new_id(), "unit_id": unit_id}
    for name, value in data.items():
        if kinds.get(name) in ("str", "int", "bool", "uuid"):
            row[name] = value
    created = parse_us(data["created"]) if "created" in data else None
    space.stamp_new(row, created=created)
    return space.insert("Account", row)


def create_client(space: Space, data: Any, *, vl: int = 0) -> Row:
    data = check_input(data, "createClientInput", vl=vl)
    space.related("SalesUnit", data["default_unit_id"], "default_unit_id", "Client", vl)
    space.related("MasterRight", data["master_right_id"], "master_right_id", "Client", vl)
    if space.client_by_email(data["email"]) is not None:
        raise validation(f"[email] a Client with email {data['email']!r} exists already")
    members = _membership_units(space, data.get("unit_membership", []), vl)
    row: Row = {"id": space.new_id(), "unit_member_ids": members, "unit_manager_ids": []}
    _apply_client_fields(row, data)
    space.stamp_new(row)
    return space.insert("Client", row)


def update_client(space: Space, rid: str, data: Any, *, vl: int = 0) -> Row:
    row = space.get("Client", rid)
    data = check_input(data, "updateClientInput", vl=vl)
    if "default_unit_id" in data:
        space.related("SalesUnit", data["default_unit_id"], "default_unit_id", "Client", vl)
    if "master_right_id" in data:
        space.related("MasterRight", data["master_right_id"], "master_right_id", "Client", vl)
    before = copy.deepcopy(row)
    if "unit_membership" in data:
        row["unit_member_ids"] = _membership_units(space, data["unit_membership"], vl)
    _apply_client_fields(row, data)
    if row != before:
        space.bump("Client", row)
    return row


def _membership_units(space: Space, items: list[dict[str, Any]], vl: int) -> list[str]:
    """`unit_membership` items `{"id": <unit id or URI>}` → member unit ids (our reading)."""
    units: list[str] = []
    for index, item in enumerate(items):
        unit_id = last_segment(item.get("id"))
        space.related("SalesUnit", unit_id, f"unit_membership[{index}].id", "Client", vl)
        if unit_id not in units:
            units.append(str(unit_id))
    return units


def _apply_client_fields(row: Row, data: Mapping[str, Any]) -> None:
    kinds = F.schema("Client").kinds
    for name, value in data.items():
        if kinds.get(name) in ("str", "int", "bool", "uuid"):
            row[name] = value


def delete_client(space: Space, rid: str) -> Row:
    row = space.get("Client", rid)
    if row.get("is_delete_protected"):
        raise PipelinerError(
            "ERROR_ENTITY_DELETE_PROTECTED", f"Client {rid} is protected against delete"
        )
    row["is_deleted"] = True
    space.bump("Client", row)
    return row
