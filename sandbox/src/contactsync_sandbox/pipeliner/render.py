"""Rows as the API answers them: one entity, and a page of a list.

Only what the spec lists is rendered (plus `cf_*` custom fields on contacts); relations are URIs
unless the request `expand`s them, and `load-only` keeps the fields it names (`id` always).
Timestamps are written in the space's `timestamp_format`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import fields as F
from .entities import Tree
from .params import parse_expand, parse_load_only, query_from_args
from .space import Space
from .timefmt import format_us


def render(
    space: Space,
    type_name: str,
    row: Mapping[str, Any],
    base: str,
    expand: Tree | None = None,
    load_only: Tree | None = None,
) -> dict[str, Any]:
    """A row as the API answers it (spec fields only, relations as URIs unless expanded)."""
    etype = space.types[type_name]
    expand = expand or {}
    style = space.settings["timestamp_format"]
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
                target = space.types[link.target].collection.records
                if link.many:
                    out[name] = [
                        render(space, link.target, target[i], base, expand[name], sub_load)
                        for i in ids
                        if i in target
                    ]
                elif ids is not None and ids in target:
                    out[name] = render(
                        space, link.target, target[ids], base, expand[name], sub_load
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


def list_body(space: Space, type_name: str, args: Any, base: str) -> dict[str, Any]:
    expand = parse_expand(space.types, type_name, args.get("expand"))
    load_only = parse_load_only(space.types, type_name, args.get("load-only"), expand)
    q = query_from_args(
        space.types[type_name], args, include_total=bool(space.settings["include_total"])
    )
    page = space.types[type_name].collection.query(q)
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
    body["data"] = [render(space, type_name, r, base, expand, load_only) for r in page.records]
    return body
