"""Contract tests of the Graph emulator: its answers against the Graph contact schema.

Every contact and contact folder the emulator returns — lists, gets, creates, PATCHes, delta
pages (tombstones included) and the inner bodies of `$batch` answers — validates with
`specs.validate_graph` / `specs.validate_graph_collection`
(`../shared/specs/graph-contact.schema.json`, copied to `tests/contract/specs/`). The schema
leaves `contact` open for `@odata.*` annotations, so these tests also close it: a property the
schema does not name must be an annotation, and the emulator's property catalogue must be the
schema's. Requests Graph rejects are rejected the same way, with Graph's error body. Runs
against the real HTTPS server of the session sandbox.
"""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from contactsync_sandbox.graph import fields as F
from contactsync_sandbox.tokens import REGISTRY

from . import specs
from .specs import validate_graph, validate_graph_collection

ALEX = "d0000000-0000-4000-8000-000000000001"
MEGAN = "d0000000-0000-4000-8000-000000000002"
APP = "f0000000-0000-4000-8000-000000000001"
TENANT = "e0000000-0000-4000-8000-000000000001"
STAMP = "String {8f7d2c2e-3b0a-4d55-9a55-2f3b6c1e9a41} Name PipelinerContactId"
OTHER_PHONE = "String 0x3A1F"
JSON = {"Content-Type": "application/json"}
#: Graph's error body (https://learn.microsoft.com/graph/errors): code and message, always.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "minLength": 1},
                "message": {"type": "string"},
                "innerError": {"type": "object"},
            },
        }
    },
}
TOMBSTONE_KEYS = {"@odata.type", "id", "@removed"}


def _properties(definition: str) -> set[str]:
    return set(specs.graph_schema()["$defs"][definition]["properties"])


def check_contact(contact: dict[str, Any]) -> None:
    validate_graph(contact, "contact")
    if "@removed" in contact:
        assert set(contact) == TOMBSTONE_KEYS, contact
        assert contact["@removed"] == {"reason": "deleted"}
        return
    invented = {k for k in contact if k not in _properties("contact") and not k.startswith("@")}
    assert not invented, f"properties the schema does not name: {invented}"
    assert contact["@odata.etag"].startswith('W/"')
    if "changeKey" in contact:
        assert contact["@odata.etag"] == f'W/"{contact["changeKey"]}"'


def check_folder(folder: dict[str, Any]) -> None:
    validate_graph(folder, "contactFolder")
    invented = {
        k for k in folder if k not in _properties("contactFolder") and not k.startswith("@")
    }
    assert not invented, f"properties the schema does not name: {invented}"


def check_collection(body: dict[str, Any], definition: str) -> None:
    validate_graph_collection(body, definition)
    for item in body["value"]:
        check_contact(item) if definition == "contact" else check_folder(item)


def check_error(body: Any) -> str:
    errors = list(Draft202012Validator(ERROR_SCHEMA).iter_errors(body))
    assert not errors, (body, errors)
    return str(body["error"]["code"])


def token(mailbox: str | None = ALEX, **kwargs: Any) -> str:
    """A delegated token for `mailbox`, or app-only (None) with the app's permission."""
    return REGISTRY.issue(
        client_id=APP,
        tenant_id=TENANT,
        mailbox_id=mailbox,
        scopes=["Contacts.ReadWrite"],
        **kwargs,
    ).token


class Api:
    """Calls the Graph emulator over HTTPS and validates what comes back."""

    def __init__(self, sandbox: Any) -> None:
        self.base = sandbox.info["graph_url"] + "/v1.0"
        self.session = sandbox.session()
        self.bearer = token()
        self.checked: set[str] = set()

    def call(
        self,
        method: str,
        path: str,
        expect: str,
        *,
        json: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        bearer: str | None = None,
    ) -> Any:
        if json is not None and expect in ("contact",) and method in ("POST", "PATCH"):
            validate_graph(json, "contact")  # what we send is a contact, too
        sent = {"Authorization": f"Bearer {bearer or self.bearer}", **(headers or {})}
        url = path if path.startswith("http") else self.base + path
        reply = self.session.request(
            method, url, json=json, headers=sent, params=params, timeout=15
        )
        if status is not None:
            assert reply.status_code == status, reply.text[:800]
        if reply.status_code == 204:
            return None
        body = reply.json()
        if reply.status_code >= 400:
            check_error(body)
        elif expect == "contact":
            check_contact(body)
        elif expect == "folder":
            check_folder(body)
        elif expect == "contacts":
            check_collection(body, "contact")
        elif expect == "folders":
            check_collection(body, "contactFolder")
        self.checked.add(f"{expect} {reply.status_code}")
        return body


@pytest.fixture
def api(sandbox):
    sandbox.control("graph").reset()
    client = Api(sandbox)
    yield client
    client.session.close()


def _folder(api: Api, name: str) -> str:
    folders = api.call("GET", "/me/contactFolders", "folders", status=200)["value"]
    return next(f["id"] for f in folders if f["displayName"] == name)


# --------------------------------------------------------------------------- the catalogue


def test_the_contact_property_catalogue_is_the_schema():
    schema = specs.graph_schema()["$defs"]["contact"]["properties"]
    ours = set(F.CONTACT_ORDER) | F.UNWRITABLE_RELATIONS | {F.EXTENDED}
    assert ours == {k for k in schema if not k.startswith("@")}
    for name in F.STRING_PROPS:
        assert schema[name]["type"] == ["string", "null"], name
    for name in F.STRING_LIST_PROPS:
        assert schema[name]["items"] == {"type": "string"}, name
    for name in F.ADDRESS_PROPS:
        assert {"$ref": "#/$defs/physicalAddress"} in schema[name]["anyOf"], name
    assert schema["birthday"]["format"] == "date-time"
    address = specs.graph_schema()["$defs"]["physicalAddress"]["properties"]
    assert set(F.ADDRESS_KEYS) == set(address)
    email = specs.graph_schema()["$defs"]["emailAddress"]["properties"]
    assert set(email) == {"name", "address"}
    read_only = {k for k, v in schema.items() if v.get("readOnly")}
    assert read_only <= F.SERVER_PROPS | F.UNWRITABLE_RELATIONS | {F.EXTENDED}


# --------------------------------------------------------------------------- answers validate


def test_folders_validate(api):
    api.call("GET", "/me/contactFolders", "folders", status=200)
    api.call("GET", f"/users/{ALEX}/contactFolders/Contacts", "folder", status=200)
    pipeliner = _folder(api, "Pipeliner")
    api.call("GET", f"/me/contactFolders/{pipeliner}", "folder", status=200)
    api.call(
        "POST",
        f"/me/contactFolders/{pipeliner}/childFolders",
        "folder",
        json={"displayName": "Contract"},
        status=201,
    )
    children = api.call(
        "GET", f"/me/contactFolders/{pipeliner}/childFolders", "folders", status=200
    )
    assert [f["displayName"] for f in children["value"]] == ["Contract"]
    created = api.call(
        "POST", "/me/contactFolders", "folder", json={"displayName": "C2"}, status=201
    )
    api.call("PATCH", f"/me/contactFolders/{created['id']}", "folder", json={"displayName": "C3"})
    # megan's Team folder, shared with alex
    admin = token(None)
    team = next(
        f["id"]
        for f in api.call("GET", f"/users/{MEGAN}/contactFolders", "folders", bearer=admin)["value"]
        if f["displayName"] == "Team"
    )
    api.call("GET", f"/users/{MEGAN}/contactFolders/{team}", "folder", status=200)
    api.call("GET", f"/users/{MEGAN}/contactFolders/{team}/contacts", "contacts", status=200)


def test_contacts_validate_in_every_shape(api):
    pipeliner = _folder(api, "Pipeliner")
    expand = f"singleValueExtendedProperties($filter=id eq '{STAMP}' or id eq '{OTHER_PHONE}')"
    api.call("GET", "/me/contacts", "contacts", status=200)
    listed = api.call(
        "GET", f"/me/contactFolders/{pipeliner}/contacts", "contacts", params={"$expand": expand}
    )
    assert any("singleValueExtendedProperties" in c for c in listed["value"])
    api.call(
        "GET",
        f"/me/contactFolders/{pipeliner}/contacts",
        "contacts",
        params={"$select": "displayName,emailAddresses", "$top": "2"},
    )
    body = {
        "givenName": "Grace",
        "surname": "Hopper",
        "companyName": "US Navy",
        "emailAddresses": [{"name": "Grace", "address": "grace@navy.example"}],
        "businessPhones": ["+1 555 0100", "+1 555 0101"],
        "homePhones": ["+1 555 0102"],
        "mobilePhone": "+1 555 0103",
        "businessAddress": {"street": "1 Main St", "city": "Arlington", "state": "VA",
                            "postalCode": "22201", "countryOrRegion": "United States"},
        "birthday": "1906-12-09T00:00:00Z",
        "categories": ["Pioneers"],
        "personalNotes": "COBOL\nline two",
        "singleValueExtendedProperties": [{"id": STAMP, "value": "P-1"}],
    }  # fmt: skip
    created = api.call(
        "POST", f"/me/contactFolders/{pipeliner}/contacts", "contact", json=body, status=201
    )
    path = f"/me/contacts/{created['id']}"
    api.call("GET", path, "contact", status=200)
    got = api.call("GET", path, "contact", params={"$expand": expand})
    assert got["singleValueExtendedProperties"] == [{"id": STAMP, "value": "P-1"}]
    api.call("GET", path, "contact", params={"$select": "surname,businessAddress"})
    patched = api.call(
        "PATCH", path, "contact", json={"jobTitle": "Rear Admiral", "homeAddress": None}
    )
    assert patched["homeAddress"] == {} and patched["jobTitle"] == "Rear Admiral"
    by_stamp = f"singleValueExtendedProperties/Any(ep: ep/id eq '{STAMP}' and ep/value eq 'P-1')"
    found = api.call(
        "GET", f"/me/contactFolders/{pipeliner}/contacts", "contacts", params={"$filter": by_stamp}
    )
    assert [c["id"] for c in found["value"]] == [created["id"]]


def test_delta_pages_validate_with_tombstones(api):
    pipeliner = _folder(api, "Pipeliner")
    link = f"/me/contactFolders/{pipeliner}/contacts/delta"
    prefer = {"Prefer": "odata.maxpagesize=2"}
    while True:
        page = api.call("GET", link, "contacts", headers=prefer, status=200)
        if "@odata.deltaLink" in page:
            break
        link = page["@odata.nextLink"]
    victims = api.call("GET", f"/me/contactFolders/{pipeliner}/contacts", "contacts")["value"]
    api.call("DELETE", f"/me/contacts/{victims[0]['id']}", "none", status=204)
    api.call("PATCH", f"/me/contacts/{victims[1]['id']}", "contact", json={"nickName": "N"})
    page = api.call("GET", page["@odata.deltaLink"], "contacts", status=200)
    assert {"@removed" in item for item in page["value"]} == {True, False}


def test_batch_inner_bodies_validate(api):
    pipeliner = _folder(api, "Pipeliner")
    requests = [
        {"id": "new", "method": "POST", "url": f"/me/contactFolders/{pipeliner}/contacts",
         "headers": JSON,
         "body": {"givenName": "Batch", "emailAddresses": [{"address": "b@x.example"}]}},
        {"id": "list", "method": "GET", "url": f"me/contactFolders/{pipeliner}/contacts?$top=3"},
        {"id": "folders", "method": "GET", "url": "/me/contactFolders"},
        {"id": "folder", "method": "GET", "url": "/me/contactFolders/Contacts"},
        {"id": "delta", "method": "GET", "url": f"/me/contactFolders/{pipeliner}/contacts/delta"},
        {"id": "bad", "method": "POST", "url": "/me/contacts", "headers": JSON,
         "body": {"businessPhones": ["1", "2", "3"]}},
        {"id": "after", "method": "GET", "url": "/me/contacts", "dependsOn": ["bad"]},
    ]  # fmt: skip
    body = api.call("POST", "/$batch", "batch", json={"requests": requests}, status=200)
    by_id = {r["id"]: r for r in body["responses"]}
    check_contact(by_id["new"]["body"])
    check_collection(by_id["list"]["body"], "contact")
    check_collection(by_id["delta"]["body"], "contact")
    check_collection(by_id["folders"]["body"], "contactFolder")
    check_folder(by_id["folder"]["body"])
    assert check_error(by_id["bad"]["body"]) == "ErrorInvalidProperty"
    assert by_id["after"]["status"] == 424 and check_error(by_id["after"]["body"])
    created = by_id["new"]["body"]["id"]
    body = api.call(
        "POST",
        "/$batch",
        "batch",
        json={"requests": [
            {"id": "1", "method": "PATCH", "url": f"/me/contacts/{created}", "headers": JSON,
             "body": {"jobTitle": "Tester"}},
            {"id": "2", "method": "GET", "url": f"/me/contacts/{created}", "dependsOn": ["1"]},
        ]},
    )  # fmt: skip
    for response in body["responses"]:
        assert response["status"] == 200
        check_contact(response["body"])


# --------------------------------------------------------------------------- rejected like Graph


def _rejected(api: Api, method: str, path: str, status: int, **kwargs: Any) -> str:
    return check_error(api.call(method, path, "error", status=status, **kwargs))


def test_a_batch_of_21_requests_is_refused(api):
    requests = [{"id": str(i), "method": "GET", "url": "/me/contacts"} for i in range(21)]
    assert _rejected(api, "POST", "/$batch", 400, json={"requests": requests}) == "BadRequest"
    ok = api.call("POST", "/$batch", "batch", json={"requests": requests[:20]}, status=200)
    assert {r["status"] for r in ok["responses"]} == {200}


def test_array_limits_are_refused(api):
    four = [{"address": f"e{i}@x.example"} for i in range(4)]
    assert _rejected(api, "POST", "/me/contacts", 400, json={"emailAddresses": four}) == (
        "ErrorInvalidProperty"
    )
    created = api.call(
        "POST", "/me/contacts", "contact", json={"emailAddresses": four[:3]}, status=201
    )
    path = f"/me/contacts/{created['id']}"
    assert _rejected(api, "PATCH", path, 400, json={"emailAddresses": four}) == (
        "ErrorInvalidProperty"
    )
    assert _rejected(api, "PATCH", path, 400, json={"businessPhones": ["1", "2", "3"]}) == (
        "ErrorInvalidProperty"
    )
    assert _rejected(api, "PATCH", path, 400, json={"homePhones": ["1", "2", "3"]}) == (
        "ErrorInvalidProperty"
    )


def test_top_over_1000_is_refused(api):
    assert _rejected(api, "GET", "/me/contacts", 400, params={"$top": "1001"}) == "BadRequest"
    api.call("GET", "/me/contacts", "contacts", params={"$top": "1000"}, status=200)


def test_stale_if_match_is_412(api):
    created = api.call("POST", "/me/contacts", "contact", json={"givenName": "I"}, status=201)
    path = f"/me/contacts/{created['id']}"
    api.call(
        "PATCH",
        path,
        "contact",
        json={"surname": "M"},
        headers={"If-Match": created["@odata.etag"]},
    )
    code = _rejected(
        api, "PATCH", path, 412, json={"surname": "N"}, headers={"If-Match": created["@odata.etag"]}
    )
    assert code == "ErrorIrresolvableConflict"


def test_expired_token_is_401(api):
    code = _rejected(api, "GET", "/me/contacts", 401, bearer=token(lifetime=-5))
    assert code == "InvalidAuthenticationToken"


def test_app_only_token_on_me_is_400(api):
    assert _rejected(api, "GET", "/me/contactFolders", 400, bearer=token(None)) == "BadRequest"
