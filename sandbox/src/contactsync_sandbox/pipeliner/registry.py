"""The type registry: every entity type a space holds, and how each one is stored and linked.

Which fields each type has comes from the spec (`fields.py`); here are the defaults of fields a
row does not store, the derived fields (`formatted_name`, a contact's `account_position`, …) and
the relations (`Link`s) that render as URIs or expand. `RELATION_SETS` names the relation
collections a contact input carries (`account_relations`, `sharing_clients`, `sharing_units`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from . import fields as F
from .entities import (
    EntityType,
    Kinds,
    Link,
    empty_list,
    meta_defaults,
    none,
    stored,
    text_defaults,
)

if TYPE_CHECKING:
    from .space import Space

DEFAULT_CONTACT_TYPE_ID = "90000000-0000-4000-8000-000000000001"
DEFAULT_ACCOUNT_TYPE_ID = "90000000-0000-4000-8000-000000000002"
ID_NAMESPACE = uuid.UUID("5a5a5a5a-0000-4000-8000-00000000ffff")
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
RELATION_SETS = {
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


def build_types(space: Space) -> dict[str, EntityType]:
    """Every entity type of a space; derived values and relation ids read `space`'s rows."""
    t: dict[str, EntityType] = {}

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
                "formatted_name": _formatted_name,
                "account_position": partial(_account_position, space),
                "primary_account_position": partial(_primary_account_position, space),
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
        "primary_account": Link("Accounts", partial(_primary_account_id, space), "Account"),
        "account_relations": Link(
            "ContactAccountRelations",
            _relation_ids(space, "account_relations"),
            "ContactAccountRelation",
            many=True,
        ),
        "sharing_units": Link(
            "ContactSharingSalesUnitRelations",
            _relation_ids(space, "sharing_units"),
            "ContactSharingSalesUnitRelation",
            many=True,
        ),
        "sharing_clients": Link(
            "ContactSharingClientRelations",
            _relation_ids(space, "sharing_clients"),
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
                "account_type": Link("AccountTypes", _account_type_id),
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
                "sharing_units": Link("AccountSharingSalesUnitRelations", empty_list, many=True),
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
            derived={"formatted_name": _client_name, "name": _client_name},
            links={
                "default_unit": Link("SalesUnits", stored("default_unit_id")),
                "master_right": Link("MasterRights", stored("master_right_id"), "MasterRight"),
                "unit_membership": Link(
                    "SalesUnitClientRelations", _unit_membership_ids, many=True
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
                "account_roles": Link("ContactAccountAccountRoleRelations", empty_list, many=True),
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
    return t


# ---------------------------------------------------------------------- derived values


def _formatted_name(row: Mapping[str, Any]) -> str:
    parts = (row.get(k) for k in ("title", "first_name", "middle_name", "last_name"))
    return " ".join(p.strip() for p in parts if p and p.strip())


def _client_name(row: Mapping[str, Any]) -> str:
    parts = (row.get(k) for k in ("first_name", "middle_name", "last_name"))
    return " ".join(p for p in parts if p) or str(row.get("email", ""))


def _primary_account_id(space: Space, row: Mapping[str, Any]) -> str | None:
    rel = space.primary_relation(row)
    return rel["account_id"] if rel else None


def _account_position(space: Space, row: Mapping[str, Any]) -> str:
    """The job title Pipeliner shows. Spec (Contact.account_position): "Job position of
    Contact in his primary Account or quick account position if Contact has no primary
    Account"; the create-contact tutorial (developers.pipelinersales.com/api-docs/
    tutorials-and-articles/create-contact, "Setting up the Position"): `position` is the
    Quick Account Position, for contacts not linked to an Account, and `account_position`
    "is linked directly with the Account"."""
    rel = space.primary_relation(row)
    return str(rel.get("position", "")) if rel else str(row.get("position", ""))


def _primary_account_position(space: Space, row: Mapping[str, Any]) -> str:
    rel = space.primary_relation(row)
    return str(rel.get("position", "")) if rel else ""


def _account_type_id(row: Mapping[str, Any]) -> str:
    return str(row.get("account_type_id") or DEFAULT_ACCOUNT_TYPE_ID)


def _unit_membership_ids(row: Mapping[str, Any]) -> list[str]:
    units = [*row.get("unit_member_ids", ()), *row.get("unit_manager_ids", ())]
    return [str(uuid.uuid5(ID_NAMESPACE, f"{row['id']}/{unit}")) for unit in units]


def _relation_ids(space: Space, field: str) -> Callable[[Mapping[str, Any]], list[str]]:
    type_name = RELATION_SETS[field][0]

    def ids(row: Mapping[str, Any]) -> list[str]:
        rows = space.rows(type_name)
        return [
            rid
            for rid in space.by_contact[field].get(row["id"], ())
            if not rows[rid].get("is_deleted")
        ]

    return ids
