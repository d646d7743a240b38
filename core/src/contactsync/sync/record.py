"""The record envelope every contact record carries between two systems, whatever its vocabulary.

A record read from one side and written to the other names where it came from (``_source_id``,
its version and modification time), why it is a tombstone, and which table keys it cannot tell;
the destinations of both sides read these the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

#: Why a tombstone was emitted; ``out_of_scope`` only ever removes the address-book copy, ``moved``
#: (an address-book contact filed into another folder) never deletes anything.
DELETED_REASON = "_sync_deleted_reason"
#: The name of the address-book folder a ``moved`` contact lives in now.
MOVED_TO = "_sync_moved_to"
SOURCE_ID = "_source_id"
SOURCE_VERSION = "_source_version"
SOURCE_MODIFIED = "_source_modified"
#: Set (to the reason) on a record the mapper could not map: the target rejects it by name, and
#: a complete listing still counts its key as listed, so its copy is not taken for deleted.
UNMAPPABLE = "_sync_unmappable"
#: Table keys whose value the source record does not know (its property was deselected or not
#: in its SCHEMA), when the record's own shape cannot say so: the target leaves them alone.
UNKNOWN_FIELDS = "_sync_unknown_fields"

_STRING = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

#: What a record from another system adds, for a target (e.g. from the mapper).
SOURCE_PROPERTIES: dict[str, Any] = {
    DELETED_REASON: {
        "type": ["string", "null"],
        "enum": ["deleted", "out_of_scope", "moved", None],
    },
    MOVED_TO: _STRING,
    SOURCE_ID: _STRING,
    SOURCE_VERSION: _STRING,
    SOURCE_MODIFIED: _TIME,
    UNMAPPABLE: _STRING,
    UNKNOWN_FIELDS: {"type": ["array", "null"], "items": {"type": "string"}},
}

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict, Mapping),
    "null": (type(None),),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    for name in ("string", "integer", "number", "array", "object", "null"):
        if isinstance(value, _JSON_TYPES[name]):
            return name
    return type(value).__name__


def _expected(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type", [])
    names = [t for t in ([declared] if isinstance(declared, str) else declared) if t != "null"]
    text = " or ".join(f"an {t}" if t[0] in "aeiou" else f"a {t}" for t in names)
    items = schema.get("items")
    if "array" in names and isinstance(items, Mapping) and _expected(items):
        text += f" of {_expected(items).split(' ', 1)[1]}s"
    return text


def type_problem(record: Mapping[str, Any], properties: Mapping[str, Any]) -> str | None:
    """The first property of ``record`` whose value is not of the type ``properties`` declare
    (arrays' items included), named with what was expected and what came, never the value.

    A target validates records against their stream's own SCHEMA; another tap's SCHEMA may well
    declare a string where we read an array (``emailAddresses``), which would otherwise surface
    as a misleading error further on."""
    for name, schema in properties.items():
        value = record.get(name)
        if value is None or not isinstance(schema, Mapping) or schema.get("format"):
            continue  # absent/null is for the merge to judge; date-times are parsed by the SDK
        if _plainly_fits(value, schema):
            continue
        if problem := _mismatch(name, value, schema):
            return problem
    return None


def _plainly_fits(value: Any, schema: Mapping[str, Any]) -> bool:
    """True when ``value`` certainly passes :func:`_mismatch`: a plain type the schema names, or
    a list of such items (most values); False means "check it in full", not "it fails"."""
    kind = _PLAIN.get(type(value))
    if kind is None:
        if type(value) is not list:
            return False
        kind = "array"
    declared = schema.get("type")
    if not (kind == declared or (isinstance(declared, list | tuple) and kind in declared)):
        return False
    if kind != "array":
        return True
    items = schema.get("items")
    if not isinstance(items, Mapping):
        return True  # nothing said about the items: _mismatch checks none
    return all(
        item is None or (type(item) is not list and _plainly_fits(item, items)) for item in value
    )


#: JSON type names of the exact Python types whose check needs no more than the name (arrays
#: have items to check; subclasses go the long way).
_PLAIN: Mapping[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    dict: "object",
}


def _mismatch(path: str, value: Any, schema: Mapping[str, Any]) -> str | None:
    declared = schema.get("type")
    if declared is None:
        return None
    names = [declared] if isinstance(declared, str) else list(declared)
    actual = _json_type(value)
    if actual not in names and not (actual == "integer" and "number" in names):
        return f"field {path}: expected {_expected(schema)}, got {_article(actual)}"
    items = schema.get("items")
    if actual == "array" and isinstance(items, Mapping):
        for n, item in enumerate(value):
            if item is not None and (problem := _mismatch(f"{path}[{n}]", item, items)):
                return problem
    return None


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime ("Z" accepted); None when absent or garbage."""
    if not value:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def known_values(values: dict[str, str | None], record: Mapping[str, Any]) -> dict[str, str | None]:
    """``values`` without the keys the record declares unknown (:data:`UNKNOWN_FIELDS`)."""
    unknown = record.get(UNKNOWN_FIELDS) or ()
    if isinstance(unknown, str) or not all(isinstance(k, str) for k in unknown):
        raise ValueError(f"field {UNKNOWN_FIELDS}: expected a list of field-table keys")
    return {k: v for k, v in values.items() if k not in unknown}
