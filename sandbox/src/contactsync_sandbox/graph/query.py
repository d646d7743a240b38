"""OData query options of contact lists: `$top`, `$skip`, `$select`, `$expand`, `$filter`.

Emulated (anything else starting with `$` → 400, so a client never relies on an option the
sandbox silently ignores; other parameters are ignored, as Graph does):

* `$top`: 1..1000, default 10.  `$skip`: ≥ 0 (Outlook lists page with `$skip` in their
  `@odata.nextLink`).
* `$select=a,b`: names of the contact resource; `id` and `@odata.etag` always come back.
* `$expand=singleValueExtendedProperties($filter=id eq '…' [or id eq '…' …])`.
* `$filter`, exactly one of:
  `emailAddresses/any(a:a/address eq 'x')` (case-insensitive) and
  `singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')` (id compared
  case-insensitively; value case-insensitively — Exchange string restrictions ignore case).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..server import ApiError
from . import fields as F

MAX_TOP = 1000
DEFAULT_TOP = 10
_Q = r"'((?:[^']|'')*)'"
_EMAIL = re.compile(
    rf"^\s*emailAddresses/any\(\s*(\w+)\s*:\s*\1/address\s+eq\s+{_Q}\s*\)\s*$", re.IGNORECASE
)
_EXT = re.compile(
    rf"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+{_Q}\s+and\s+"
    rf"\1/value\s+eq\s+{_Q}\s*\)\s*$",
    re.IGNORECASE,
)
_EXPAND = re.compile(
    r"^\s*singleValueExtendedProperties\s*\(\s*\$filter\s*=\s*(.*)\)\s*$", re.IGNORECASE
)
_EXPAND_IDS = re.compile(rf"^\s*id\s+eq\s+{_Q}(?:\s+or\s+id\s+eq\s+{_Q})*\s*$", re.IGNORECASE)
_EXPAND_ONE = re.compile(rf"id\s+eq\s+{_Q}", re.IGNORECASE)
LIST_OPTIONS = frozenset({"$top", "$skip", "$select", "$expand", "$filter"})
GET_OPTIONS = frozenset({"$select", "$expand"})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _unquote(text: str) -> str:
    return text.replace("''", "'")


@dataclass(frozen=True)
class Query:
    top: int = DEFAULT_TOP
    skip: int = 0
    select: frozenset[str] | None = None
    expand: tuple[str, ...] | None = None
    #: ("email", address) or ("ext", key, value)
    filter: tuple[str, ...] | None = None


def check_options(args: Mapping[str, str], allowed: frozenset[str]) -> None:
    for name in args:
        if name.startswith("$") and name not in allowed:
            raise bad_request(f"The query option '{name}' is not supported here by the sandbox.")


def parse_int(args: Mapping[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            f"Invalid value '{raw}' for {name} query option found. The {name} query option "
            "requires a non-negative integer value."
        ) from None
    if value < 0:
        raise bad_request(
            f"Invalid value '{raw}' for {name} query option found. The {name} query option "
            "requires a non-negative integer value."
        )
    return value


def parse_select(raw: str | None) -> frozenset[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in F.SELECTABLE:
            raise ApiError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type 'microsoft.graph.contact'.",
            )
    return frozenset(names)


def parse_expand(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    match = _EXPAND.match(raw)
    if match is None or not _EXPAND_IDS.match(match.group(1)):
        raise bad_request(
            "The sandbox supports only $expand=singleValueExtendedProperties($filter=id eq "
            "'<id>' [or id eq '<id>' ...])."
        )
    keys = []
    for quoted in _EXPAND_ONE.findall(match.group(1)):
        key, _ = F.normalize_extended_id(_unquote(quoted))
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def parse_filter(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    match = _EMAIL.match(raw)
    if match:
        return ("email", _unquote(match.group(2)))
    match = _EXT.match(raw)
    if match:
        key, _ = F.normalize_extended_id(_unquote(match.group(2)))
        return ("ext", key, _unquote(match.group(3)))
    raise ApiError(
        400,
        "ErrorInvalidUrlQueryFilter",
        "The sandbox supports only the filters emailAddresses/any(a:a/address eq '...') and "
        "singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...').",
    )


def parse_list(args: Mapping[str, str]) -> Query:
    check_options(args, LIST_OPTIONS)
    top = parse_int(args, "$top", DEFAULT_TOP)
    if not 1 <= top <= MAX_TOP:
        raise bad_request(f"The value of $top must be between 1 and {MAX_TOP}; got {top}.")
    return Query(
        top=top,
        skip=parse_int(args, "$skip", 0),
        select=parse_select(args.get("$select")),
        expand=parse_expand(args.get("$expand")),
        filter=parse_filter(args.get("$filter")),
    )


def parse_get(args: Mapping[str, str]) -> Query:
    check_options(args, GET_OPTIONS)
    return Query(select=parse_select(args.get("$select")), expand=parse_expand(args.get("$expand")))
