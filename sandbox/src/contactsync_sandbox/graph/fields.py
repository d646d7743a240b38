"""The Graph `contact` resource: its properties, their defaults, and the checks on writes.

Written from the v1.0 property tables and the documented GET sample
(`../shared/specs/graph-contact.schema.json`, notes in `graph-notes.md`):

* Every property of the table is stored and returned. Unset strings come back `null`, except
  `fileAs` and `personalNotes` (`""` in the sample); collections `[]`; addresses `{}`.
* Writes (POST, PATCH, and the owner's edits through the control API) replace whole top-level
  properties: an array or address sent in a PATCH replaces the stored one, nothing is merged.
* Limits Graph enforces with 400 (`ErrorInvalidProperty`, message as Exchange words it):
  at most 3 `emailAddresses`, 2 `businessPhones`, 2 `homePhones`.
* Where the docs are silent, :class:`Storage` offers both readings as switches (sandbox/README.md,
  "Storage options"): string lengths (Graph documents no limit, so none by default; the
  `string_limits` option refuses single-line strings over 255 characters and `personalNotes` or
  extended-property values over 32,768, as an invented but plausible service would), and empty
  entries of `emailAddresses` / `businessPhones` / `homePhones` (kept where they were by default;
  `compact_empty_entries` drops them, as an Outlook client re-saving the list does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ..server import ApiError

#: Properties in the order of the documented GET sample (then the rest of the table).
CONTACT_ORDER: tuple[str, ...] = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "parentFolderId",
    "birthday",
    "fileAs",
    "displayName",
    "givenName",
    "initials",
    "middleName",
    "nickName",
    "surname",
    "title",
    "yomiGivenName",
    "yomiSurname",
    "yomiCompanyName",
    "generation",
    "imAddresses",
    "jobTitle",
    "companyName",
    "department",
    "officeLocation",
    "profession",
    "businessHomePage",
    "assistantName",
    "manager",
    "homePhones",
    "mobilePhone",
    "businessPhones",
    "spouseName",
    "personalNotes",
    "children",
    "emailAddresses",
    "homeAddress",
    "businessAddress",
    "otherAddress",
)

STRING_PROPS = frozenset(
    {
        "assistantName",
        "businessHomePage",
        "companyName",
        "department",
        "displayName",
        "fileAs",
        "generation",
        "givenName",
        "initials",
        "jobTitle",
        "manager",
        "middleName",
        "mobilePhone",
        "nickName",
        "officeLocation",
        "personalNotes",
        "profession",
        "spouseName",
        "surname",
        "title",
        "yomiCompanyName",
        "yomiGivenName",
        "yomiSurname",
    }
)
STRING_LIST_PROPS = frozenset(
    {"businessPhones", "homePhones", "imAddresses", "categories", "children"}
)
ADDRESS_PROPS = frozenset({"homeAddress", "businessAddress", "otherAddress"})
ADDRESS_KEYS: tuple[str, ...] = ("street", "city", "state", "postalCode", "countryOrRegion")
DATETIME_PROPS = frozenset({"birthday"})
EMAIL_PROP = "emailAddresses"
#: Maintained by the server; ignored in request bodies (as are `@odata.*` annotations).
SERVER_PROPS = frozenset(
    {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"}
)
#: Relationships of the resource that the sandbox does not let clients write.
UNWRITABLE_RELATIONS = frozenset({"extensions", "multiValueExtendedProperties", "photo"})
EXTENDED = "singleValueExtendedProperties"
WRITABLE_PROPS = STRING_PROPS | STRING_LIST_PROPS | ADDRESS_PROPS | DATETIME_PROPS | {EMAIL_PROP}
#: Every name `$select` accepts.
SELECTABLE = frozenset(CONTACT_ORDER) | UNWRITABLE_RELATIONS | {EXTENDED}

#: Defaults of the documented GET sample.
EMPTY_STRING_DEFAULTS = frozenset({"fileAs", "personalNotes"})
#: (name in Exchange's message, maximum entries) — enforced with 400 like Graph.
MAX_ENTRIES: Mapping[str, tuple[str, int]] = {
    "emailAddresses": ("EmailAddresses", 3),
    "businessPhones": ("BusinessPhones", 2),
    "homePhones": ("HomePhones", 2),
}
#: The `string_limits` option (invented: Graph documents none): longest single-line string,
#: and the notes' (and extended properties') limit.
MAX_STRING = 255
MAX_LONG_STRING: Mapping[str, int] = {"personalNotes": 32_768}
NAME_PROPS = ("givenName", "surname")


@dataclass(frozen=True)
class Storage:
    """How the emulated service stores what a write sends, where Graph's docs do not say.

    ``string_limits``: refuse over-long strings (the sandbox's invented limits above) instead of
    storing them, as Graph documents no length limit on contact strings (contact.md's property
    table: plain `String`). ``compact_empty_entries``: drop empty strings from `businessPhones` /
    `homePhones` and address-less entries from `emailAddresses`; Graph documents nothing about
    empty entries (emailaddress.md, contact.md), and an Outlook client re-saving a contact is
    seen to drop them. ``folder_scoped_item_urls``: whether a contact addressed through a folder
    (``contactFolders/{f}/contacts/{id}``) is found only in that folder (default) or wherever it
    is in the mailbox, the folder segment ignored; the docs list both URL forms for get, update
    and delete (contact-get.md, contact-update.md, contact-delete.md) and say nothing of a
    contact that is not in the folder named, so a client must be safe under both.
    ``deleted_items``: whether the owner deleting a contact in the Outlook client removes it
    (default) or moves it to Deleted Items, a mail folder outside the contact folders, where it
    can still be read by id (`contacts/{id}`, its `parentFolderId` that folder): Outlook's object
    model documents the move (ContactItem.Delete, MicrosoftDocs/VBA-Docs), Graph says nothing of
    reading such an item. Graph's own DELETE removes the contact either way (contact-delete.md).
    """

    string_limits: bool = False
    compact_empty_entries: bool = False
    folder_scoped_item_urls: bool = True
    deleted_items: bool = False

    def to_json(self) -> dict[str, bool]:
        return asdict(self)

    def updated(self, body: Any) -> Storage:
        if not isinstance(body, dict):
            raise ValueError("the storage options are a JSON object")
        unknown = set(body) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown storage option(s): {', '.join(sorted(unknown))}")
        if not all(isinstance(v, bool) for v in body.values()):
            raise ValueError("storage options are true or false")
        return replace(self, **body)


#: What the service does where the docs are silent, unless told otherwise.
DOCUMENTED = Storage()

#: `String 0x3A1F`, `String {guid} Name Foo`, `String {guid} Id 0x8005` (type names as MAPI).
_EXT_ID = re.compile(
    r"^(?P<type>[A-Za-z]+) (?:(?P<tag>0x[0-9A-Fa-f]{1,4})"
    r"|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\} "
    r"(?:Name .+|Id 0x[0-9A-Fa-f]{1,8}))$"
)
_EXT_TYPES = frozenset(
    {
        "binary",
        "boolean",
        "clsid",
        "currency",
        "double",
        "float",
        "integer",
        "long",
        "object",
        "short",
        "string",
        "systemtime",
        "applicationtime",
    }
)


def default_value(name: str) -> Any:
    if name in STRING_LIST_PROPS or name == EMAIL_PROP:
        return []
    if name in ADDRESS_PROPS:
        return {}
    if name in EMPTY_STRING_DEFAULTS:
        return ""
    return None


#: name → default, for every property a write can set.
DEFAULTS: Mapping[str, Any] = {name: default_value(name) for name in WRITABLE_PROPS}


def bad_body(message: str) -> ApiError:
    return ApiError(400, "RequestBodyRead", message)


def _too_long(name: str, value: str, limit: int) -> ApiError:
    return ApiError(
        400,
        "ErrorInvalidProperty",
        f"The property '{name}' is {len(value)} characters long, longer than the "
        f"{limit} the sandbox allows (its string_limits option).",
    )


def _string(
    name: str, value: Any, storage: Storage = DOCUMENTED, limit: int = MAX_STRING
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_body(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.String' "
            f"(property '{name}')."
        )
    if storage.string_limits and len(value) > limit:
        raise _too_long(name, value, limit)
    return value


def _collection(name: str, value: Any) -> list[Any]:
    if value is None:
        raise bad_body(
            f"A null value was found for the property named '{name}', which has the expected "
            "type 'Collection' which does not allow null values."
        )
    if not isinstance(value, list):
        raise bad_body(f"The property '{name}' must be a JSON array.")
    limit = MAX_ENTRIES.get(name)
    if limit is not None and len(value) > limit[1]:
        raise ApiError(
            400,
            "ErrorInvalidProperty",
            f"The multi value property {limit[0]} has {len(value)} entries, that exceeds the "
            f"max allowed value of {limit[1]}.",
        )
    return value


def _odata_annotations_only(name: str, obj: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed and not key.startswith("@odata."):
            raise bad_body(
                f"The property '{key}' does not exist on type '{name}'. Make sure to only use "
                "property names that are defined by the type."
            )


def parse_datetime(name: str, value: Any) -> str | None:
    """A DateTimeOffset as Graph returns it: UTC, seconds, `Z`."""
    if value is None:
        return None
    if not isinstance(value, str) or "T" not in value:
        raise bad_body(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset' "
            f"(property '{name}')."
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise bad_body(
            f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset' "
            f"(property '{name}')."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_value(name: str, value: Any, storage: Storage = DOCUMENTED) -> Any:
    """One writable property as stored (raises `ApiError` 400 when Graph would refuse it)."""
    if name in STRING_PROPS:
        return _string(name, value, storage, MAX_LONG_STRING.get(name, MAX_STRING))
    if name in STRING_LIST_PROPS:
        items = _collection(name, value)
        for item in items:
            if not isinstance(item, str):
                raise bad_body(f"The property '{name}' must hold strings only.")
            _string(name, item, storage)
        if storage.compact_empty_entries:
            return [item for item in items if item.strip()]
        return list(items)
    if name == EMAIL_PROP:
        out = []
        for item in _collection(name, value):
            if not isinstance(item, dict):
                raise bad_body("Each of 'emailAddresses' must be an emailAddress object.")
            _odata_annotations_only("microsoft.graph.emailAddress", item, ("name", "address"))
            address = _string("emailAddresses/address", item.get("address"), storage)
            name_ = _string("emailAddresses/name", item.get("name"), storage)
            if storage.compact_empty_entries and not (address or "").strip():
                continue
            # Sandbox assumption (the documented sample shows it): Exchange fills the display
            # name with the address when none is given.
            out.append({"name": address if name_ is None else name_, "address": address})
        return out
    if name in ADDRESS_PROPS:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad_body(f"The property '{name}' must be a physicalAddress object.")
        _odata_annotations_only("microsoft.graph.physicalAddress", value, ADDRESS_KEYS)
        address = {}
        for key in ADDRESS_KEYS:
            part = _string(f"{name}/{key}", value.get(key), storage)
            if part is not None:
                address[key] = part
        return address
    if name in DATETIME_PROPS:
        return parse_datetime(name, value)
    raise bad_body(f"The property '{name}' cannot be written.")


def normalize_extended_id(raw: Any) -> tuple[str, str]:
    """(matching key, id as returned) of an extended property id, or a 400."""
    if not isinstance(raw, str):
        raise ApiError(400, "ErrorInvalidExtendedProperty", "An extended property needs an 'id'.")
    text = " ".join(raw.split())
    match = _EXT_ID.match(text)
    if match is None or match.group("type").lower() not in _EXT_TYPES:
        raise ApiError(
            400,
            "ErrorInvalidExtendedProperty",
            f"The extended property id '{raw}' is not valid (expected e.g. 'String 0x3A1F' or "
            "'String {guid} Name Foo').",
        )
    if match.group("tag"):
        # Graph returns property tags in lower case (`String 0x3a1f`).
        text = f"{match.group('type')} {match.group('tag').lower()}"
    return text.casefold(), text


def parse_extended(value: Any, storage: Storage = DOCUMENTED) -> list[tuple[str, str, str | None]]:
    """`singleValueExtendedProperties` of a write body: [(key, id, value)]."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_body(f"The property '{EXTENDED}' must be a JSON array.")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise bad_body(f"Each of '{EXTENDED}' must be an object with 'id' and 'value'.")
        _odata_annotations_only(
            "microsoft.graph.singleValueLegacyExtendedProperty", item, ("id", "value")
        )
        key, shown = normalize_extended_id(item.get("id"))
        raw = item.get("value")
        if raw is not None and not isinstance(raw, str):
            raise bad_body("An extended property 'value' must be a string.")
        limit = MAX_LONG_STRING["personalNotes"]
        if storage.string_limits and raw is not None and len(raw) > limit:
            raise _too_long(shown, raw, limit)
        out.append((key, shown, raw))
    return out


def parse_write(
    body: Any, storage: Storage = DOCUMENTED
) -> tuple[dict[str, Any], list[tuple[str, str, str | None]]]:
    """A contact body (POST or PATCH) → (properties to set, extended properties to upsert)."""
    if not isinstance(body, dict):
        raise bad_body("The request body must be a JSON object (a microsoft.graph.contact).")
    props: dict[str, Any] = {}
    extended: list[tuple[str, str, str | None]] = []
    for name, value in body.items():
        if name.startswith("@odata.") or name in SERVER_PROPS:
            continue
        if name == EXTENDED:
            extended = parse_extended(value, storage)
        elif name in WRITABLE_PROPS:
            props[name] = normalize_value(name, value, storage)
        elif name in UNWRITABLE_RELATIONS:
            raise bad_body(f"The sandbox does not emulate writing '{name}' on a contact.")
        else:
            raise bad_body(
                f"The property '{name}' does not exist on type 'microsoft.graph.contact'. Make "
                "sure to only use property names that are defined by the type or mark the type "
                "as open type."
            )
    return props, extended


def derived_display_name(props: Mapping[str, Any]) -> str:
    """The display name Outlook files a contact under when none is given (sandbox rule)."""
    name = " ".join(p for p in (props.get("givenName"), props.get("surname")) if p)
    if name:
        return name
    return props.get("companyName") or ""
