"""List queries of one entity collection: filters, ordering, keyset cursors, sorted indexes.

Pipeliner's cursors are keyset cursors: the spec's example `end_cursor`
`WyIwNSIsICJmMjZhZjZiMC00ZWE4LTQ3MDgtODU2NC0wN2JmYzI4ZGQ5ZTgiXQ==` is base64 of
`["05", "f26af6b0-…"]`, the sort value(s) of the last row followed by its id. The emulator does
the same: every ordering ends with `id` as a tie-breaker, and `after=<cursor>` continues strictly
after that key. Consequences a client sees (and the tests pin down):

- rows never repeat or go missing while nothing changes;
- a row changed between two page requests is placed by its *new* sort values: under
  `order-by=modified` it moves behind the cursor and is read again on a later page (never lost),
  under the default `id` order it stays where it was;
- rows created while paging appear if their key sorts after the cursor.

Each ordering used gets a sorted index (key tuples in a list, kept sorted with `bisect` as rows
change), so a page costs O(log n + rows scanned); a filter on the leading order field
(`gt`/`gte`/`lt`/`lte`/`between`/`eq`) narrows the scanned range by bisection.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..jsonvalues import is_integer
from .timefmt import format_us, parse_us

Getter = Callable[[Mapping[str, Any], str], Any]
Accessor = Callable[[Mapping[str, Any]], Any]
Order = tuple[tuple[str, bool], ...]  # (field, descending)

MAX_INDEXES = 12


class QueryError(ValueError):
    """A query parameter the API refuses (answered 400 ERROR_PARAMETER_INVALID)."""


class _Rev:
    """A string that sorts in reverse (descending order on text fields)."""

    __slots__ = ("v",)

    def __init__(self, v: str) -> None:
        self.v = v

    def __lt__(self, other: _Rev) -> bool:
        return self.v > other.v

    def __gt__(self, other: _Rev) -> bool:
        return self.v < other.v

    def __le__(self, other: _Rev) -> bool:
        return self.v >= other.v

    def __ge__(self, other: _Rev) -> bool:
        return self.v <= other.v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


class _Top:
    """Sorts after everything it is compared with (an inclusive upper bound for bisection)."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return 0


_TOP = _Top()


def sort_element(value: Any, descending: bool) -> tuple[int, Any]:
    """One component of a sort key: None first (ascending) / last (descending)."""
    if value is None:
        return (1, 0) if descending else (0, 0)
    if isinstance(value, str):
        return (0, _Rev(value)) if descending else (1, value)
    number = int(value)
    return (0, -number) if descending else (1, number)


# ---------------------------------------------------------------------------- filters


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _make_test(op: str, args: tuple[Any, ...]) -> Callable[[Any], bool]:
    a = args[0] if args else None
    if op == "eq":
        return lambda v: v is not None and v == a
    if op == "not-eq":
        return lambda v: not (v is not None and v == a)
    if op in ("ieq", "not-ieq", "icontains", "istarts", "iends"):
        folded = a.casefold()
        check = {
            "ieq": lambda s: s == folded,
            "not-ieq": lambda s: s == folded,
            "icontains": lambda s: folded in s,
            "istarts": lambda s: s.startswith(folded),
            "iends": lambda s: s.endswith(folded),
        }[op]
        if op == "not-ieq":
            return lambda v: not (_text(v) is not None and check(v.casefold()))
        return lambda v: _text(v) is not None and check(v.casefold())
    if op == "contains":
        return lambda v: _text(v) is not None and a in v
    if op == "starts":
        return lambda v: _text(v) is not None and v.startswith(a)
    if op == "ends":
        return lambda v: _text(v) is not None and v.endswith(a)
    if op == "null":
        return lambda v: v is None
    if op == "not-null":
        return lambda v: v is not None
    if op == "empty":
        return lambda v: v is None or v == "" or v == []
    if op == "not-empty":
        return lambda v: not (v is None or v == "" or v == [])
    if op == "gt":
        return lambda v: v is not None and v > a
    if op == "gte":
        return lambda v: v is not None and v >= a
    if op == "lt":
        return lambda v: v is not None and v < a
    if op == "lte":
        return lambda v: v is not None and v <= a
    if op == "between":
        b = args[1]
        return lambda v: v is not None and a <= v <= b
    raise QueryError(f"unknown filter operator {op!r}")


@dataclass
class Filter:
    """`filter[field]` + `filter-op[field]`, with the value(s) parsed to the field's type."""

    field: str
    op: str
    args: tuple[Any, ...] = ()
    test: Callable[[Any], bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.test = _make_test(self.op, self.args)

    def bounds(self) -> tuple[Any, Any]:
        """Inclusive (low, high) value bounds this filter implies (None = open)."""
        if self.op in ("gt", "gte"):
            return self.args[0], None
        if self.op in ("lt", "lte"):
            return None, self.args[0]
        if self.op == "between":
            return self.args[0], self.args[1]
        if self.op == "eq":
            return self.args[0], self.args[0]
        return None, None


# ---------------------------------------------------------------------------- cursors


def encode_cursor(values: list[Any]) -> str:
    """Base64 of a JSON list of the row's sort values and its id (like the vendor's cursors)."""
    raw = json.dumps(values, ensure_ascii=False, separators=(", ", ": "))
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str, order: Order, kinds: Mapping[str, str]) -> tuple[Any, ...]:
    """A cursor back into a sort key for `order` (QueryError if it is not one of ours)."""
    try:
        values = json.loads(base64.b64decode(cursor.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, UnicodeError):
        raise QueryError(f"invalid cursor {cursor!r}") from None
    if not isinstance(values, list) or len(values) != len(order) + 1:
        raise QueryError(f"invalid cursor {cursor!r} (made for another order-by?)")
    *sort_values, row_id = values
    if not isinstance(row_id, str):
        raise QueryError(f"invalid cursor {cursor!r}")
    key: list[Any] = []
    for (name, descending), value in zip(order, sort_values, strict=True):
        key.append(sort_element(_cursor_value(value, kinds[name], cursor), descending))
    key.append(row_id)
    return tuple(key)


def cursor_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return format_us(value, "vendor")
    return value


def _cursor_value(value: Any, kind: str, cursor: str) -> Any:
    if value is None:
        return None
    ok = {
        "datetime": isinstance(value, str),
        "int": is_integer(value),
        "bool": isinstance(value, bool),
    }.get(kind, isinstance(value, str))
    if not ok:
        raise QueryError(f"invalid cursor {cursor!r} (made for another order-by?)")
    if kind == "datetime":
        try:
            return parse_us(value)
        except ValueError:
            raise QueryError(f"invalid cursor {cursor!r}") from None
    return value


# ---------------------------------------------------------------------------- collection


@dataclass
class Query:
    order: Order = ()
    filters: list[Filter] = field(default_factory=list)
    include_deleted: bool = False
    first: int | None = None
    last: int | None = None
    after: tuple[Any, ...] | None = None
    before: tuple[Any, ...] | None = None
    want_total: bool = False


@dataclass
class Page:
    records: list[dict[str, Any]]
    has_next: bool
    has_previous: bool
    start_cursor: str | None
    end_cursor: str | None
    total: int | None = None


class _Index:
    """All rows' sort keys for one ordering, in a sorted list (ids make keys unique)."""

    def __init__(self, make_key: Callable[[dict[str, Any]], tuple[Any, ...]]) -> None:
        self.make_key = make_key
        self.key_of: dict[str, tuple[Any, ...]] = {}
        self.keys: list[tuple[Any, ...]] = []

    def build(self, records: Mapping[str, dict[str, Any]]) -> None:
        self.key_of = {rid: self.make_key(rec) for rid, rec in records.items()}
        self.keys = sorted(self.key_of.values())

    def update(self, rid: str, rec: dict[str, Any]) -> None:
        new = self.make_key(rec)
        old = self.key_of.get(rid)
        if old is not None:
            if old == new:
                return
            del self.keys[bisect_left(self.keys, old)]
        insort(self.keys, new)
        self.key_of[rid] = new


class Collection:
    """The rows of one entity type (dicts by id), with lazily built sorted indexes."""

    def __init__(
        self,
        kinds: Mapping[str, str],
        getter: Getter,
        accessor: Callable[[str], Accessor] | None = None,
    ) -> None:
        self.kinds = kinds
        self.getter = getter
        self.accessor = accessor or (lambda name: lambda rec: getter(rec, name))
        self.records: dict[str, dict[str, Any]] = {}
        self._indexes: OrderedDict[Order, _Index] = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, rid: object) -> bool:
        return rid in self.records

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())

    def get(self, rid: str) -> dict[str, Any] | None:
        return self.records.get(rid)

    def add(self, rec: dict[str, Any]) -> None:
        self.records[rec["id"]] = rec
        for index in self._indexes.values():
            index.update(rec["id"], rec)

    def touch(self, rid: str) -> None:
        """Re-sort row `rid` after it changed."""
        rec = self.records[rid]
        for index in self._indexes.values():
            index.update(rid, rec)

    def replace_all(self, records: Mapping[str, dict[str, Any]]) -> None:
        self.records = dict(records)
        self._indexes.clear()

    def bulk_added(self) -> None:
        """Rows were added to `records` directly: drop the indexes (rebuilt on next use)."""
        self._indexes.clear()

    # ------------------------------------------------------------------ querying

    def _index(self, order: Order) -> _Index:
        index = self._indexes.get(order)
        if index is None:
            parts = [(self.accessor(name), desc) for name, desc in order]

            def make_key(rec: dict[str, Any]) -> tuple[Any, ...]:
                return (*(sort_element(get(rec), desc) for get, desc in parts), rec["id"])

            index = _Index(make_key)
            index.build(self.records)
            self._indexes[order] = index
            while len(self._indexes) > MAX_INDEXES:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(order)
        return index

    def _range(self, q: Query, keys: list[tuple[Any, ...]]) -> tuple[int, int]:
        """The slice of `keys` the filters on the leading order field allow."""
        start, end = 0, len(keys)
        if not q.order:
            return start, end
        lead, descending = q.order[0]
        for flt in q.filters:
            if flt.field != lead:
                continue
            low, high = flt.bounds()
            if descending:
                low, high = high, low
            if low is not None:
                start = max(start, bisect_left(keys, (sort_element(low, descending),)))
            if high is not None:
                end = min(end, bisect_right(keys, (sort_element(high, descending), _TOP)))
        return start, end

    def query(self, q: Query) -> Page:
        order = q.order
        index = self._index(order)
        keys, records = index.keys, self.records
        tests = [(self.accessor(flt.field), flt.test) for flt in q.filters]
        deleted = self.accessor("is_deleted")
        include_deleted = q.include_deleted

        def matches(i: int) -> bool:
            rec = records[keys[i][-1]]
            if not include_deleted and deleted(rec):
                return False
            for get, test in tests:  # noqa: SIM110 - a plain loop is faster per row
                if not test(get(rec)):
                    return False
            return True

        low, high = self._range(q, keys)
        start, end = low, high
        if q.after is not None:
            start = max(start, bisect_right(keys, q.after))
        if q.before is not None:
            end = min(end, bisect_left(keys, q.before))

        picked: list[int] = []
        more_after = False  # a match after the picked rows is known
        more_before = False  # a match before the picked rows is known
        if q.last is not None and q.first is None:
            i = end - 1
            while i >= start and len(picked) <= q.last:
                if matches(i):
                    picked.append(i)
                i -= 1
            more_before = len(picked) > q.last
            picked = picked[: q.last][::-1]
            scanned_after = end  # nothing after `end` was looked at
        else:
            limit = q.first if q.first is not None else 30
            i = start
            while i < end and len(picked) <= limit:
                if matches(i):
                    picked.append(i)
                i += 1
            more_after = len(picked) > limit
            scanned_after = i  # [start, i) was scanned
            picked = picked[:limit]
            if q.last is not None:
                more_before = len(picked) > q.last
                picked = picked[-q.last :] if q.last else []

        def any_match(indices: range) -> bool:
            return any(matches(i) for i in indices)

        first_i = picked[0] if picked else start
        has_previous = more_before or any_match(range(first_i - 1, low - 1, -1))
        if more_after:
            has_next = True
        else:
            after_i = picked[-1] + 1 if picked else start
            if q.last is not None and q.first is None:
                has_next = any_match(range(after_i, high))
            else:  # rows up to `scanned_after` held no further match
                has_next = any_match(range(max(after_i, scanned_after), high))

        rows = [records[keys[i][-1]] for i in picked]
        total = sum(1 for i in range(low, high) if matches(i)) if q.want_total else None
        return Page(
            records=rows,
            has_next=has_next,
            has_previous=has_previous,
            start_cursor=self.cursor(rows[0], order) if rows else None,
            end_cursor=self.cursor(rows[-1], order) if rows else None,
            total=total,
        )

    def cursor(self, rec: Mapping[str, Any], order: Order) -> str:
        values = [cursor_value(self.getter(rec, name), self.kinds[name]) for name, _ in order]
        return encode_cursor([*values, rec["id"]])
