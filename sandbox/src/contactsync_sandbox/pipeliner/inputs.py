"""Write inputs checked against the spec's input schemas, as the vendor refuses them.

Each field must be one the input schema lists, of its kind (a known enum value, a parseable
date-time, …), and writable; read-only fields pass only with `validation-level` 8. Anything
else answers 400 ERROR_PARAMETER_INVALID naming the field (`[owner_id] expected a uuid string`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import fields as F
from .entities import CUSTOM_FIELD_RE, has_kind
from .errors import invalid
from .timefmt import parse_us


def check_input(
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
        _check_kind(f"{prefix}{name}", name, kind, value)
    for name in schema.required if required is None else required:
        if name not in data:
            raise invalid(f"[{prefix}{name}] is required ({schema_name})")
    return data


def _check_kind(label: str, name: str, kind: str, value: Any) -> None:
    if not has_kind(kind, value):
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
