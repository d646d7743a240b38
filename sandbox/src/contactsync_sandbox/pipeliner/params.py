"""The read parameters of a request, parsed against an entity type.

`expand` and `load-only` become trees for `render.py`; `first`, `last`, `after`, `before`,
`order-by`, `filter[<field>]`, `filter-op[<field>]` and `include-deleted` become a `Query` for
the collection (`query.py`). Anything wrong answers 400 ERROR_PARAMETER_INVALID naming the
parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import fields as F
from .entities import EntityType, Tree
from .errors import invalid
from .query import Filter, Order, Query, QueryError, decode_cursor
from .timefmt import parse_us

STRING_OPERATORS = frozenset(
    {"ieq", "not-ieq", "contains", "starts", "ends", "icontains", "istarts", "iends"}
)
VALUELESS_OPERATORS = frozenset({"null", "not-null", "empty", "not-empty"})
MAX_PAGE = 100
DEFAULT_PAGE = 30


def parse_expand(types: Mapping[str, EntityType], type_name: str, text: str | None) -> Tree:
    tree: Tree = {}
    if text is None or not text.strip():
        return tree
    for path in text.split(","):
        names = path.strip().split(".")
        node, etype = tree, types[type_name]
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
            etype = types[link.target]
    return tree


def parse_load_only(
    types: Mapping[str, EntityType], type_name: str, text: str | None, expand: Tree
) -> Tree | None:
    if text is None or not text.strip():
        return None
    tree: Tree = {}
    for path in text.split(","):
        names = [name.strip() for name in path.split(".")]
        node, etype, expanded = tree, types[type_name], expand
        for depth, name in enumerate(names):
            if not name or etype.kinds.kind(name) is None:
                raise invalid(f"[load-only] {etype.name} has no field {name!r}")
            child = node.setdefault(name, {})
            if depth + 1 == len(names):
                break
            link = etype.links.get(name)
            if link is None or link.target is None or name not in expanded:
                break  # a nested path under a relation that is not expanded: the URI
            etype, expanded, node = types[link.target], expanded[name], child
    return tree


def query_from_args(etype: EntityType, args: Any, *, include_total: bool) -> Query:
    """`first`, `last`, `after`, `before`, `order-by`, `filter[...]`, `filter-op[...]`,
    `include-deleted` → a `Query` (400 ERROR_PARAMETER_INVALID on anything wrong)."""
    order = _parse_order(etype, args.get("order-by"))
    q = Query(order=order, want_total=include_total)
    q.first = _int_arg(args, "first", 1, MAX_PAGE)
    q.last = _int_arg(args, "last", 0, MAX_PAGE)
    if q.first is None and q.last is None:
        q.first = DEFAULT_PAGE
    q.include_deleted = bool_arg(args, "include-deleted")
    q.filters = _parse_filters(etype, args)
    try:
        if args.get("after"):
            q.after = decode_cursor(args.get("after"), order, etype.kinds)
        if args.get("before"):
            q.before = decode_cursor(args.get("before"), order, etype.kinds)
    except QueryError as exc:
        raise invalid(f"[after/before] {exc}") from None
    return q


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


def bool_arg(args: Any, name: str) -> bool:
    raw = args.get(name)
    if raw is None or raw == "":
        return False
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise invalid(f"[{name}] must be true or false, got {raw!r}")
