"""A target's record validation: the SCHEMA's types checked by a function compiled once.

singer-sdk validates each record with jsonschema, which walks the schema anew for every record:
for a contact of some twenty fields that was the largest part of a target's CPU per record
(issue #15). Our SCHEMAs use a small part of JSON Schema (``type``, ``properties``, ``items``,
``enum``, ``required``); :func:`compile_check` turns such a schema into nested closures that
answer "certainly valid". They never accept what jsonschema would refuse: whatever they do not
understand, or a value they are not sure of (a float for an integer), goes to jsonschema, which
then decides and names the field that does not match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator, JSONSchemaValidator

Check = Callable[[Any], bool]

#: Keywords that say nothing about validity here (``format`` is not checked: singer-sdk's
#: default, ``validate_field_string_format``, is off).
_ANNOTATIONS = frozenset({"description", "title", "format", "examples", "default", "$comment"})
_KNOWN = _ANNOTATIONS | {"type", "properties", "items", "enum", "required", "additionalProperties"}

#: The Python types of a JSON type that jsonschema certainly accepts (exact types: a bool is no
#: integer; a float may be an integer to jsonschema, 1.0, and goes to jsonschema).
_TYPES: Mapping[str, tuple[type, ...]] = {
    "null": (type(None),),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "array": (list,),
    "object": (dict,),
}


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


def compile_check(schema: Any) -> Check:
    """A function that returns True only for values ``schema`` certainly accepts."""
    if schema is True or schema == {}:
        return _always
    if not isinstance(schema, Mapping) or set(schema) - _KNOWN:
        return _never
    if schema.get("additionalProperties", True) is not True:
        return _never
    kinds: frozenset[type] | None = None
    declared = schema.get("type")
    if declared is not None:
        names = [declared] if isinstance(declared, str) else list(declared)
        if not names or any(name not in _TYPES for name in names):
            return _never
        kinds = frozenset(t for name in names for t in _TYPES[name])
    allowed: list[Any] | None = None
    if "enum" in schema:
        # Scalars only: jsonschema's equality of arrays and objects tells 1 from True.
        allowed = [a for a in schema["enum"] if a is None or type(a) in (str, int, float, bool)]
    fields = {name: compile_check(sub) for name, sub in schema.get("properties", {}).items()}
    required = tuple(schema.get("required", ()))
    items = compile_check(schema["items"]) if "items" in schema else None
    if kinds is not None and allowed is None and not required and items is None:
        if not fields:
            return lambda v: type(v) in kinds  # the common case: a field of one or two types
        if dict not in kinds:
            return lambda v: type(v) in kinds  # properties apply to objects only

    def check(value: Any) -> bool:
        kind = type(value)
        if kinds is not None and kind not in kinds:
            return False
        if allowed is not None and not any(kind is type(a) and value == a for a in allowed):
            return False
        if kind is dict:
            for name in required:
                if name not in value:
                    return False
            if fields:
                for name, item in value.items():
                    field = fields.get(name)
                    if field is not None and not field(item):
                        return False
        elif kind is list and items is not None:
            for item in value:
                if not items(item):
                    return False
        return True

    return check


class RecordValidator(BaseJSONSchemaValidator):
    """singer-sdk's validator interface: the compiled check first, jsonschema for a record that
    fails it. A record jsonschema refuses is handed to ``on_invalid`` with the reason (the
    field and the rule, never the value: it may be personal data) instead of raising."""

    def __init__(
        self,
        schema: dict[str, Any],
        on_invalid: Callable[[dict, str], None],
        *,
        validate_formats: bool = False,
    ) -> None:
        super().__init__(schema)
        # Built now as singer-sdk does: a schema jsonschema cannot read stops the run here.
        self.full = JSONSchemaValidator(schema, validate_formats=validate_formats)
        # The compiled check does not read formats: with them on, jsonschema checks every record.
        self.check = _never if validate_formats else compile_check(schema)
        self.on_invalid = on_invalid

    def validate(self, record: dict[str, Any]) -> None:
        if self.check(record):
            return
        try:
            self.full.validate(record)
        except InvalidRecord as exc:
            self.on_invalid(record, reason(exc))


def reason(exc: InvalidRecord) -> str:
    """Which field does not match which rule, from jsonschema's error behind ``exc``."""
    cause = exc.__cause__
    path = ".".join(str(p) for p in getattr(cause, "absolute_path", ()))
    rule = getattr(cause, "validator", None)
    expected = getattr(cause, "validator_value", None)
    what = f"{rule} {expected}" if rule else "the schema"
    return f"field {path or '(record)'} does not match {what}"[:300]
