"""The Pipeliner emulator's seed (what `POST /_sandbox/seed` takes and `GET /_sandbox/state`
returns) and the bulk generator.

A seed is the `pipeliner` object of the shared default seed (or the whole default seed, whose
`pipeliner` key is then used), optionally with `contacts` and/or `demo_contacts`:

    {"space_id": ..., "application_keys": [{"api_username", "api_password"}],
     "units": [{"id", "name", "parent_id"}], "roles": [{"id", "name", <MasterRight fields>}],
     "users": [{"id", "email", "first_name", "last_name", "default_unit_id",
                "unit_member_ids", "unit_manager_ids", "master_right_id", ...}],
     "accounts": [{"id", "name", "owner_id", ...}],
     "contacts": [{"id", "owner_id", "first_name", ..., "cf_x": ...,
                   "account_relations": [{"account_id", "is_primary", "position"}],
                   "sharing_clients": [{"client_id", "role"}],
                   "sharing_units": [{"unit_id", "role"}]}],
     "demo_contacts": {"count": 300, "seed": 42},
     "settings": {...}, "default_contact_type_id": ..., "revision": ...}

Rows may carry their own `created`, `modified`, `revision`, `is_deleted`, `is_delete_protected`,
`modified_by_user`; defaults are deterministic (identities: 2025-01-02T08:00:00Z; contacts
without timestamps: one second apart after that). Fields of an API answer that a seed cannot set
(relation URIs, `formatted_name`, `is_favorite`…) are ignored, so an API response body can be
pasted into a seed. Anything else unknown is refused (ValueError → 400 on the control API).
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..jsonvalues import is_integer
from . import fields as F
from .demo import demo_contacts, synthetic_rows
from .entities import CUSTOM_FIELD_RE, UUID_RE, has_kind
from .registry import DEFAULT_CONTACT_TYPE_ID, ID_NAMESPACE, RELATION_SETS
from .space import Row, Space
from .timefmt import iso, parse_us

TOP_KEYS = {
    "space_id",
    "application_keys",
    "units",
    "roles",
    "users",
    "clients",
    "accounts",
    "contacts",
    "demo_contacts",
    "settings",
    "default_contact_type_id",
    "revision",
    "_comment",
}
_META = {
    "id": "uuid",
    "created": "datetime",
    "modified": "datetime",
    "revision": "int",
    "is_deleted": "bool",
    "is_delete_protected": "bool",
}
_IGNORED_KINDS = ("uri", "uri[]", "object", "binary", "rel", "rel[]")
_NOTES = ("demo_role", "description", "_comment")
MAX_GENERATE = 1_000_000
#: Default timestamps of seeded identities (users, units, roles, accounts) without their own.
SEED_EPOCH_US = parse_us("2025-01-02T08:00:00Z")


def _convert(where: str, name: str, kind: str, value: Any) -> Any:
    if not has_kind(kind, value):
        raise ValueError(f"{where}: {name} must be {kind}, got {value!r}")
    if kind == "int" and name in F.ENUMS and value not in F.ENUMS[name]:
        raise ValueError(f"{where}: {name}={value} is not one of {sorted(F.ENUMS[name])}")
    if kind == "datetime":
        try:
            return parse_us(value)
        except ValueError:
            raise ValueError(f"{where}: {name} is not a date-time: {value!r}") from None
    return list(value) if kind == "uuid[]" else value


def _row(
    item: Any,
    kinds: Mapping[str, str],
    where: str,
    *,
    custom: bool = False,
    skip: Sequence[str] = (),
    ignore: Sequence[str] = (),
) -> Row:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a JSON object")
    row: Row = {}
    for name, value in item.items():
        if name in skip:
            continue
        if name in _NOTES or name in ignore:
            continue
        kind = _META.get(name) or kinds.get(name)
        if kind is None and custom and CUSTOM_FIELD_RE.match(name):
            row[name] = value
            continue
        if kind is None:
            raise ValueError(f"{where}: unknown field {name!r}")
        if kind in _IGNORED_KINDS:
            continue
        if value is None:
            continue
        row[name] = _convert(where, name, kind, value)
    return row


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list")
    return value


def _require(row: Row, where: str, *names: str) -> None:
    for name in names:
        if row.get(name) in (None, ""):
            raise ValueError(f"{where}: {name} is required")


def _new_id(space: Space, type_name: str, row: Row, where: str) -> None:
    row.setdefault("id", space.new_id())
    if row["id"] in space.rows(type_name):
        raise ValueError(f"{where}: duplicate id {row['id']}")


def unit_row(space: Space, item: Any, where: str, check_parent: bool = True) -> Row:
    row = _row(item, space.types["SalesUnit"].kinds, where)
    _new_id(space, "SalesUnit", row, where)
    _require(row, where, "name")
    if check_parent and row.get("parent_id") and row["parent_id"] not in space.rows("SalesUnit"):
        raise ValueError(f"{where}: parent_id {row['parent_id']} is not a unit")
    return row


def role_row(space: Space, item: Any, where: str) -> Row:
    row = _row(item, F.schema("MasterRight").kinds, where)
    _new_id(space, "MasterRight", row, where)
    _require(row, where, "name")
    return row


def user_row(space: Space, item: Any, where: str) -> Row:
    row = _row(item, F.schema("Client").kinds, where, ignore=("formatted_name", "name"))
    _new_id(space, "Client", row, where)
    _require(row, where, "email", "default_unit_id", "master_right_id")
    row.setdefault("unit_member_ids", [])
    row.setdefault("unit_manager_ids", [])
    units = space.rows("SalesUnit")
    for unit_id in [row["default_unit_id"], *row["unit_member_ids"], *row["unit_manager_ids"]]:
        if unit_id not in units:
            raise ValueError(f"{where}: unit {unit_id} is not a unit of the space")
    if row["master_right_id"] not in space.rows("MasterRight"):
        raise ValueError(f"{where}: master_right_id {row['master_right_id']} is not a role")
    if space.client_by_email(row["email"]) is not None:
        raise ValueError(f"{where}: a user with email {row['email']!r} exists already")
    return row


def account_row(space: Space, item: Any, where: str) -> Row:
    row = _row(item, F.schema("Account").kinds, where, ignore=("formatted_name", "is_favorite"))
    _new_id(space, "Account", row, where)
    _require(row, where, "name", "owner_id")
    owner = space.rows("Client").get(row["owner_id"])
    if owner is None:
        raise ValueError(f"{where}: owner_id {row['owner_id']} is not a user of the space")
    row.setdefault("unit_id", owner["default_unit_id"])
    return row


IDENTITY_KINDS = {
    "units": ("SalesUnit", unit_row),
    "roles": ("MasterRight", role_row),
    "users": ("Client", user_row),
    "accounts": ("Account", account_row),
}


def add_identity(space: Space, kind: str, item: Any) -> Row:
    """Create a unit, role, user or account now (control API); stamped like any change."""
    type_name, make = IDENTITY_KINDS[kind]
    row = make(space, item, kind[:-1])
    now = space.clock.now()
    row.setdefault("created", now)
    row["modified"] = now
    row["revision"] = space.next_revision()
    space.types[type_name].collection.add(row)
    return row


#: What an administrator may change in the admin module (which has no API route): a role's
#: contact rights and a unit's name and place in the tree.
EDITABLE_IDENTITIES = {"roles": "MasterRight", "units": "SalesUnit"}


def update_identity(space: Space, kind: str, rid: str, changes: Any) -> Row:
    """Change a role or a unit now (control API), as an administrator does in Pipeliner's UI."""
    type_name = EDITABLE_IDENTITIES[kind]
    row = space.rows(type_name).get(rid)
    if row is None or row.get("is_deleted"):
        raise LookupError(f"no {kind[:-1]} {rid}")
    where = f"{kind[:-1]} {rid}"
    kinds = F.schema("MasterRight").kinds if kind == "roles" else space.types[type_name].kinds
    if not isinstance(changes, dict) or not changes or "id" in changes:
        raise ValueError(f"{where}: the body is an object of the fields to change (not id)")
    update = _row(changes, kinds, where)
    if kind == "units" and "parent_id" in changes:
        parent = changes["parent_id"] or None
        seen = {rid}
        walk = parent
        while walk is not None:
            if walk in seen:
                raise ValueError(f"{where}: parent_id {parent} would make a cycle")
            if walk not in space.rows("SalesUnit"):
                raise ValueError(f"{where}: parent_id {walk} is not a unit")
            seen.add(walk)
            walk = space.rows("SalesUnit")[walk].get("parent_id")
        update["parent_id"] = parent
    row.update(update)
    now = space.clock.now()
    row["modified"] = now
    row["revision"] = space.next_revision()
    return row


_CACHE: OrderedDict[str, dict[str, Any]] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_MAX_KEY = 2_000_000


def load(data: Any) -> Space:
    """A new `Space` built from a seed (ValueError if the seed is malformed).

    Loading the default seed (300 generated demo contacts) takes tens of milliseconds and
    happens on every `/_sandbox/reset`; the validated rows of recent seeds are cached and
    copied into each new `Space` instead.
    """
    try:
        key = json.dumps(data, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        key = None
    if key is not None and len(key) > _CACHE_MAX_KEY:
        key = None
    frozen = _CACHE.get(key) if key is not None else None
    if frozen is None:
        space = _load(data)
        if key is None:
            return space
        frozen = _freeze(space)
        _CACHE[key] = frozen
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return _thaw(frozen)


def _copy_row(row: Mapping[str, Any]) -> Row:
    return {k: list(v) if isinstance(v, list) else v for k, v in row.items()}


def _freeze(space: Space) -> dict[str, Any]:
    return {
        "space_id": space.space_id,
        "app_keys": [dict(k) for k in space.app_keys],
        "settings": dict(space.settings),
        "default_contact_type_id": space.default_contact_type_id,
        "revision": space.revision,
        "clock": space.clock.last_us,
        "rows": {
            name: [_copy_row(r) for r in etype.collection.records.values()]
            for name, etype in space.types.items()
        },
        "by_contact": {
            field: {cid: list(ids) for cid, ids in links.items()}
            for field, links in space.by_contact.items()
        },
    }


def _thaw(frozen: Mapping[str, Any]) -> Space:
    space = Space()
    space.space_id = frozen["space_id"]
    space.app_keys = [dict(k) for k in frozen["app_keys"]]
    space.settings = dict(frozen["settings"])
    space.default_contact_type_id = frozen["default_contact_type_id"]
    space.revision = frozen["revision"]
    space.clock.observe(frozen["clock"])
    for name, rows in frozen["rows"].items():
        space.types[name].collection.replace_all({r["id"]: _copy_row(r) for r in rows})
    space.by_contact = {
        field: {cid: list(ids) for cid, ids in links.items()}
        for field, links in frozen["by_contact"].items()
    }
    return space


def _load(data: Any) -> Space:
    if isinstance(data, dict) and isinstance(data.get("pipeliner"), dict):
        data = data["pipeliner"]
    if not isinstance(data, dict):
        raise ValueError("the pipeliner seed is a JSON object (see sandbox/README.md)")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown seed key(s): {', '.join(unknown)}")
    space = Space()
    space_id = data.get("space_id")
    if not isinstance(space_id, str) or not space_id or "/" in space_id:
        raise ValueError("space_id must be a non-empty string")
    space.space_id = space_id
    keys = data.get("application_keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError("application_keys must be a non-empty list")
    for key in keys:
        if not isinstance(key, dict) or not all(
            isinstance(key.get(k), str) and key.get(k) for k in ("api_username", "api_password")
        ):
            raise ValueError("each application key needs api_username and api_password")
        space.app_keys.append(
            {
                k: str(v)
                for k, v in key.items()
                if k in ("api_username", "api_password", "description")
            }
        )
    space.update_settings(data.get("settings") or {})
    contact_type = data.get("default_contact_type_id", DEFAULT_CONTACT_TYPE_ID)
    if not isinstance(contact_type, str) or not UUID_RE.match(contact_type):
        raise ValueError("default_contact_type_id must be a uuid")
    space.default_contact_type_id = contact_type

    pending: list[tuple[int, int, Row]] = []  # rows without a revision: (modified, order, row)

    def stamp(row: Row, default_us: int) -> Row:
        row.setdefault("created", default_us)
        row.setdefault("modified", max(row["created"], default_us))
        if "revision" not in row:
            pending.append((row["modified"], len(pending), row))
        return row

    units = space.rows("SalesUnit")
    for index, item in enumerate(_list(data, "units")):
        row = unit_row(space, item, f"units[{index}]", check_parent=False)
        units[row["id"]] = stamp(row, SEED_EPOCH_US)
    for row in units.values():
        if row.get("parent_id") and row["parent_id"] not in units:
            raise ValueError(f"unit {row['id']}: parent_id {row['parent_id']} is not a seeded unit")
    roles = space.rows("MasterRight")
    for index, item in enumerate(_list(data, "roles")):
        row = role_row(space, item, f"roles[{index}]")
        roles[row["id"]] = stamp(row, SEED_EPOCH_US)
    clients = space.rows("Client")
    users = data.get("users", data.get("clients", []))
    if not isinstance(users, list):
        raise ValueError("users must be a list")
    for index, item in enumerate(users):
        row = user_row(space, item, f"users[{index}]")
        clients[row["id"]] = stamp(row, SEED_EPOCH_US)
    accounts = space.rows("Account")
    for index, item in enumerate(_list(data, "accounts")):
        row = account_row(space, item, f"accounts[{index}]")
        accounts[row["id"]] = stamp(row, SEED_EPOCH_US)

    contact_items = list(_list(data, "contacts"))
    demo = data.get("demo_contacts")
    if demo:
        if demo is True:
            demo = {}
        if not isinstance(demo, dict) or set(demo) - {"count", "seed"}:
            raise ValueError('demo_contacts is {"count": N, "seed": S}')
        count, seed = demo.get("count", 300), demo.get("seed", 42)
        if not is_integer(count) or not 0 <= count <= 100_000:
            raise ValueError("demo_contacts.count must be an integer 0..100000")
        contact_items += demo_contacts(
            count,
            seed,
            users=[{**u} for u in users],
            accounts=_list(data, "accounts"),
            units=_list(data, "units"),
        )
    contacts = space.rows("Contact")
    contact_kinds = F.schema("Contact").kinds
    for index, item in enumerate(contact_items):
        where = f"contacts[{index}]"
        row = _row(
            item,
            contact_kinds,
            where,
            custom=True,
            skip=tuple(RELATION_SETS),
            ignore=(
                "formatted_name",
                "account_position",
                "primary_account_position",
                "is_favorite",
            ),
        )
        row.setdefault("id", str(uuid.uuid5(ID_NAMESPACE, f"contact/{index}")))
        if row["id"] in contacts:
            raise ValueError(f"{where}: duplicate contact id {row['id']}")
        owner = clients.get(row.get("owner_id", ""))
        if owner is None:
            raise ValueError(f"{where}: owner_id must be a seeded user")
        row.setdefault("unit_id", owner["default_unit_id"])
        if row["unit_id"] not in units:
            raise ValueError(f"{where}: unit_id {row['unit_id']} is not a seeded unit")
        row.setdefault("contact_type_id", space.default_contact_type_id)
        contacts[row["id"]] = stamp(row, SEED_EPOCH_US + (index + 1) * 1_000_000)
        for field, (type_name, key, target, _input) in RELATION_SETS.items():
            items = item.get(field) or []
            if not isinstance(items, list):
                raise ValueError(f"{where}.{field} must be a list")
            kinds = space.types[type_name].kinds
            targets = space.rows(target)
            for number, rel_item in enumerate(items):
                rel_where = f"{where}.{field}[{number}]"
                rel = _row(rel_item, kinds, rel_where, skip=("contact_id",))
                if rel.get(key) not in targets:
                    raise ValueError(f"{rel_where}: {key} {rel.get(key)} is not seeded")
                rel.setdefault(
                    "id", str(uuid.uuid5(ID_NAMESPACE, f"{row['id']}/{field}/{rel[key]}"))
                )
                rel["contact_id"] = row["id"]
                space.rows(type_name)[rel["id"]] = stamp(rel, row["created"])
                space.by_contact[field].setdefault(row["id"], []).append(rel["id"])
    for field in ("account_relations",):
        relations = space.rows(RELATION_SETS[field][0])
        for contact_id, ids in space.by_contact[field].items():
            primaries = [
                i
                for i in ids
                if relations[i].get("is_primary") and not relations[i].get("is_deleted")
            ]
            if len(primaries) > 1:
                raise ValueError(f"contact {contact_id}: more than one primary account relation")

    revision = data.get("revision", 0)
    if not is_integer(revision) or revision < 0:
        raise ValueError("revision must be a non-negative integer")
    existing = [
        row["revision"]
        for etype in space.types.values()
        for row in etype.collection.records.values()
        if "revision" in row
    ]
    space.revision = max([revision, *existing])
    for _modified, _order, row in sorted(pending, key=lambda p: (p[0], p[1])):
        row["revision"] = space.next_revision()
    latest = max(
        (
            max(row.get("modified", 0), row.get("created", 0))
            for etype in space.types.values()
            for row in etype.collection.records.values()
        ),
        default=0,
    )
    space.clock.observe(latest)
    for etype in space.types.values():
        etype.collection.bulk_added()
    return space


def _dump_row(row: Mapping[str, Any], kinds: Mapping[str, str], skip: Sequence[str] = ()) -> Row:
    out: Row = {}
    for name, value in row.items():
        if name in skip:
            continue
        kind = _META.get(name) or kinds.get(name)
        out[name] = iso(value) if kind == "datetime" and isinstance(value, int) else value
    return out


def dump_contact(space: Space, row: Mapping[str, Any]) -> Row:
    """A contact as stored (seed form), with its relations (deleted ones too)."""
    types = space.types
    item = _dump_row(row, types["Contact"].kinds)
    for field, (type_name, _key, _target, _input) in RELATION_SETS.items():
        ids = space.by_contact[field].get(row["id"])
        if ids:
            rows = space.rows(type_name)
            kinds = types[type_name].kinds
            item[field] = [_dump_row(rows[i], kinds, skip=("contact_id",)) for i in ids]
    return item


def dump(space: Space) -> dict[str, Any]:
    """The state as a seed (round-trips through `load`)."""
    types = space.types
    contacts = [dump_contact(space, row) for row in space.rows("Contact").values()]
    return {
        "space_id": space.space_id,
        "application_keys": [dict(k) for k in space.app_keys],
        "default_contact_type_id": space.default_contact_type_id,
        "settings": dict(space.settings),
        "revision": space.revision,
        "units": [_dump_row(r, types["SalesUnit"].kinds) for r in space.rows("SalesUnit").values()],
        "roles": [
            _dump_row(r, types["MasterRight"].kinds) for r in space.rows("MasterRight").values()
        ],
        "users": [_dump_row(r, types["Client"].kinds) for r in space.rows("Client").values()],
        "accounts": [_dump_row(r, types["Account"].kinds) for r in space.rows("Account").values()],
        "contacts": contacts,
    }


def generate(space: Space, spec: Any) -> dict[str, Any]:
    """`POST /_sandbox/pipeliner/generate`: add `count` plain contacts fast (benchmarks)."""
    if not isinstance(spec, dict) or set(spec) - {"count", "owner_id", "seed"}:
        raise ValueError('generate takes {"count": N, "owner_id": <user id>, "seed": S}')
    count = spec.get("count")
    if not is_integer(count) or not 1 <= count <= MAX_GENERATE:
        raise ValueError(f"count must be an integer 1..{MAX_GENERATE}")
    seed = spec.get("seed", 1)
    if not is_integer(seed):
        raise ValueError("seed must be an integer")
    clients = space.rows("Client")
    owner_id = spec.get("owner_id") or next(iter(clients), None)
    owner = clients.get(owner_id) if isinstance(owner_id, str) else None
    if owner is None or owner.get("is_deleted"):
        raise ValueError(f"owner_id {owner_id!r} is not a user of the space")

    def stamps() -> Iterator[tuple[int, int]]:
        while True:
            yield space.clock.now(), space.next_revision()

    collection = space.types["Contact"].collection
    rows = synthetic_rows(
        count,
        seed=seed,
        owner_id=owner["id"],
        unit_id=owner["default_unit_id"],
        contact_type_id=space.default_contact_type_id,
        taken=collection.records,
        stamps=stamps(),
    )
    for row in rows:
        collection.records[row["id"]] = row
    collection.bulk_added()
    return {
        "generated": count,
        "first_id": rows[0]["id"],
        "last_id": rows[-1]["id"],
        "contacts": len(collection),
        "revision": space.revision,
    }
