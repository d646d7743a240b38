"""How each entity type is stored, rendered, filtered and expanded.

Rows are plain dicts of *internal* values (timestamps as integer microseconds); an `EntityType`
knows its spec schema (`fields.schema`), the defaults of fields a row does not store (contact
rows are sparse so that 50,000 of them stay small), derived fields (e.g. `formatted_name`) and
its relations (`Link`s): a relation is answered as a URI, or as the related entity when the
request `expand`s it. Only what the spec lists is ever rendered (plus `cf_*` custom fields on
contacts, see README); `None` means "absent" and is left out, because the spec types no field
as nullable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..jsonvalues import is_integer
from . import fields as F
from .query import Collection

UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
#: Custom fields of a space are named `cf_<api name>`; the emulator accepts any such key.
CUSTOM_FIELD_RE = re.compile(r"^cf_[A-Za-z0-9_]{1,100}$")

#: What a JSON value of each field kind looks like (write inputs and seeds; enums and the
#: date-time format are checked on top, by each).
_KIND_TESTS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": is_integer,
    "bool": lambda v: isinstance(v, bool),
    "uuid": lambda v: isinstance(v, str) and bool(UUID_RE.match(v)),
    "datetime": lambda v: isinstance(v, str),
    "uuid[]": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "rel": lambda v: isinstance(v, dict),
    "rel[]": lambda v: isinstance(v, list) and all(isinstance(i, dict) for i in v),
    "object": lambda v: isinstance(v, dict),
}


def has_kind(kind: str, value: Any) -> bool:
    """Whether `value` (from JSON) is a value of a field of `kind`; False for other kinds."""
    test = _KIND_TESTS.get(kind)
    return test is not None and test(value)


#: A parsed `expand` / `load-only` tree: {"owner": {}, "account_relations": {"account": {}}}.
Tree = dict[str, "Tree"]


class Kinds(dict[str, str]):
    """A schema's kinds; `cf_*` names are text fields when custom fields are allowed."""

    def __init__(self, kinds: Mapping[str, str], custom_fields: bool = False) -> None:
        super().__init__(kinds)
        self.custom_fields = custom_fields

    def __missing__(self, key: str) -> str:
        if self.custom_fields and CUSTOM_FIELD_RE.match(key):
            return "str"
        raise KeyError(key)

    def kind(self, name: str) -> str | None:
        try:
            return self[name]
        except KeyError:
            return None


@dataclass
class Link:
    """A relation field: `ids(row)` gives the related id (or list of ids, `many`)."""

    plural: str
    ids: Callable[[Mapping[str, Any]], Any]
    target: str | None = None  # entity type to expand into; None = not expandable here
    many: bool = False


@dataclass
class EntityType:
    name: str  # the spec schema name, e.g. "Contact"
    plural: str  # the URL collection, e.g. "Contacts"
    kinds: Kinds
    defaults: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    nulls: bool = False  # render absent scalars/links as null (SalesUnit only: outside the spec)
    collection: Collection = field(init=False)

    def __post_init__(self) -> None:
        self.collection = Collection(self.kinds, self.value, self.accessor)

    @property
    def custom_fields(self) -> bool:
        return self.kinds.custom_fields

    def value(self, row: Mapping[str, Any], name: str) -> Any:
        """The internal value of a scalar field (derived, stored or default)."""
        fn = self.derived.get(name)
        if fn is not None:
            return fn(row)
        value = row.get(name)
        return self.defaults.get(name) if value is None else value

    def accessor(self, name: str) -> Callable[[Mapping[str, Any]], Any]:
        """A fast `value(row, name)` for one field (filters and sort keys call it per row)."""
        fn = self.derived.get(name)
        if fn is not None:
            return fn
        default = self.defaults.get(name)
        if default is None:
            return lambda row: row.get(name)

        def get(row: Mapping[str, Any]) -> Any:
            value = row.get(name)
            return default if value is None else value

        return get


def empty_list(row: Mapping[str, Any]) -> list[str]:
    return []


def none(row: Mapping[str, Any]) -> None:
    return None


def stored(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: row.get(name)


def text_defaults(schema_name: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """'' for every plain string field of a schema (the spec types them as non-null strings)."""
    kinds = F.schema(schema_name).kinds
    return {name: "" for name, kind in kinds.items() if kind == "str" and name not in skip}


def meta_defaults() -> dict[str, Any]:
    return {"is_deleted": False, "is_delete_protected": False}


def last_segment(ref: Any) -> str | None:
    """An id given as a uuid or as a relation URI (`.../entities/X/<id>`)."""
    if not isinstance(ref, str) or not ref:
        return None
    return ref.rstrip("/").rsplit("/", 1)[-1]
