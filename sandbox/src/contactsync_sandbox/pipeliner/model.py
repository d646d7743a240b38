"""One emulated Pipeliner space: its entities, the rules of writes, rendering and list queries.

The HTTP layer (`emulator.py`) parses requests and calls into `Space`; everything here runs under
the emulator's lock. Writes are *planned* first (every check that can refuse them) and committed
after, so that `batch-modify?rollback-method=0` can refuse a whole batch without undoing anything.

Versions move like the real service's: every change of an entity stamps a new `modified` (the
emulator clock never repeats or goes back) and the next value of the space-wide `revision`
counter (so `revision` increases on every change of the entity and is comparable across rows).
A no-op update (all values equal) changes nothing. Changes of a contact's account relations
always bump the contact (its `primary_account` / `account_relations` change); changes of its
sharing relations bump it while the `sharing_bumps_contact` setting is true. The vendor documents
neither that, nor that a delete moves `modified` (`delete_bumps_modified`), nor how long deleted
contacts stay listable with `include-deleted=true` (`purge_deleted_after`: seconds after which a
deleted contact is gone for good, null = never). Each of the three is a switch, so that the
product is tested under both readings (its periodic full read must heal a missed change).
Changes made through the control API "as a user" also set `modified_by_user`; changes through the
API (application keys) do not.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import fields as F
from .entities import (
    CUSTOM_FIELD_RE,
    UUID_RE,
    EntityType,
    Kinds,
    Link,
    Tree,
    empty_list,
    meta_defaults,
    none,
    stored,
    text_defaults,
)
from .errors import PipelinerError, invalid, not_found, validation
from .query import Filter, Order, Query, QueryError, decode_cursor
from .timefmt import TIMESTAMP_FORMATS, Clock, format_us, from_us, parse_us

DEFAULT_CONTACT_TYPE_ID = "90000000-0000-4000-8000-000000000001"
DEFAULT_ACCOUNT_TYPE_ID = "90000000-0000-4000-8000-000000000002"
#: Default timestamps of seeded identities (users, units, roles, accounts) without their own.
SEED_EPOCH_US = parse_us("2025-01-02T08:00:00Z")
_ID_NAMESPACE = uuid.UUID("5a5a5a5a-0000-4000-8000-00000000ffff")

DEFAULT_SETTINGS: dict[str, Any] = {
    "sharing_bumps_contact": True,
    "delete_bumps_modified": True,
    "purge_deleted_after": None,
    "timestamp_format": "vendor",
    "include_total": False,
    "batch_max_items": 100,
    "rate_limit": None,
    # Contact fields the space makes required (Administration → Fields), e.g. custom fields.
    "contact_required_fields": [],
}
STRING_OPERATORS = frozenset(
    {"ieq", "not-ieq", "contains", "starts", "ends", "icontains", "istarts", "iends"}
)
VALUELESS_OPERATORS = frozenset({"null", "not-null", "empty", "not-empty"})
MAX_PAGE = 100
DEFAULT_PAGE = 30

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
_ROLE_CONTACT_DEFAULTS: dict[str, Any] = {
    "access_contacts": False,
    "access_entity_contact": 0,
    "access_entity_contact_copy": False,
    "access_entity_contact_delete": False,
    "access_entity_contact_direction": 1,
    "access_entity_contact_private": False,
    "access_entity_contact_tag_create": False,
    "access_entity_contact_types": 1,
}
_SALES_UNIT_KINDS = {
    "is_delete_protected": "bool",
    "id": "uuid",
    "is_deleted": "bool",
    "modified": "datetime",
    "created": "datetime",
    "parent": "uri",
    "name": "str",
    "parent_id": "uuid",
    "revision": "int",
}
# Relation sets a contact input may carry: field → (collection, key field, target, input schema)
_RELATION_SETS = {
    "account_relations": (
        "ContactAccountRelation",
        "account_id",
        "Account",
        "createContactAccountRelationInput",
    ),
    "sharing_clients": (
        "ContactSharingClientRelation",
        "client_id",
        "Client",
        "createContactSharingClientRelationInput",
    ),
    "sharing_units": (
        "ContactSharingSalesUnitRelation",
        "unit_id",
        "SalesUnit",
        "createContactSharingSalesUnitRelationInput",
    ),
}

Row = dict[str, Any]
Plan = Callable[[], Row]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _last_segment(ref: Any) -> str | None:
    """An id given as a uuid or as a relation URI (`.../entities/X/<id>`)."""
    if not isinstance(ref, str) or not ref:
        return None
    return ref.rstrip("/").rsplit("/", 1)[-1]


def iso(us: int) -> str:
    """A timestamp for the control API and snapshots (ISO 8601, µs, `Z`)."""
    return from_us(us).isoformat().replace("+00:00", "Z")


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
        self.by_contact: dict[str, dict[str, list[str]]] = {name: {} for name in _RELATION_SETS}
        self.types: dict[str, EntityType] = {}
        self._build_types()

    # ------------------------------------------------------------------ entity types

    def _build_types(self) -> None:
        t = self.types

        def add(etype: EntityType) -> EntityType:
            t[etype.name] = etype
            return etype

        contact = add(
            EntityType(
                "Contact",
                "Contacts",
                Kinds(F.schema("Contact").kinds, custom_fields=True),
                defaults={
                    **meta_defaults(),
                    **text_defaults("Contact"),
                    "gender": 0,
                    "is_archived": False,
                    "share_mode": 0,
                    "is_unsubscribed": False,
                    "is_favorite": False,
                },
                derived={
                    "formatted_name": self._formatted_name,
                    "account_position": self._account_position,
                    "primary_account_position": self._primary_account_position,
                },
            )
        )
        contact.links = {
            "contact_type": Link("ContactTypes", stored("contact_type_id")),
            "currency_exchange_rates_list": Link(
                "CurrencyExchangeRatesLists", stored("currency_exchange_rates_list_id")
            ),
            "owner": Link("Clients", stored("owner_id"), "Client"),
            "picture": Link("CloudObjects", stored("picture_id")),
            "unit": Link("SalesUnits", stored("unit_id")),
            "social_media": Link("ContactSocialRelations", none),
            "primary_account": Link("Accounts", self._primary_account_id, "Account"),
            "account_relations": Link(
                "ContactAccountRelations",
                self._relation_ids("account_relations"),
                "ContactAccountRelation",
                many=True,
            ),
            "sharing_units": Link(
                "ContactSharingSalesUnitRelations",
                self._relation_ids("sharing_units"),
                "ContactSharingSalesUnitRelation",
                many=True,
            ),
            "sharing_clients": Link(
                "ContactSharingClientRelations",
                self._relation_ids("sharing_clients"),
                "ContactSharingClientRelation",
                many=True,
            ),
            "documents": Link("CloudObjectRelations", empty_list, many=True),
            "primary_account_account_roles": Link(
                "ContactAccountAccountRoleRelations", empty_list, many=True
            ),
            "tags": Link("TagRelations", empty_list, many=True),
            "static_profiles": Link("ProfileRelations", empty_list, many=True),
        }
        add(
            EntityType(
                "Account",
                "Accounts",
                Kinds(F.schema("Account").kinds),
                defaults={
                    **meta_defaults(),
                    **text_defaults("Account"),
                    "account_type_id": DEFAULT_ACCOUNT_TYPE_ID,
                    "is_archived": False,
                    "share_mode": 0,
                    "is_favorite": False,
                    "is_unsubscribed": False,
                },
                derived={"formatted_name": stored("name")},
                links={
                    "account_type": Link("AccountTypes", self._account_type_id),
                    "currency_exchange_rates_list": Link(
                        "CurrencyExchangeRatesLists", stored("currency_exchange_rates_list_id")
                    ),
                    "customer_type": Link("Data", stored("customer_type_id")),
                    "industry": Link("Data", stored("industry_id")),
                    "owner": Link("Clients", stored("owner_id"), "Client"),
                    "parent_account": Link("Accounts", stored("parent_account_id"), "Account"),
                    "parent_account_relation_type": Link(
                        "ParentAccountRelationTypes", stored("parent_account_relation_type_id")
                    ),
                    "picture": Link("CloudObjects", stored("picture_id")),
                    "unit": Link("SalesUnits", stored("unit_id")),
                    "social_media": Link("AccountSocialRelations", none),
                    "sharing_units": Link(
                        "AccountSharingSalesUnitRelations", empty_list, many=True
                    ),
                    "sharing_clients": Link("AccountSharingClientRelations", empty_list, many=True),
                    "documents": Link("CloudObjectRelations", empty_list, many=True),
                    "tags": Link("TagRelations", empty_list, many=True),
                    "static_profiles": Link("ProfileRelations", empty_list, many=True),
                },
            )
        )
        add(
            EntityType(
                "Client",
                "Clients",
                Kinds(F.schema("Client").kinds),
                defaults={
                    **meta_defaults(),
                    **text_defaults("Client", skip=("user_recalculation_state",)),
                    "type": 0,
                    "unit_manager_ids": [],
                    "unit_member_ids": [],
                    "user_recalculation_state": "NoRecalculation",
                },
                derived={"formatted_name": self._client_name, "name": self._client_name},
                links={
                    "default_unit": Link("SalesUnits", stored("default_unit_id")),
                    "master_right": Link("MasterRights", stored("master_right_id"), "MasterRight"),
                    "unit_membership": Link(
                        "SalesUnitClientRelations", self._unit_membership_ids, many=True
                    ),
                    **{
                        name: Link("ClientFavorites", empty_list, many=True)
                        for name in (
                            "appointment_favorite",
                            "task_favorite",
                            "account_favorite",
                            "contact_favorite",
                            "profile_favorite",
                            "report_favorite",
                            "lead_favorite",
                            "opportunity_favorite",
                        )
                    },
                },
            )
        )
        add(
            EntityType(
                "MasterRight",
                "MasterRights",
                Kinds(F.schema("MasterRight").kinds),
                defaults={**meta_defaults(), **_ROLE_CONTACT_DEFAULTS},
                links={
                    name: Link("AllowedTypes", empty_list, many=True)
                    for name, kind in F.schema("MasterRight").kinds.items()
                    if kind == "uri[]"
                },
            )
        )
        add(
            EntityType(
                "ContactAccountRelation",
                "ContactAccountRelations",
                Kinds(F.schema("ContactAccountRelation").kinds),
                defaults={
                    **meta_defaults(),
                    **text_defaults("ContactAccountRelation"),
                    "is_assistant": False,
                    "is_primary": False,
                    "is_sibling": False,
                    "relationship": 0,
                },
                links={
                    "account": Link("Accounts", stored("account_id"), "Account"),
                    "contact": Link("Contacts", stored("contact_id"), "Contact"),
                    "account_roles": Link(
                        "ContactAccountAccountRoleRelations", empty_list, many=True
                    ),
                },
            )
        )
        add(
            EntityType(
                "ContactSharingClientRelation",
                "ContactSharingClientRelations",
                Kinds(F.schema("ContactSharingClientRelation").kinds),
                defaults={**meta_defaults(), "role": 1},
                links={
                    "client": Link("Clients", stored("client_id"), "Client"),
                    "contact": Link("Contacts", stored("contact_id"), "Contact"),
                },
            )
        )
        add(
            EntityType(
                "ContactSharingSalesUnitRelation",
                "ContactSharingSalesUnitRelations",
                Kinds(F.schema("ContactSharingSalesUnitRelation").kinds),
                defaults={**meta_defaults(), "role": 1},
                links={
                    "contact": Link("Contacts", stored("contact_id"), "Contact"),
                    "unit": Link("SalesUnits", stored("unit_id")),
                },
            )
        )
        add(
            EntityType(
                "SalesUnit",
                "SalesUnits",
                Kinds(_SALES_UNIT_KINDS),
                defaults=meta_defaults(),
                links={"parent": Link("SalesUnits", stored("parent_id"))},
                nulls=True,
            )
        )

    def rows(self, type_name: str) -> dict[str, Row]:
        return self.types[type_name].collection.records

    # ------------------------------------------------------------------ derived values

    def _formatted_name(self, row: Mapping[str, Any]) -> str:
        parts = (row.get(k) for k in ("title", "first_name", "middle_name", "last_name"))
        return " ".join(p.strip() for p in parts if p and p.strip())

    def _client_name(self, row: Mapping[str, Any]) -> str:
        parts = (row.get(k) for k in ("first_name", "middle_name", "last_name"))
        return " ".join(p for p in parts if p) or str(row.get("email", ""))

    def _primary_relation(self, row: Mapping[str, Any]) -> Row | None:
        ids = self.by_contact["account_relations"].get(row["id"])
        if not ids:
            return None
        relations = self.rows("ContactAccountRelation")
        for rid in ids:
            rel = relations[rid]
            if rel.get("is_primary") and not rel.get("is_deleted"):
                return rel
        return None

    def _primary_account_id(self, row: Mapping[str, Any]) -> str | None:
        rel = self._primary_relation(row)
        return rel["account_id"] if rel else None

    def _account_position(self, row: Mapping[str, Any]) -> str:
        """The job title Pipeliner shows. Spec (Contact.account_position): "Job position of
        Contact in his primary Account or quick account position if Contact has no primary
        Account"; the create-contact tutorial (developers.pipelinersales.com/api-docs/
        tutorials-and-articles/create-contact, "Setting up the Position"): `position` is the
        Quick Account Position, for contacts not linked to an Account, and `account_position`
        "is linked directly with the Account"."""
        rel = self._primary_relation(row)
        return str(rel.get("position", "")) if rel else str(row.get("position", ""))

    def _primary_account_position(self, row: Mapping[str, Any]) -> str:
        rel = self._primary_relation(row)
        return str(rel.get("position", "")) if rel else ""

    def _account_type_id(self, row: Mapping[str, Any]) -> str:
        return str(row.get("account_type_id") or DEFAULT_ACCOUNT_TYPE_ID)

    def _unit_membership_ids(self, row: Mapping[str, Any]) -> list[str]:
        units = [*row.get("unit_member_ids", ()), *row.get("unit_manager_ids", ())]
        return [str(uuid.uuid5(_ID_NAMESPACE, f"{row['id']}/{unit}")) for unit in units]

    def _relation_ids(self, field: str) -> Callable[[Mapping[str, Any]], list[str]]:
        type_name = _RELATION_SETS[field][0]

        def ids(row: Mapping[str, Any]) -> list[str]:
            rows = self.rows(type_name)
            return [
                rid
                for rid in self.by_contact[field].get(row["id"], ())
                if not rows[rid].get("is_deleted")
            ]

        return ids

    # ------------------------------------------------------------------ versions

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision

    def _stamp_new(self, row: Row, actor: str | None = None, created: int | None = None) -> Row:
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

    def _insert(self, type_name: str, row: Row) -> Row:
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

    def _related(self, type_name: str, rid: Any, where: str, owner: str, vl: int = 0) -> Row:
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

    # ------------------------------------------------------------------ input checks

    def check_input(
        self,
        data: Any,
        schema_name: str,
        *,
        custom: bool = False,
        vl: int = 0,
        required: Iterable[str] | None = None,
        where: str = "",
    ) -> dict[str, Any]:
        """Refuse (400 ERROR_PARAMETER_INVALID) what the spec's input schema does not allow."""
        prefix = f"{where}." if where else ""
        if not isinstance(data, dict):
            raise invalid(f"[{where or 'body'}] expected an object ({schema_name})")
        schema = F.schema(schema_name)
        for name, value in data.items():
            kind = schema.kinds.get(name)
            if kind is None:
                if custom and isinstance(name, str) and CUSTOM_FIELD_RE.match(name):
                    if value is not None and not isinstance(value, str | int | float | bool):
                        raise invalid(f"[{prefix}{name}] a custom field value must be a scalar")
                    continue
                raise invalid(f"[{prefix}{name}] unknown field: {schema_name} has no {name!r}")
            if name in schema.read_only and not vl & 8:
                raise invalid(f"[{prefix}{name}] is read-only")
            self._check_kind(f"{prefix}{name}", name, kind, value)
        for name in schema.required if required is None else required:
            if name not in data:
                raise invalid(f"[{prefix}{name}] is required ({schema_name})")
        return data

    @staticmethod
    def _check_kind(label: str, name: str, kind: str, value: Any) -> None:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "uuid": isinstance(value, str) and bool(UUID_RE.match(value)),
            "datetime": isinstance(value, str),
            "rel": isinstance(value, dict),
            "rel[]": isinstance(value, list) and all(isinstance(v, dict) for v in value),
            "object": isinstance(value, dict),
        }.get(kind, False)
        if not ok:
            expected = {"uuid": "a uuid string", "rel": "an object", "rel[]": "an array"}.get(
                kind, kind
            )
            raise invalid(f"[{label}] expected {expected}, got {_json_type(value)}")
        if kind == "int" and name in F.ENUMS and value not in F.ENUMS[name]:
            raise invalid(f"[{label}] {value} is not one of {sorted(F.ENUMS[name])}")
        if kind == "datetime":
            try:
                parse_us(value)
            except ValueError:
                raise invalid(f"[{label}] not a date-time: {value!r}") from None

    # ------------------------------------------------------------------ contacts: writes

    def plan_contact_create(
        self,
        data: Any,
        *,
        actor: str | None = None,
        vl: int = 0,
        schema: str = "createContactInput",
        where: str = "",
    ) -> Plan:
        data = self.check_input(
            data, schema, custom=True, vl=vl, required=("owner_id",), where=where
        )
        owner = self._related("Client", data["owner_id"], "owner_id", "Contact", vl)
        unit_id = data.get("unit_id") or owner.get("default_unit_id")
        self._related("SalesUnit", unit_id, "unit_id", "Contact", vl)
        self._check_unmodelled(data)
        if not (str(data.get("first_name", "")).strip() or str(data.get("last_name", "")).strip()):
            raise validation("[first_name] at least one of first_name, last_name is required")
        self._check_required(data, None, vl)
        if "account_position" in data:
            # With a new primary account relation, account_position is that relation's position.
            for item in data.get("account_relations", ()):
                if isinstance(item, dict) and item.get("is_primary") and "position" not in item:
                    item["position"] = data["account_position"]
        relation_plans = [
            self._plan_relation_set(None, name, data[name], vl)
            for name in _RELATION_SETS
            if name in data
        ]
        created = parse_us(data["created"]) if "created" in data else None

        def commit() -> Row:
            row: Row = {
                "id": self.new_id(),
                "owner_id": owner["id"],
                "unit_id": unit_id,
                "contact_type_id": data.get("contact_type_id") or self.default_contact_type_id,
            }
            self._apply_contact_fields(row, data)
            self._stamp_new(row, actor, created)
            self._insert("Contact", row)
            for plan in relation_plans:
                plan(row["id"])
            self.types["Contact"].collection.touch(row["id"])
            return row

        return commit

    def plan_contact_update(
        self,
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
        row = self.get("Contact", rid)
        data = self.check_input(data, schema, custom=True, vl=vl, where=where)
        data = {k: v for k, v in data.items() if k != "id"}
        if row.get("is_archived") and data.get("is_archived") is not False:
            raise validation(
                f"[is_archived] Contact {rid} is archived and cannot be edited until reactivated"
            )
        if "owner_id" in data:
            self._related("Client", data["owner_id"], "owner_id", "Contact", vl)
        if "unit_id" in data:
            self._related("SalesUnit", data["unit_id"], "unit_id", "Contact", vl)
        self._check_unmodelled(data)
        first = data.get("first_name", row.get("first_name", ""))
        last = data.get("last_name", row.get("last_name", ""))
        if not (str(first).strip() or str(last).strip()):
            raise validation("[first_name] at least one of first_name, last_name is required")
        self._check_required(data, row, vl)
        relation_plans = [
            self._plan_relation_set(rid, name, data[name], vl)
            for name in _RELATION_SETS
            if name in data
        ]

        def commit() -> Row:
            before = copy.copy(row)
            primary = self._primary_relation(row)
            position_before = primary.get("position") if primary else None
            self._apply_contact_fields(row, data)
            changed = row != before
            new_position = data.get("account_position", position_before)
            if primary is not None and new_position != position_before:
                primary["position"] = new_position
                self.bump("ContactAccountRelation", primary, actor)
                changed = True
            for plan in relation_plans:
                changed = plan(rid) or changed
            if changed:
                self.bump("Contact", row, actor)
            return row

        return commit

    def _apply_contact_fields(self, row: Row, data: Mapping[str, Any]) -> None:
        kinds = self.types["Contact"].kinds
        has_primary = self._primary_relation(row) is not None or any(
            isinstance(item, dict) and item.get("is_primary")
            for item in data.get("account_relations", ())
        )
        for name, value in data.items():
            kind = kinds.kind(name)
            if name == "created":
                row["created"] = parse_us(value)
            elif name == "account_position":
                # Written through to what it shows (see _account_position): the primary
                # relation's position (plan_contact_update), else the Quick Account Position.
                if not has_primary:
                    row["position"] = value
            elif name == "picture":
                row["picture_id"] = _last_segment(value.get("id")) if value else None
            elif name.startswith("cf_") or kind == "str" or name in _CONTACT_PLAIN:
                row[name] = value
            # revision, relation sets and unmodelled relations: handled elsewhere / ignored

    def _check_required(self, data: Mapping[str, Any], row: Row | None, vl: int) -> None:
        """The space's required Contact fields, as `validation-level` asks.

        Pipeliner's API parameters page (developers.pipelinersales.com/api-docs/core-api-concepts/
        api-parameters, "Validation"): 0, the default, validates each field of the entity; 2
        validates only the fields changed in the request; 4 only system fields ("When the
        business has many required fields on the Entities, you might want to skip the
        validation of those fields"). So with 0 a write fails while any required field of the
        resulting contact is empty, with 2 only if it sends one empty, with 4 never.
        """
        required = self.settings["contact_required_fields"]
        if not required or vl & 4:
            return
        for name in required:
            if vl & 2 and name not in data:
                continue
            value = data[name] if name in data else (row or {}).get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise validation(f"[{name}] is required in this space (Contact field)")

    def _check_unmodelled(self, data: Mapping[str, Any]) -> None:
        for name, entity in _UNMODELLED_CONTACT_INPUTS.items():
            if data.get(name):
                raise validation(f"[{name}] the sandbox does not model {entity}; send it empty")

    def plan_contact_delete(self, rid: Any, *, actor: str | None = None) -> Plan:
        if not isinstance(rid, str):
            raise invalid("[id] expected a uuid string")
        row = self.get("Contact", rid)
        if row.get("is_delete_protected"):
            raise PipelinerError(
                "ERROR_ENTITY_DELETE_PROTECTED", f"Contact {rid} is protected against delete"
            )

        def commit() -> Row:
            row["is_deleted"] = True
            row["_deleted_at"] = self.clock.peek()
            if self.settings["delete_bumps_modified"]:
                self.bump("Contact", row, actor)
            else:
                self.types["Contact"].collection.touch(row["id"])
            return row

        return commit

    def purge_deleted(self) -> int:
        """Forget contacts deleted more than `purge_deleted_after` seconds ago (see the module
        docstring); returns how many went."""
        after = self.settings["purge_deleted_after"]
        if after is None:
            return 0
        cutoff = self.clock.peek() - int(after * 1_000_000)
        collection = self.types["Contact"].collection
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

    def plan_contact_restore(self, rid: Any, *, actor: str | None = None) -> Plan:
        if not isinstance(rid, str):
            raise invalid("[id] expected a uuid string")
        row = self.get("Contact", rid, include_deleted=True)

        def commit() -> Row:
            if row.get("is_deleted"):
                row["is_deleted"] = False
                self.bump("Contact", row, actor)
            return row

        return commit

    # ------------------------------------------------------------------ relation sets

    def _plan_relation_set(
        self, contact_id: str | None, field: str, items: list[Any], vl: int
    ) -> Callable[[str], bool]:
        """Plan `account_relations` / `sharing_clients` / `sharing_units` of a contact input.

        The list replaces the contact's set: `{"id": <relation id or URI>}` keeps an existing
        relation of this contact, an object of the create input (without `contact_id`) adds
        one (e.g. `{"client_id": ..., "role": 2}`), relations not listed are deleted.
        """
        type_name, key, target, input_schema = _RELATION_SETS[field]
        rows = self.rows(type_name)
        keep: list[str] = []
        creates: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            label = f"{field}[{index}]"
            if "id" in item:
                if set(item) != {"id"}:
                    raise invalid(f"[{label}] an item with 'id' keeps that relation; no other keys")
                rid = _last_segment(item["id"])
                rel = rows.get(rid) if rid else None
                if rel is None or rel.get("is_deleted") or rel.get("contact_id") != contact_id:
                    raise validation(
                        f"[{label}.id] {type_name} {item['id']} of this contact doesn't exist"
                    )
                keep.append(rel["id"])
                continue
            item = self.check_input(
                {k: v for k, v in item.items() if k != "contact_id" or v == contact_id},
                input_schema,
                required=(key,),
                where=label,
                vl=vl,
            )
            self._related(target, item[key], key, type_name, vl)
            creates.append(item)
        keys = [rows[rid][key] for rid in keep] + [item[key] for item in creates]
        if len(set(keys)) != len(keys):
            raise validation(f"[{field}] the same {key} appears twice")
        if field == "account_relations" and sum(bool(c.get("is_primary")) for c in creates) > 1:
            raise validation(f"[{field}] at most one relation can be primary")

        def commit(cid: str) -> bool:
            changed = False
            current = self.by_contact[field].get(cid, [])
            for rid in current:
                rel = rows[rid]
                if not rel.get("is_deleted") and rid not in keep:
                    rel["is_deleted"] = True
                    self.bump(type_name, rel)
                    changed = True
            for item in creates:
                self._create_relation(field, cid, item)
                changed = True
            return changed

        return commit

    def _create_relation(self, field: str, contact_id: str, data: Mapping[str, Any]) -> Row:
        type_name, key, _target, _input = _RELATION_SETS[field]
        row: Row = {"id": self.new_id(), "contact_id": contact_id, key: data[key]}
        for name, value in data.items():
            if name in ("modified", "created", "revision", "contact_id", "account_roles"):
                continue
            row[name] = value
        self._stamp_new(row)
        self._insert(type_name, row)
        self.by_contact[field].setdefault(contact_id, []).append(row["id"])
        if field == "account_relations" and row.get("is_primary"):
            self._clear_other_primaries(contact_id, row["id"])
        return row

    def _clear_other_primaries(self, contact_id: str, primary_id: str) -> None:
        rows = self.rows("ContactAccountRelation")
        for rid in self.by_contact["account_relations"].get(contact_id, ()):
            rel = rows[rid]
            if rid != primary_id and rel.get("is_primary"):
                rel["is_primary"] = False
                self.bump("ContactAccountRelation", rel)

    def _touch_contact_for_sharing(self, contact_id: str, actor: str | None = None) -> None:
        if self.settings["sharing_bumps_contact"]:
            contact = self.rows("Contact").get(contact_id)
            if contact is not None:
                self.bump("Contact", contact, actor)

    # ------------------------------------------------------------------ relations: API

    def create_account_relation(self, data: Any, *, vl: int = 0, actor: str | None = None) -> Row:
        data = self.check_input(data, "createContactAccountRelationInput", vl=vl)
        contact = self._related(
            "Contact", data["contact_id"], "contact_id", "ContactAccountRelation", vl
        )
        self._related("Account", data["account_id"], "account_id", "ContactAccountRelation", vl)
        if data.get("account_roles"):
            raise validation("[account_roles] the sandbox does not model account roles")
        self._no_duplicate("account_relations", contact["id"], "account_id", data["account_id"])
        row = self._create_relation("account_relations", contact["id"], data)
        self.bump("Contact", contact, actor)
        return row

    def create_sharing_client(self, data: Any, *, vl: int = 0, actor: str | None = None) -> Row:
        data = self.check_input(data, "createContactSharingClientRelationInput", vl=vl)
        owner = "ContactSharingClientRelation"
        contact = self._related("Contact", data["contact_id"], "contact_id", owner, vl)
        self._related("Client", data["client_id"], "client_id", owner, vl)
        self._no_duplicate("sharing_clients", contact["id"], "client_id", data["client_id"])
        row = self._create_relation("sharing_clients", contact["id"], data)
        self._touch_contact_for_sharing(contact["id"], actor)
        return row

    def create_sharing_unit(self, data: Any, *, vl: int = 0, actor: str | None = None) -> Row:
        data = self.check_input(data, "createContactSharingSalesUnitRelationInput", vl=vl)
        owner = "ContactSharingSalesUnitRelation"
        contact = self._related("Contact", data["contact_id"], "contact_id", owner, vl)
        self._related("SalesUnit", data["unit_id"], "unit_id", owner, vl)
        self._no_duplicate("sharing_units", contact["id"], "unit_id", data["unit_id"])
        row = self._create_relation("sharing_units", contact["id"], data)
        self._touch_contact_for_sharing(contact["id"], actor)
        return row

    def update_sharing_client(
        self, rid: str, data: Any, *, vl: int = 0, actor: str | None = None
    ) -> Row:
        row = self.get("ContactSharingClientRelation", rid)
        data = self.check_input(data, "updateContactSharingClientRelationInput", vl=vl)
        owner = "ContactSharingClientRelation"
        contact_id = data.get("contact_id", row["contact_id"])
        client_id = data.get("client_id", row["client_id"])
        self._related("Contact", contact_id, "contact_id", owner, vl)
        self._related("Client", client_id, "client_id", owner, vl)
        if (contact_id, client_id) != (row["contact_id"], row["client_id"]):
            self._no_duplicate("sharing_clients", contact_id, "client_id", client_id)
        before = dict(row)
        row.update({k: v for k, v in data.items() if k in ("contact_id", "client_id", "role")})
        if row == before:
            return row
        if row["contact_id"] != before["contact_id"]:
            ids = self.by_contact["sharing_clients"]
            ids[before["contact_id"]].remove(rid)
            ids.setdefault(row["contact_id"], []).append(rid)
        self.bump(owner, row)
        for cid in dict.fromkeys((before["contact_id"], row["contact_id"])):
            self._touch_contact_for_sharing(cid, actor)
        return row

    def delete_relation(self, field: str, rid: str, *, actor: str | None = None) -> Row:
        type_name = _RELATION_SETS[field][0]
        row = self.get(type_name, rid)
        row["is_deleted"] = True
        self.bump(type_name, row)
        if field == "account_relations":
            contact = self.rows("Contact").get(row["contact_id"])
            if contact is not None:
                self.bump("Contact", contact, actor)
        else:
            self._touch_contact_for_sharing(row["contact_id"], actor)
        return row

    def set_relation_role(
        self, field: str, rel: Row, role: Any, *, actor: str | None = None
    ) -> Row:
        """Change the role (1 watcher, 2 editor) of a sharing relation (control API)."""
        if isinstance(role, bool) or role not in F.ENUMS["role"]:
            raise invalid(f"[role] {role!r} is not one of {sorted(F.ENUMS['role'])}")
        if rel.get("role") != role:
            rel["role"] = role
            self.bump(_RELATION_SETS[field][0], rel)
            self._touch_contact_for_sharing(rel["contact_id"], actor)
        return rel

    def _no_duplicate(self, field: str, contact_id: str, key: str, value: str) -> None:
        type_name = _RELATION_SETS[field][0]
        rows = self.rows(type_name)
        for rid in self.by_contact[field].get(contact_id, ()):
            rel = rows[rid]
            if not rel.get("is_deleted") and rel.get(key) == value:
                raise validation(
                    f"[{key}] {type_name} {rid} already links contact {contact_id} and {value}"
                )

    def find_relation(self, field: str, contact_id: str, key_value: str) -> Row | None:
        type_name, key, _t, _i = _RELATION_SETS[field]
        rows = self.rows(type_name)
        for rid in self.by_contact[field].get(contact_id, ()):
            rel = rows[rid]
            if not rel.get("is_deleted") and rel.get(key) == key_value:
                return rel
        return None

    # ------------------------------------------------------------------ accounts, clients

    def create_account(self, data: Any, *, vl: int = 0) -> Row:
        data = self.check_input(data, "createAccountInput", vl=vl)
        owner = self._related("Client", data["owner_id"], "owner_id", "Account", vl)
        unit_id = data.get("unit_id") or owner.get("default_unit_id")
        self._related("SalesUnit", unit_id, "unit_id", "Account", vl)
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
                raise validation(
                    f"[{name}] the sandbox does not model this relation; send it empty"
                )
        if not str(data["name"]).strip():
            raise validation("[name] is required")
        kinds = F.schema("Account").kinds
        row: Row = {"id": self.new_id(), "unit_id": unit_id}
        for name, value in data.items():
            if kinds.get(name) in ("str", "int", "bool", "uuid"):
                row[name] = value
        created = parse_us(data["created"]) if "created" in data else None
        self._stamp_new(row, created=created)
        return self._insert("Account", row)

    def create_client(self, data: Any, *, vl: int = 0) -> Row:
        data = self.check_input(data, "createClientInput", vl=vl)
        self._related("SalesUnit", data["default_unit_id"], "default_unit_id", "Client", vl)
        self._related("MasterRight", data["master_right_id"], "master_right_id", "Client", vl)
        if self.client_by_email(data["email"]) is not None:
            raise validation(f"[email] a Client with email {data['email']!r} exists already")
        members = self._membership_units(data.get("unit_membership", []), vl)
        row: Row = {"id": self.new_id(), "unit_member_ids": members, "unit_manager_ids": []}
        self._apply_client_fields(row, data)
        self._stamp_new(row)
        return self._insert("Client", row)

    def update_client(self, rid: str, data: Any, *, vl: int = 0) -> Row:
        row = self.get("Client", rid)
        data = self.check_input(data, "updateClientInput", vl=vl)
        if "default_unit_id" in data:
            self._related("SalesUnit", data["default_unit_id"], "default_unit_id", "Client", vl)
        if "master_right_id" in data:
            self._related("MasterRight", data["master_right_id"], "master_right_id", "Client", vl)
        before = copy.deepcopy(row)
        if "unit_membership" in data:
            row["unit_member_ids"] = self._membership_units(data["unit_membership"], vl)
        self._apply_client_fields(row, data)
        if row != before:
            self.bump("Client", row)
        return row

    def _membership_units(self, items: list[dict[str, Any]], vl: int) -> list[str]:
        """`unit_membership` items `{"id": <unit id or URI>}` → member unit ids (our reading)."""
        units: list[str] = []
        for index, item in enumerate(items):
            unit_id = _last_segment(item.get("id"))
            self._related("SalesUnit", unit_id, f"unit_membership[{index}].id", "Client", vl)
            if unit_id not in units:
                units.append(str(unit_id))
        return units

    def _apply_client_fields(self, row: Row, data: Mapping[str, Any]) -> None:
        kinds = F.schema("Client").kinds
        for name, value in data.items():
            if kinds.get(name) in ("str", "int", "bool", "uuid"):
                row[name] = value

    def delete_client(self, rid: str) -> Row:
        row = self.get("Client", rid)
        if row.get("is_delete_protected"):
            raise PipelinerError(
                "ERROR_ENTITY_DELETE_PROTECTED", f"Client {rid} is protected against delete"
            )
        row["is_deleted"] = True
        self.bump("Client", row)
        return row

    # ------------------------------------------------------------------ reading

    def parse_expand(self, type_name: str, text: str | None) -> Tree:
        tree: Tree = {}
        if text is None or not text.strip():
            return tree
        for path in text.split(","):
            names = path.strip().split(".")
            node, etype = tree, self.types[type_name]
            for name in names:
                link = etype.links.get(name)
                if link is None:
                    what = "not a relation" if etype.kinds.kind(name) else "unknown field"
                    raise invalid(f"[expand] {name!r} of {etype.name}: {what}")
                if link.target is None:
                    raise invalid(
                        f"[expand] the sandbox cannot expand {etype.name}.{name} "
                        f"(its entity is outside the pruned spec)"
                    )
                node = node.setdefault(name, {})
                etype = self.types[link.target]
        return tree

    def parse_load_only(self, type_name: str, text: str | None, expand: Tree) -> Tree | None:
        if text is None or not text.strip():
            return None
        tree: Tree = {}
        for path in text.split(","):
            names = [name.strip() for name in path.split(".")]
            node, etype, expanded = tree, self.types[type_name], expand
            for depth, name in enumerate(names):
                if not name or etype.kinds.kind(name) is None:
                    raise invalid(f"[load-only] {etype.name} has no field {name!r}")
                child = node.setdefault(name, {})
                if depth + 1 == len(names):
                    break
                link = etype.links.get(name)
                if link is None or link.target is None or name not in expanded:
                    break  # a nested path under a relation that is not expanded: the URI
                etype, expanded, node = self.types[link.target], expanded[name], child
        return tree

    def render(
        self,
        type_name: str,
        row: Mapping[str, Any],
        base: str,
        expand: Tree | None = None,
        load_only: Tree | None = None,
    ) -> dict[str, Any]:
        """A row as the API answers it (spec fields only, relations as URIs unless expanded)."""
        etype = self.types[type_name]
        expand = expand or {}
        style = self.settings["timestamp_format"]
        out: dict[str, Any] = {}
        for name, kind in etype.kinds.items():
            if load_only is not None and name not in load_only and name != "id":
                continue
            if kind in ("uri", "uri[]"):
                link = etype.links.get(name)
                if link is None:
                    continue
                ids = link.ids(row)
                if name in expand and link.target is not None:
                    sub_load = (load_only or {}).get(name) or None
                    target = self.types[link.target].collection.records
                    if link.many:
                        out[name] = [
                            self.render(link.target, target[i], base, expand[name], sub_load)
                            for i in ids
                            if i in target
                        ]
                    elif ids is not None and ids in target:
                        out[name] = self.render(
                            link.target, target[ids], base, expand[name], sub_load
                        )
                    elif etype.nulls:
                        out[name] = None
                elif link.many:
                    out[name] = [f"{base}/{link.plural}/{i}" for i in ids]
                elif ids is not None:
                    out[name] = f"{base}/{link.plural}/{ids}"
                elif etype.nulls:
                    out[name] = None
                continue
            if kind not in F.SCALAR_KINDS and kind not in ("uuid[]", "str[]"):
                continue  # objects, binaries: not modelled
            value = etype.value(row, name)
            if value is None:
                if etype.nulls:
                    out[name] = None
                continue
            if kind == "datetime":
                value = format_us(value, style)
            elif kind in ("uuid[]", "str[]"):
                value = list(value)
            out[name] = value
        if etype.custom_fields:
            for name, value in row.items():
                if name.startswith("cf_") and (load_only is None or name in load_only):
                    out[name] = value
        return out

    def query_from_args(self, type_name: str, args: Any) -> Query:
        """`first`, `last`, `after`, `before`, `order-by`, `filter[...]`, `filter-op[...]`,
        `include-deleted` → a `Query` (400 ERROR_PARAMETER_INVALID on anything wrong)."""
        etype = self.types[type_name]
        order = self._parse_order(etype, args.get("order-by"))
        q = Query(order=order, want_total=bool(self.settings["include_total"]))
        q.first = _int_arg(args, "first", 1, MAX_PAGE)
        q.last = _int_arg(args, "last", 0, MAX_PAGE)
        if q.first is None and q.last is None:
            q.first = DEFAULT_PAGE
        q.include_deleted = _bool_arg(args, "include-deleted")
        q.filters = self._parse_filters(etype, args)
        try:
            if args.get("after"):
                q.after = decode_cursor(args.get("after"), order, etype.kinds)
            if args.get("before"):
                q.before = decode_cursor(args.get("before"), order, etype.kinds)
        except QueryError as exc:
            raise invalid(f"[after/before] {exc}") from None
        return q

    @staticmethod
    def _parse_order(etype: EntityType, text: str | None) -> Order:
        if text is None or not text.strip():
            return ()
        order: list[tuple[str, bool]] = []
        for part in text.split(","):
            part = part.strip()
            descending = part.startswith("-")
            name = part[1:] if descending else part
            kind = etype.kinds.kind(name)
            if kind is None:
                raise invalid(f"[order-by] {etype.name} has no field {name!r}")
            if kind not in F.SCALAR_KINDS:
                raise invalid(f"[order-by] cannot order by {name!r} ({kind})")
            order.append((name, descending))
        return tuple(order)

    @staticmethod
    def _parse_filters(etype: EntityType, args: Any) -> list[Filter]:
        values: dict[str, str] = {}
        ops: dict[str, str] = {}
        for key, value in args.items(multi=True):
            if key in ("filter", "filter-op"):
                raise invalid(f"[{key}] use filter[<field>]=<value> and filter-op[<field>]=<op>")
            if key.startswith("filter-op["):
                target, name = ops, key[len("filter-op") :]
            elif key.startswith("filter["):
                target, name = values, key[len("filter") :]
            else:
                continue
            if not (name.endswith("]") and len(name) > 2 and "[" not in name[1:-1]):
                raise invalid(f"[{key}] use filter[<field>]=<value> and filter-op[<field>]=<op>")
            target.setdefault(name[1:-1], value)
        filters: list[Filter] = []
        for name in dict.fromkeys([*values, *ops]):
            kind = etype.kinds.kind(name)
            if kind is None:
                raise invalid(f"[filter] {etype.name} has no field {name!r}")
            if kind not in F.SCALAR_KINDS:
                raise invalid(f"[filter] cannot filter by {name!r} ({kind})")
            op = ops.get(name, "eq")
            if op not in F.FILTER_OPERATORS:
                raise invalid(
                    f"[filter-op][{name}] unknown operator {op!r}; "
                    f"supported: {', '.join(F.FILTER_OPERATORS)}"
                )
            if op in VALUELESS_OPERATORS:
                filters.append(Filter(name, op))
                continue
            raw = values.get(name)
            if raw is None:
                raise invalid(f"[filter][{name}] filter-op {op!r} needs filter[{name}]=<value>")
            if op in STRING_OPERATORS:
                if kind not in ("str", "uuid"):
                    raise invalid(f"[filter-op][{name}] {op!r} applies to text fields only")
                filters.append(Filter(name, op, (raw,)))
            elif op == "between":
                parts = raw.split(",")
                if len(parts) != 2:
                    raise invalid(f"[filter][{name}] between takes two values: <low>,<high>")
                filters.append(Filter(name, op, tuple(_typed(name, kind, p) for p in parts)))
            else:
                filters.append(Filter(name, op, (_typed(name, kind, raw),)))
        return filters

    def list_body(self, type_name: str, args: Any, base: str) -> dict[str, Any]:
        expand = self.parse_expand(type_name, args.get("expand"))
        load_only = self.parse_load_only(type_name, args.get("load-only"), expand)
        q = self.query_from_args(type_name, args)
        page = self.types[type_name].collection.query(q)
        page_info: dict[str, Any] = {}
        if page.start_cursor is not None:
            page_info["start_cursor"] = page.start_cursor
            page_info["end_cursor"] = page.end_cursor
        page_info["has_previous_page"] = page.has_previous
        page_info["has_next_page"] = page.has_next
        body: dict[str, Any] = {"success": True}
        if page.total is not None:
            body["total"] = page.total
        body["page_info"] = page_info
        body["data"] = [self.render(type_name, r, base, expand, load_only) for r in page.records]
        return body

    # ------------------------------------------------------------------ settings

    def update_settings(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValueError("settings must be a JSON object")
        unknown = sorted(set(data) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        new = {**self.settings, **data}
        for name in ("sharing_bumps_contact", "delete_bumps_modified", "include_total"):
            if not isinstance(new[name], bool):
                raise ValueError(f"{name} must be true or false")
        if new["timestamp_format"] not in TIMESTAMP_FORMATS:
            raise ValueError(f"timestamp_format must be one of {', '.join(TIMESTAMP_FORMATS)}")
        size = new["batch_max_items"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError("batch_max_items must be a positive integer")
        new["rate_limit"] = check_rate_limit(new["rate_limit"])
        purge = new["purge_deleted_after"]
        if purge is not None and (
            isinstance(purge, bool) or not isinstance(purge, int | float) or purge < 0
        ):
            raise ValueError("purge_deleted_after must be a number of seconds >= 0, or null")
        fields = new["contact_required_fields"]
        kinds = self.types["Contact"].kinds
        if not isinstance(fields, list) or not all(
            isinstance(f, str) and (CUSTOM_FIELD_RE.match(f) or kinds.kind(f) == "str")
            for f in fields
        ):
            raise ValueError(
                "contact_required_fields must be a list of Contact text fields or custom "
                "fields (cf_…)"
            )
        new["contact_required_fields"] = list(dict.fromkeys(fields))
        self.settings = new
        return dict(new)


def check_rate_limit(spec: Any) -> dict[str, Any] | None:
    """`{"requests": N, "per_seconds": S}` (N ≥ 1, S > 0), or None / `{"requests": null}`."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) - {"requests", "per_seconds"}:
        raise ValueError('rate_limit is {"requests": N, "per_seconds": S} or null')
    requests, seconds = spec.get("requests"), spec.get("per_seconds", 1)
    if requests is None:
        return None
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError("rate_limit.requests must be a positive integer (or null to disable)")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ValueError("rate_limit.per_seconds must be a positive number")
    return {"requests": requests, "per_seconds": seconds}


def _typed(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "datetime":
            return parse_us(raw)
        if kind == "int":
            return int(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise invalid(f"[filter][{name}] {raw!r} is not a valid {kind}") from None
    return raw


def _int_arg(args: Any, name: str, low: int, high: int) -> int | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"[{name}] must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise invalid(f"[{name}] must be between {low} and {high}, got {value}")
    return value


def _bool_arg(args: Any, name: str) -> bool:
    raw = args.get(name)
    if raw is None or raw == "":
        return False
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise invalid(f"[{name}] must be true or false, got {raw!r}")
