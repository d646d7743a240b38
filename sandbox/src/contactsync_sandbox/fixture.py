"""Seed files: a team's own data for the sandbox (`serve --seed`, `--seed-dir`, `export`).

A seed file is JSON, `{"pipeliner": {...}, "microsoft": {...}}`, in the emulators' own seed
format (sandbox/README.md, "Your own data"), so that what `export` writes loads back unchanged.
On top of that format a fixture written by hand may be short:

* what it leaves out comes from the default seed (space, application key, tenant, app
  registration; units, roles, users and accounts unless a list they refer to is the fixture's
  own), and every Pipeliner user gets an empty mailbox unless the fixture lists mailboxes;
* where an id is expected, a user may be named by e-mail and a unit, role or account by name.

Everything is checked before a server starts: the merged seed is loaded into each emulator's
model offline, and every problem names the file, the row and the field.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .graph import seeding as graph_seeding
from .identity import model as identity_model
from .pipeliner import seeding as pipeliner_seeding
from .pipeliner.entities import UUID_RE
from .seed import default_seed

SECTIONS = ("pipeliner", "microsoft")
TOP_LEVEL_NOTES = ("_comment", "$schema")
#: Lists that several files add rows to; every other key is set once.
LIST_KEYS = {
    "pipeliner": ("units", "roles", "users", "accounts", "contacts"),
    "microsoft": ("mailboxes", "app_registrations"),
}
#: Identity lists a fixture may leave out, each with the lists its rows refer to: a left-out
#: list is the default seed's only if those are the default seed's too (else it is empty).
INHERITED_LISTS = (
    ("units", ()),
    ("roles", ()),
    ("users", ("units", "roles")),
    ("accounts", ("users", "units")),
)
PIPELINER_SCALARS = ("space_id", "application_keys", "default_contact_type_id")
#: Namespace of the ids this module makes up (units, roles, users, accounts, mailboxes).
ID_NAMESPACE = uuid.UUID("5a5a5a5a-0000-4000-8000-00000000fffe")
DEFAULT_SOURCE = "the default seed"


class SeedError(ValueError):
    """A seed that cannot be loaded; `problems` lists each one (file, row and field first)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Origin:
    """Where a row of the merged seed was written: the file and its index there."""

    source: str
    index: int


@dataclass
class _Merged:
    data: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in SECTIONS})
    rows: dict[tuple[str, str], list[Origin]] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)  # scalar key -> its file

    def where(self, section: str, key: str, index: int) -> str:
        """`file: section.key[i]` of merged row `index` (its index in its own file)."""
        origins = self.rows.get((section, key), [])
        if 0 <= index < len(origins):
            origin = origins[index]
            return f"{origin.source}: {section}.{key}[{origin.index}]"
        return f"{section}.{key}[{index}]"

    def sources(self, section: str) -> str:
        names = {o.source for (s, _k), rows in self.rows.items() if s == section for o in rows}
        names |= {src for (s, _k), src in self.keys.items() if s == section}
        return ", ".join(sorted(names - {DEFAULT_SOURCE})) or DEFAULT_SOURCE


# --------------------------------------------------------------------------- reading files


def read_seed_file(path: Path | str) -> dict[str, Any]:
    """One seed file as a dict (SeedError naming the file, line and column if it is not one)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError([f"{path}: cannot read the seed file: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise SeedError([f"{path}: not UTF-8 text (a seed file is JSON)"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError([f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
    return check_document(data, str(path))


def check_document(data: Any, source: str) -> dict[str, Any]:
    """The top level of a seed: an object with `pipeliner` and/or `microsoft` objects."""
    if not isinstance(data, dict):
        raise SeedError([f"{source}: a seed is a JSON object with 'pipeliner' and 'microsoft'"])
    problems = []
    for key, value in data.items():
        if key in TOP_LEVEL_NOTES:
            continue
        if key not in SECTIONS:
            problems.append(
                f"{source}: unknown key {key!r} (a seed has 'pipeliner' and 'microsoft')"
            )
        elif not isinstance(value, dict):
            problems.append(f"{source}: {key} must be a JSON object")
    if problems:
        raise SeedError(problems)
    return data


def seed_dir_files(directory: Path | str) -> list[Path]:
    """The `*.json` files of a seed directory, in name order (SeedError if there are none)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SeedError([f"{directory}: not a directory"])
    files = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise SeedError([f"{directory}: no *.json seed files in it"])
    return files


def load_seed_files(files: Iterable[Path | str]) -> dict[str, Any]:
    """Read, merge, complete and validate seed files; the complete seed, or SeedError."""
    documents = [(str(path), read_seed_file(path)) for path in files]
    return build_seed(documents)


def build_seed(documents: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The complete, validated seed from `(source name, document)` pairs, merged in order."""
    merged = _merge([(name, check_document(dict(doc), name)) for name, doc in documents])
    _complete(merged)
    problems = _resolve(merged)
    # The Pipeliner model would stop at the first unresolved reference; the others still load.
    skip = ("pipeliner",) if problems else ()
    problems += _validate(merged.data, merged, skip=skip)
    if problems:
        raise SeedError(problems)
    return merged.data


# --------------------------------------------------------------------------- merging


def _merge(documents: Sequence[tuple[str, Mapping[str, Any]]]) -> _Merged:
    merged = _Merged()
    problems: list[str] = []
    for source, doc in documents:
        for section in SECTIONS:
            part = dict(doc.get(section) or {})
            if section == "pipeliner" and "clients" in part and "users" not in part:
                part["users"] = part.pop("clients")  # the API's name for users
            target = merged.data[section]
            for key, value in part.items():
                if key in LIST_KEYS[section]:
                    if not isinstance(value, list):
                        problems.append(f"{source}: {section}.{key} must be a list")
                        continue
                    target.setdefault(key, []).extend(copy.deepcopy(value))
                    origins = merged.rows.setdefault((section, key), [])
                    origins.extend(Origin(source, i) for i in range(len(value)))
                elif key in target and target[key] != value:
                    first = merged.keys[(section, key)]
                    problems.append(
                        f"{source}: {section}.{key} differs from its value in {first} "
                        "(set it in one file only)"
                    )
                else:
                    target[key] = copy.deepcopy(value)
                    merged.keys.setdefault((section, key), source)
    if problems:
        raise SeedError(problems)
    return merged


# --------------------------------------------------------------------------- defaults


def _made_up_id(kind: str, name: Any) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{kind}/{str(name).lower()}"))


def _inherit(merged: _Merged, section: str, key: str, value: Any) -> None:
    merged.data[section][key] = copy.deepcopy(value)
    merged.keys[(section, key)] = DEFAULT_SOURCE
    if isinstance(value, list):
        merged.rows[(section, key)] = [Origin(DEFAULT_SOURCE, i) for i in range(len(value))]


def _complete(merged: _Merged) -> None:
    defaults = default_seed()
    pipeliner, microsoft = merged.data["pipeliner"], merged.data["microsoft"]
    for key in PIPELINER_SCALARS:
        if key not in pipeliner:
            _inherit(merged, "pipeliner", key, defaults["pipeliner"][key])
    inherited: set[str] = set()
    for key, refers_to in INHERITED_LISTS:
        if key in pipeliner:
            continue
        if all(dep in inherited for dep in refers_to):
            _inherit(merged, "pipeliner", key, defaults["pipeliner"][key])
            inherited.add(key)
        else:
            pipeliner[key] = []
    pipeliner.setdefault("contacts", [])
    for kind, key, name_key in (
        ("unit", "units", "name"),
        ("role", "roles", "name"),
        ("user", "users", "email"),
        ("account", "accounts", "name"),
    ):
        for row in pipeliner[key]:
            if isinstance(row, dict) and not row.get("id") and row.get(name_key):
                row["id"] = _made_up_id(kind, row[name_key])

    if "tenant_id" not in microsoft:
        for key in ("tenant_id", "tenant_domain"):
            _inherit(merged, "microsoft", key, defaults["microsoft"][key])
    if "app_registration" not in microsoft and "app_registrations" not in microsoft:
        _inherit(merged, "microsoft", "app_registration", defaults["microsoft"]["app_registration"])
    default_boxes = {
        b["user_principal_name"].lower(): b for b in defaults["microsoft"]["mailboxes"]
    }
    users = [u for u in pipeliner["users"] if isinstance(u, dict)]
    if "mailboxes" not in microsoft:
        microsoft["mailboxes"] = [
            {"user_principal_name": u["email"], "contacts_folder": {"contacts": []}}
            for u in users
            if isinstance(u.get("email"), str) and not u.get("is_deleted")
        ]
        merged.rows[("microsoft", "mailboxes")] = [
            Origin("a mailbox for each Pipeliner user", i)
            for i in range(len(microsoft["mailboxes"]))
        ]
    by_email = {str(u.get("email", "")).lower(): u for u in users}
    for box in microsoft["mailboxes"]:
        if not isinstance(box, dict) or not isinstance(box.get("user_principal_name"), str):
            continue
        upn = box["user_principal_name"]
        default = default_boxes.get(upn.lower(), {})
        user = by_email.get(upn.lower())
        if not box.get("id"):
            box["id"] = default.get("id") or _made_up_id("mailbox", upn)
        if not box.get("display_name"):
            names = [user.get("first_name"), user.get("last_name")] if user else []
            box["display_name"] = " ".join(n for n in names if n) or default.get(
                "display_name", upn
            )
        if "pipeliner_user_id" not in box and user is not None and user.get("id"):
            box["pipeliner_user_id"] = user["id"]


# --------------------------------------------------------------------------- references


class _Table:
    """Ids of one kind, and the names (or e-mails) that may stand for them."""

    def __init__(self, what: str, rows: Iterable[Any], name_key: str) -> None:
        self.what = what
        self.name_key = name_key
        self.ids: set[str] = set()
        self.names: dict[str, list[str]] = {}
        self.shown: list[str] = []
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                continue
            self.ids.add(row["id"])
            name = row.get(name_key)
            if isinstance(name, str) and name:
                self.names.setdefault(name.lower(), []).append(row["id"])
                self.shown.append(name)

    def resolve(self, value: Any, where: str, problems: list[str]) -> Any:
        if not isinstance(value, str) or value in self.ids:
            return value  # a wrong type is the emulator's to report
        matches = self.names.get(value.lower(), [])
        if len(matches) == 1:
            return matches[0]
        if matches:
            problems.append(
                f"{where}: {len(matches)} {self.what}s are called {value!r}; use the id"
            )
            return value
        kind = "id" if UUID_RE.match(value) else self.name_key.replace("email", "e-mail")
        known = sorted(set(self.shown), key=str.lower)[:6]
        hint = f" (known: {', '.join(known)})" if known else f" (the seed has no {self.what}s)"
        problems.append(f"{where}: no {self.what} with the {kind} {value!r}{hint}")
        return value


#: Fields that refer to another row: (list, field, table); a list of ids where the value is one.
_REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "units": (("parent_id", "unit"),),
    "users": (
        ("default_unit_id", "unit"),
        ("unit_member_ids", "unit"),
        ("unit_manager_ids", "unit"),
        ("master_right_id", "role"),
    ),
    "accounts": (("owner_id", "user"), ("unit_id", "unit")),
    "contacts": (("owner_id", "user"), ("unit_id", "unit")),
}
_RELATIONS = (
    ("account_relations", "account_id", "account"),
    ("sharing_clients", "client_id", "user"),
    ("sharing_units", "unit_id", "unit"),
)


def _resolve(merged: _Merged) -> list[str]:
    """Replace e-mails and names by ids where an id is expected; the problems found."""
    pipeliner, microsoft = merged.data["pipeliner"], merged.data["microsoft"]
    tables = {
        "unit": _Table("unit", pipeliner["units"], "name"),
        "role": _Table("role", pipeliner["roles"], "name"),
        "user": _Table("user", pipeliner["users"], "email"),
        "account": _Table("account", pipeliner["accounts"], "name"),
    }
    problems: list[str] = []

    def fix(row: dict[str, Any], name: str, table: _Table, where: str) -> None:
        value = row.get(name)
        if value is None:
            return
        if isinstance(value, list):
            row[name] = [
                table.resolve(v, f"{where}.{name}[{i}]", problems) for i, v in enumerate(value)
            ]
        else:
            row[name] = table.resolve(value, f"{where}.{name}", problems)

    for key, fields in _REFERENCES.items():
        for index, row in enumerate(pipeliner[key]):
            if not isinstance(row, dict):
                continue
            where = merged.where("pipeliner", key, index)
            for name, kind in fields:
                fix(row, name, tables[kind], where)
            if key != "contacts":
                continue
            for relation, name, kind in _RELATIONS:
                items = row.get(relation)
                if not isinstance(items, list):
                    continue
                for number, item in enumerate(items):
                    if isinstance(item, dict):
                        fix(item, name, tables[kind], f"{where}.{relation}[{number}]")
    for index, box in enumerate(microsoft.get("mailboxes") or []):
        if isinstance(box, dict):
            fix(
                box,
                "pipeliner_user_id",
                tables["user"],
                merged.where("microsoft", "mailboxes", index),
            )
    return problems


# --------------------------------------------------------------------------- validation

_PIPELINER_ROW = re.compile(r"^(units|roles|users|accounts|contacts)\[(\d+)\](.*)$", re.S)
_GRAPH_FOLDER = re.compile(r"^([^/\s]+@[^/\s]+)/([^:]*): (.*)$", re.S)


def _validate(seed: Mapping[str, Any], merged: _Merged, skip: Sequence[str] = ()) -> list[str]:
    problems: list[str] = []
    checks: tuple[tuple[str, Callable[[Any], Any], Callable[[str], str]], ...] = (
        ("pipeliner", pipeliner_seeding.load, lambda m: _pipeliner_where(merged, m)),
        ("microsoft", graph_seeding.load, lambda m: _graph_where(merged, m)),
        ("microsoft", identity_model.load, lambda m: f"{merged.sources('microsoft')}: {m}"),
    )
    for section, load, where in checks:
        if section in skip:
            continue
        try:
            load(seed[section])
        except ValueError as exc:
            problems.append(where(str(exc)))
    return problems


def _pipeliner_where(merged: _Merged, message: str) -> str:
    match = _PIPELINER_ROW.match(message)
    if match:
        key, index, rest = match.group(1), int(match.group(2)), match.group(3)
        return merged.where("pipeliner", key, index) + rest
    return f"{merged.sources('pipeliner')}: pipeliner: {message}"


def _graph_where(merged: _Merged, message: str) -> str:
    match = _GRAPH_FOLDER.match(message)
    if match:
        upn, folder, rest = match.groups()
        boxes = merged.data["microsoft"].get("mailboxes") or []
        for index, box in enumerate(boxes):
            if isinstance(box, dict) and str(box.get("user_principal_name")).lower() == upn.lower():
                where = merged.where("microsoft", "mailboxes", index)
                return f"{where} ({upn}), folder {folder}: {rest}"
    return f"{merged.sources('microsoft')}: microsoft: {message}"


# --------------------------------------------------------------------------- export


def export_seed(
    pipeliner_state: Mapping[str, Any],
    graph_state: Mapping[str, Any],
    identity_state: Mapping[str, Any],
) -> dict[str, Any]:
    """A seed of the emulators' current states (`GET /_sandbox/state` of each): the data, not
    the sign-in sessions (device codes, refresh tokens), so replaying it starts signed out."""
    microsoft = {
        "tenant_id": identity_state["tenant_id"],
        "tenant_domain": identity_state["tenant_domain"],
        "app_registrations": identity_state["app_registrations"],
        "settings": identity_state["settings"],
        "mailboxes": graph_state["mailboxes"],
    }
    return {"pipeliner": dict(pipeliner_state), "microsoft": microsoft}


def write_seed(seed: Mapping[str, Any], *, out_file: Path | None, out_dir: Path | None) -> None:
    """One file (or stdout when both are None), or `pipeliner.json` and `microsoft.json` in a
    directory that `--seed-dir` reads back."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for section in SECTIONS:
            _write_json(out_dir / f"{section}.json", {section: seed[section]})
    elif out_file is not None:
        _write_json(out_file, seed)
    else:
        print(json.dumps(seed, indent=2, ensure_ascii=False))


def _write_json(path: Path, data: Any) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    temp.replace(path)
