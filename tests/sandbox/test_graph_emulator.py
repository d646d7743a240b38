"""Behaviour of the Microsoft Graph emulator: folders, sharing, contacts, limits, extended
properties, filters, paging, delta, `$batch`, throttling, tokens and the control API.

Most tests drive one in-process emulator through werkzeug's test client (fast, no TLS), with
tokens issued straight into `contactsync_sandbox.tokens.REGISTRY` (no identity emulator needed);
registration, real concurrency and the HTTPS path run on the session sandbox. Response shapes
against the vendor schema are the contract tests' business (tests/contract/test_graph_contract.py).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.test import Client

from contactsync_sandbox.graph import GraphEmulator
from contactsync_sandbox.runner import DEFAULT_PORTS
from contactsync_sandbox.seed import default_seed
from contactsync_sandbox.tokens import REGISTRY

ALEX = "d0000000-0000-4000-8000-000000000001"
MEGAN = "d0000000-0000-4000-8000-000000000002"
NESTOR = "d0000000-0000-4000-8000-000000000003"
APP = "f0000000-0000-4000-8000-000000000001"
TENANT = "e0000000-0000-4000-8000-000000000001"
STAMP = "String {8f7d2c2e-3b0a-4d55-9a55-2f3b6c1e9a41} Name PipelinerContactId"
OTHER_PHONE = "String 0x3A1F"
JSON = {"Content-Type": "application/json"}


def token(mailbox: str | None = ALEX, scopes: Any = None, **kwargs: Any) -> str:
    if scopes is None:
        scopes = ["Contacts.ReadWrite"] if mailbox else ["https://graph.microsoft.com/.default"]
    upn = {ALEX: "alex@contoso.example", MEGAN: "megan@contoso.example"}.get(mailbox or "")
    grant = REGISTRY.issue(
        client_id=APP, tenant_id=TENANT, mailbox_id=mailbox, upn=upn, scopes=scopes, **kwargs
    )
    return grant.token


class G:
    """The API and the control API of one in-process emulator."""

    def __init__(self, emulator: GraphEmulator) -> None:
        self.emulator = emulator
        self.client = Client(emulator)
        self.bearer = token()

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        status: int | None = 200,
        headers: dict[str, str] | None = None,
        bearer: str | None = "default",
        query: Any = None,
    ) -> Any:
        sent = dict(headers or {})
        if bearer == "default":
            bearer = self.bearer
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        if path.startswith("http"):
            parts = urlsplit(path)
            path, query = parts.path, parts.query
        elif not path.startswith("/v1.0"):
            path = "/v1.0" + path
        response = self.client.open(
            path, method=method, json=json, headers=sent, query_string=query
        )
        self.last = response
        if status is not None:
            assert response.status_code == status, response.get_data(as_text=True)[:800]
        return response.json if response.get_data() else None

    def get(self, path: str, status: int = 200, **kwargs: Any) -> Any:
        return self.call("GET", path, status=status, **kwargs)

    def error(self, method: str, path: str, status: int, **kwargs: Any) -> str:
        body = self.call(method, path, status=status, **kwargs)
        inner = body["error"]["innerError"]
        assert inner["request-id"] and inner["date"] and inner["client-request-id"]
        return body["error"]["code"]

    def ctl(self, method: str, path: str, json: Any = None, status: int | None = None) -> Any:
        response = self.client.open(f"/_sandbox/graph{path}", method=method, json=json)
        if status is not None:
            assert response.status_code == status, response.get_data(as_text=True)
        else:
            assert response.status_code < 300, response.get_data(as_text=True)
        return response.json if response.get_data() else None

    def folder_id(self, name: str, mailbox: str = "alex@contoso.example") -> str:
        folders = self.ctl("GET", f"/mailboxes/{mailbox}/folders")["folders"]
        return next(f["id"] for f in folders if f["displayName"] == name)

    def contacts(self, folder: str, mailbox: str = "alex@contoso.example") -> list[dict]:
        return self.ctl("GET", f"/mailboxes/{mailbox}/folders/{folder}/contacts")["contacts"]

    def new_contact(self, folder: str = "Contacts", **props: Any) -> dict[str, Any]:
        body = {"givenName": "Grace", "surname": "Hopper", **props}
        return self.call("POST", f"/me/contactFolders/{folder}/contacts", json=body, status=201)


@pytest.fixture
def g() -> G:
    return G(GraphEmulator())


def all_pages(g: G, path: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    body = g.get(path, **kwargs)
    while True:
        items += body["value"]
        if "@odata.nextLink" not in body:
            return items
        body = g.get(body["@odata.nextLink"], **kwargs)


def delta_round(
    g: G, link: str, size: int | None = None, **kwargs: Any
) -> tuple[list[list[dict]], str]:
    headers = {"Prefer": f"odata.maxpagesize={size}"} if size else {}
    pages = []
    while True:
        body = g.get(link, headers=headers, **kwargs)
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            return pages, body["@odata.deltaLink"]
        link = body["@odata.nextLink"]


# --------------------------------------------------------------------------- registration, HTTPS


def test_registered_on_its_port_and_reachable_over_https(sandbox_reset):
    info = sandbox_reset.info
    assert DEFAULT_PORTS["graph"] == 8702
    assert info["graph_url"] == info["urls"]["graph"]
    assert info["graph_mailboxes"]["alex@contoso.example"] == ALEX
    assert set(info["graph_mailboxes"]) == {
        f"{n}@contoso.example" for n in ("alex", "megan", "nestor", "lynne")
    }
    with sandbox_reset.session() as http:
        reply = http.get(
            f"{info['graph_url']}/v1.0/users/alex@contoso.example/contactFolders/Contacts",
            headers={"Authorization": f"Bearer {token()}", "client-request-id": "abc"},
            timeout=10,
        )
    assert reply.status_code == 200 and reply.json()["displayName"] == "Contacts"
    assert reply.headers["client-request-id"] == "abc" and reply.headers["request-id"]
    assert reply.headers["Content-Type"].startswith("application/json")
    counters = sandbox_reset.control("graph").counters()["endpoints"]
    assert counters["GET /v1.0/users/{user_id}/contactFolders/{folder_id}"]["requests"] == 1


# --------------------------------------------------------------------------- folders


def test_folders_alias_children_create_and_duplicates(g):
    default = g.get("/me/contactFolders/Contacts")
    assert default["displayName"] == "Contacts"
    assert g.get("/me/contactFolders/contacts")["id"] == default["id"]  # alias, any case
    assert (
        g.get(f"/users/alex@contoso.example/contactFolders/{default['id']}")["id"] == default["id"]
    )
    listed = g.get("/me/contactFolders")["value"]
    assert [f["displayName"] for f in listed] == ["Pipeliner", "Family"]
    assert {f["parentFolderId"] for f in listed} == {default["id"]}
    assert default["parentFolderId"] not in {f["id"] for f in listed}  # the hidden root
    pipeliner = listed[0]["id"]
    assert g.get(f"/users/{ALEX}/contactFolders/{pipeliner}/childFolders")["value"] == []

    created = g.call(
        "POST",
        f"/me/contactFolders/{pipeliner}/childFolders",
        json={"displayName": "Archive"},
        status=201,
    )
    assert created["parentFolderId"] == pipeliner and created["id"].startswith("AAMk")
    assert g.get(f"/me/contactFolders/{pipeliner}/childFolders")["value"] == [
        {k: created[k] for k in ("id", "displayName", "parentFolderId")}
    ]
    dup = {"displayName": "archive"}
    assert g.error("POST", f"/me/contactFolders/{pipeliner}/childFolders", 409, json=dup) == (
        "ErrorFolderExists"
    )
    assert g.error("POST", "/me/contactFolders", 409, json={"displayName": "Pipeliner"}) == (
        "ErrorFolderExists"
    )
    top = g.call("POST", "/me/contactFolders", json={"displayName": "Archive"}, status=201)
    assert top["parentFolderId"] == default["id"]  # same name, other parent: fine
    found = g.get("/me/contactFolders", query={"$filter": "displayName eq 'pipeliner'"})
    assert [f["id"] for f in found["value"]] == [pipeliner]
    renamed = g.call("PATCH", f"/me/contactFolders/{top['id']}", json={"displayName": "Old"})
    assert renamed["displayName"] == "Old"
    g.call("DELETE", f"/me/contactFolders/{top['id']}", status=204)
    assert g.error("GET", f"/me/contactFolders/{top['id']}", 404) == "ErrorItemNotFound"
    assert g.error("DELETE", "/me/contactFolders/Contacts", 400) == "ErrorDeleteDistinguishedFolder"


def test_ids_malformed_unknown_and_of_another_mailbox(g):
    assert g.error("GET", "/me/contactFolders/nope", 400) == "ErrorInvalidIdMalformed"
    assert g.error("GET", "/me/contacts/nope", 400) == "ErrorInvalidIdMalformed"
    megan_contacts = g.folder_id("Contacts", "megan@contoso.example")
    assert g.error("GET", f"/me/contactFolders/{megan_contacts}", 404) == "ErrorItemNotFound"
    contact = g.new_contact()
    g.call("DELETE", f"/me/contacts/{contact['id']}", status=204)
    assert g.error("GET", f"/me/contacts/{contact['id']}", 404) == "ErrorItemNotFound"
    assert g.error("GET", "/users/nobody@contoso.example/contacts", 404) == "ErrorInvalidUser"
    # ids are stable across resets (deterministic seed) and look like Graph's
    again = G(GraphEmulator())
    assert again.folder_id("Pipeliner") == g.folder_id("Pipeliner")
    assert g.folder_id("Pipeliner").endswith("=")


def test_another_mailbox_is_reachable_only_through_a_shared_folder(g):
    team = g.folder_id("Team", "megan@contoso.example")
    megan_default = g.folder_id("Contacts", "megan@contoso.example")
    # Alex's delegated token: megan's Team folder is shared with alex (read only).
    folder = g.get(f"/users/megan@contoso.example/contactFolders/{team}")
    assert folder["displayName"] == "Team"
    own = {f["id"] for f in g.get("/me/contactFolders")["value"]} | {
        g.get("/me/contactFolders/Contacts")["id"]
    }
    assert folder["id"] not in own and folder["parentFolderId"] == megan_default
    shared = g.get(f"/users/{MEGAN}/contactFolders/{team}/contacts")["value"]
    assert [c["displayName"] for c in shared] == ["Ana Nowak", "Hiroshi García-Márquez"]
    assert g.get(f"/users/{MEGAN}/contacts/{shared[0]['id']}")["id"] == shared[0]["id"]
    delta = g.get(f"/users/{MEGAN}/contactFolders/{team}/contacts/delta")
    assert len(delta["value"]) == 2
    for method, path, body in [
        ("GET", f"/users/{MEGAN}/contactFolders", None),
        ("GET", f"/users/{MEGAN}/contactFolders/Contacts", None),
        ("GET", f"/users/{MEGAN}/contacts", None),
        ("GET", f"/users/{MEGAN}/contactFolders/{team}/childFolders", None),
        ("POST", f"/users/{MEGAN}/contactFolders/{team}/contacts", {"givenName": "X"}),
        ("PATCH", f"/users/{MEGAN}/contacts/{shared[0]['id']}", {"jobTitle": "X"}),
        ("DELETE", f"/users/{MEGAN}/contacts/{shared[0]['id']}", None),
        ("POST", f"/users/{MEGAN}/contactFolders", {"displayName": "Mine now"}),
    ]:
        assert g.error(method, path, 403, json=body) == "ErrorAccessDenied", (method, path)
    own_contact = g.contacts("Contacts", "megan@contoso.example")[0]["id"]
    assert g.error("GET", f"/users/{MEGAN}/contacts/{own_contact}", 403) == "ErrorAccessDenied"
    assert g.error("GET", f"/users/{NESTOR}/contactFolders/Contacts", 403) == "ErrorAccessDenied"

    # Editing rights come with the share; unsharing takes everything away.
    g.ctl("POST", f"/mailboxes/{MEGAN}/folders/Team/share", {"mailbox": ALEX, "can_edit": True})
    g.call("PATCH", f"/users/{MEGAN}/contacts/{shared[0]['id']}", json={"jobTitle": "Lead"})
    g.ctl("POST", f"/mailboxes/{MEGAN}/folders/Team/unshare", {"mailbox": "alex@contoso.example"})
    assert g.error("GET", f"/users/{MEGAN}/contactFolders/{team}", 403) == "ErrorAccessDenied"


def test_app_only_tokens_use_users_only(g):
    app = token(None)
    assert len(g.get(f"/users/{MEGAN}/contactFolders", bearer=app)["value"]) == 1
    g.call("POST", f"/users/{NESTOR}/contacts", json={"givenName": "N"}, bearer=app, status=201)
    body = g.call("GET", "/me/contacts", bearer=app, status=400)
    assert body["error"]["code"] == "BadRequest"
    assert (
        "/me request is only valid with delegated authentication flow" in body["error"]["message"]
    )
    # What the identity emulator grants for client credentials: the app's permission names.
    g.get(f"/users/{ALEX}/contacts", bearer=token(None, scopes=["Contacts.ReadWrite"]))


def test_bearer_tokens_are_checked(g):
    assert g.error("GET", "/me/contacts", 401, bearer=None) == "InvalidAuthenticationToken"
    assert g.error("GET", "/me/contacts", 401, bearer="sbx.forged") == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in g.last.headers
    expired = token(lifetime=-1)
    assert g.error("GET", "/me/contacts", 401, bearer=expired) == "InvalidAuthenticationToken"
    assert "expired" in g.last.json["error"]["message"]
    live = token()
    g.get("/me/contacts", bearer=live)
    REGISTRY.expire(live)
    assert g.error("GET", "/me/contacts", 401, bearer=live) == "InvalidAuthenticationToken"
    reader = token(scopes=["Contacts.Read"])
    g.get("/me/contacts", bearer=reader)
    assert g.error("POST", "/me/contacts", 403, bearer=reader, json={}) == "ErrorAccessDenied"
    assert g.error("GET", "/me/contacts", 403, bearer=token(scopes=["User.Read"])) == (
        "ErrorAccessDenied"
    )
    # The control API's token helper and "expire every token".
    issued = g.ctl("POST", "/tokens", {"mailbox": "megan@contoso.example"})
    assert (
        g.get("/me/contactFolders", bearer=issued["access_token"])["value"][0]["displayName"]
        == "Team"
    )
    assert g.ctl("POST", "/expire-tokens", {})["expired"] >= 1
    assert g.error("GET", "/me/contacts", 401, bearer=issued["access_token"]) == (
        "InvalidAuthenticationToken"
    )


# --------------------------------------------------------------------------- contacts


def test_create_get_defaults_and_server_properties(g):
    created = g.new_contact(emailAddresses=[{"address": "grace@navy.example"}])
    assert created["displayName"] == "Grace Hopper"  # derived when not given
    assert created["emailAddresses"] == [
        {"name": "grace@navy.example", "address": "grace@navy.example"}
    ]
    assert created["@odata.etag"] == f'W/"{created["changeKey"]}"'
    assert created["parentFolderId"] == g.folder_id("Contacts")
    assert created["createdDateTime"].endswith("Z") and created["lastModifiedDateTime"].endswith(
        "Z"
    )
    assert created["fileAs"] == "" and created["personalNotes"] == ""
    assert created["birthday"] is None and created["jobTitle"] is None
    assert created["businessPhones"] == [] and created["homeAddress"] == {}
    assert "singleValueExtendedProperties" not in created
    got = g.get(f"/me/contacts/{created['id']}")
    assert got["@odata.context"].endswith("/contacts/$entity")
    assert {k: v for k, v in got.items() if k != "@odata.context"} == {
        k: v for k, v in created.items() if k != "@odata.context"
    }
    in_folder = g.get(f"/me/contactFolders/Contacts/contacts/{created['id']}")
    assert in_folder["id"] == created["id"]
    pipeliner = g.folder_id("Pipeliner")
    assert g.error("GET", f"/me/contactFolders/{pipeliner}/contacts/{created['id']}", 404) == (
        "ErrorItemNotFound"
    )
    # Server-maintained properties in a body are ignored, unknown ones refused.
    ignored = g.new_contact(id="mine", changeKey="x", parentFolderId="y", **{"@odata.etag": "z"})
    assert ignored["id"] != "mine" and ignored["parentFolderId"] == created["parentFolderId"]
    named = g.new_contact(displayName="Amazing Grace")
    assert named["displayName"] == "Amazing Grace"


def test_patch_replaces_arrays_and_addresses_wholesale(g):
    created = g.new_contact(
        businessPhones=["+1 555 0100", "+1 555 0101"],
        businessAddress={"street": "1 Main St", "city": "Arlington"},
        emailAddresses=[
            {"name": "G", "address": "g@x.example"},
            {"name": "H", "address": "h@x.example"},
        ],
        displayName="Amazing Grace",
    )
    path = f"/me/contacts/{created['id']}"
    patched = g.call("PATCH", path, json={"businessPhones": ["+1 555 0199"]})
    # businessPhones[1] is gone: a client that wants to keep it must send the whole array.
    assert patched["businessPhones"] == ["+1 555 0199"]
    patched = g.call("PATCH", path, json={"businessAddress": {"city": "Boston"}})
    assert patched["businessAddress"] == {"city": "Boston"}
    assert len(patched["emailAddresses"]) == 2 and patched["displayName"] == "Amazing Grace"
    assert patched["changeKey"] != created["changeKey"]
    # Changing the names without sending displayName regenerates it (send it to keep it).
    patched = g.call("PATCH", path, json={"givenName": "Ada"})
    assert patched["displayName"] == "Ada Hopper"
    patched = g.call("PATCH", path, json={"surname": "Lovelace", "displayName": "Countess"})
    assert patched["displayName"] == "Countess"
    cleared = g.call("PATCH", path, json={"businessPhones": [], "jobTitle": None})
    assert cleared["businessPhones"] == [] and cleared["jobTitle"] is None


def test_if_match_and_change_keys(g):
    created = g.new_contact()
    path = f"/me/contacts/{created['id']}"
    stale = created["@odata.etag"]
    first = g.call("PATCH", path, json={"jobTitle": "Admiral"}, headers={"If-Match": stale})
    assert first["changeKey"] != created["changeKey"]
    code = g.error("PATCH", path, 412, json={"jobTitle": "x"}, headers={"If-Match": stale})
    assert code == "ErrorIrresolvableConflict"
    assert g.error("DELETE", path, 412, headers={"If-Match": created["changeKey"]}) == (
        "ErrorIrresolvableConflict"
    )
    g.call("PATCH", path, json={"jobTitle": "y"}, headers={"If-Match": first["changeKey"]})
    g.call("PATCH", path, json={"jobTitle": "z"}, headers={"If-Match": "*"})
    current = g.get(path)["@odata.etag"]
    g.call("DELETE", path, headers={"If-Match": current}, status=204)


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        (
            {"emailAddresses": [{"address": f"e{i}@x.example"} for i in range(4)]},
            "ErrorInvalidProperty",
            "The multi value property EmailAddresses has 4 entries, that exceeds the max allowed "
            "value of 3.",
        ),
        ({"businessPhones": ["1", "2", "3"]}, "ErrorInvalidProperty", "BusinessPhones has 3"),
        ({"homePhones": ["1", "2", "3"]}, "ErrorInvalidProperty", "HomePhones has 3"),
        ({"favouriteColour": "red"}, "RequestBodyRead", "favouriteColour"),
        ({"businessPhones": None}, "RequestBodyRead", "null"),
        ({"jobTitle": 5}, "RequestBodyRead", "Edm.String"),
        ({"birthday": "1990-01-01"}, "RequestBodyRead", "DateTimeOffset"),
        ({"emailAddresses": [{"address": "a@x", "type": "work"}]}, "RequestBodyRead", "type"),
        ({"homeAddress": {"line2": "x"}}, "RequestBodyRead", "line2"),
        (
            {"singleValueExtendedProperties": [{"id": "Nonsense", "value": "1"}]},
            "ErrorInvalidExtendedProperty",
            "Nonsense",
        ),
    ],
)
def test_writes_graph_refuses_are_refused(g, body, code, needle):
    assert g.error("POST", "/me/contacts", 400, json=body) == code
    assert needle in g.last.json["error"]["message"]
    contact = g.new_contact()
    assert g.error("PATCH", f"/me/contacts/{contact['id']}", 400, json=body) == code
    assert g.get(f"/me/contacts/{contact['id']}")["changeKey"] == contact["changeKey"]


def test_limits_allow_exactly_the_maximum(g):
    contact = g.new_contact(
        emailAddresses=[{"address": f"e{i}@x.example"} for i in range(3)],
        businessPhones=["1", "2"],
        homePhones=["3", "4"],
        personalNotes="n" * 32_768,
        jobTitle="t" * 255,
        birthday="1990-01-01T12:00:00+02:00",
    )
    assert contact["birthday"] == "1990-01-01T10:00:00Z"


def test_string_lengths_are_limited_only_by_the_labelled_sandbox_option(g):
    """Graph documents no length limit on contact strings: by default a long value is stored.
    The `string_limits` option (invented limits, for clients that must cope with a 400)
    refuses single-line strings over 255 characters and notes over 32,768."""
    long_title, long_notes = "x" * 1000, "n" * 40_000
    stored = g.new_contact(jobTitle=long_title, personalNotes=long_notes)
    assert (stored["jobTitle"], stored["personalNotes"]) == (long_title, long_notes)
    assert g.ctl("GET", "/storage") == {
        "string_limits": False,
        "compact_empty_entries": False,
        "folder_scoped_item_urls": True,
        "deleted_items": False,
    }
    g.ctl("POST", "/storage", {"string_limits": True})
    for body, needle in [
        ({"jobTitle": "x" * 256}, "255"),
        ({"personalNotes": "x" * 32_769}, "32768"),
        ({"emailAddresses": [{"address": "a" * 256}]}, "255"),
        ({"singleValueExtendedProperties": [{"id": OTHER_PHONE, "value": "1" * 32_769}]}, "32768"),
    ]:
        assert g.error("POST", "/me/contacts", 400, json=body) == "ErrorInvalidProperty"
        assert needle in g.last.json["error"]["message"]
        assert "string_limits" in g.last.json["error"]["message"]
    g.new_contact(jobTitle="t" * 255, personalNotes="n" * 32_768)
    g.ctl("POST", "/storage", {"nonsense": True}, status=400)
    g.emulator.reset()
    assert g.ctl("GET", "/storage")["string_limits"] is False


def test_empty_entries_are_kept_or_compacted_by_the_storage_option(g):
    """Graph documents nothing about empty entries in a contact's lists: by default they stay
    where they were written; `compact_empty_entries` drops them, as an Outlook client re-saving
    the contact does (API writes and the owner's edits alike)."""
    lists = {
        "emailAddresses": [{"name": "", "address": ""}, {"address": "b@x.example"}],
        "businessPhones": ["", "+1 2"],
        "homePhones": ["", "+1 3"],
    }
    kept = g.new_contact(**lists)
    assert kept["emailAddresses"][0] == {"name": "", "address": ""}
    assert kept["businessPhones"] == ["", "+1 2"] and kept["homePhones"] == ["", "+1 3"]
    g.ctl("POST", "/storage", {"compact_empty_entries": True})
    compacted = g.new_contact(**lists)
    assert compacted["emailAddresses"] == [{"name": "b@x.example", "address": "b@x.example"}]
    assert compacted["businessPhones"] == ["+1 2"] and compacted["homePhones"] == ["+1 3"]
    owner = g.ctl(
        "PATCH", f"/mailboxes/alex@contoso.example/contacts/{kept['id']}", {"homePhones": ["", "9"]}
    )
    assert owner["homePhones"] == ["9"]


# --------------------------------------------------------------------------- extended properties


def test_extended_properties_round_trip_and_expand_filter(g):
    created = g.new_contact(
        singleValueExtendedProperties=[
            {"id": STAMP, "value": "10000000-0000-4000-8000-000000000002"},
            {"id": OTHER_PHONE, "value": "+1 555 0142"},
        ]
    )
    assert "singleValueExtendedProperties" not in created
    path = f"/me/contacts/{created['id']}"
    assert "singleValueExtendedProperties" not in g.get(path)
    one = g.get(path, query={"$expand": f"singleValueExtendedProperties($filter=id eq '{STAMP}')"})
    assert one["singleValueExtendedProperties"] == [
        {"id": STAMP, "value": "10000000-0000-4000-8000-000000000002"}
    ]
    both = g.get(
        path,
        query={
            "$expand": f"singleValueExtendedProperties($filter=id eq '{STAMP}' or "
            f"id eq '{OTHER_PHONE.lower()}')",
            "$select": "displayName",
        },
    )
    assert both["singleValueExtendedProperties"] == [
        {"id": STAMP, "value": "10000000-0000-4000-8000-000000000002"},
        {"id": "String 0x3a1f", "value": "+1 555 0142"},  # tags come back lower-cased
    ]
    # PATCH upserts by id (case-insensitively) and leaves the others alone.
    g.call(
        "PATCH",
        path,
        json={"singleValueExtendedProperties": [{"id": "string 0x3A1F", "value": "+1 555 0143"}]},
    )
    both = g.get(
        path,
        query={
            "$expand": f"singleValueExtendedProperties($filter=id eq '{STAMP}' or "
            f"id eq '{OTHER_PHONE}')"
        },
    )
    assert [p["value"] for p in both["singleValueExtendedProperties"]] == [
        "10000000-0000-4000-8000-000000000002",
        "+1 555 0143",
    ]
    none = g.get(
        path, query={"$expand": "singleValueExtendedProperties($filter=id eq 'String 0x3001')"}
    )
    assert "singleValueExtendedProperties" not in none
    assert g.error("GET", path, 400, query={"$expand": "singleValueExtendedProperties"}) == (
        "BadRequest"
    )


# --------------------------------------------------------------------------- filters, paging


def test_filters_by_email_and_by_extended_property(g):
    pipeliner = g.folder_id("Pipeliner")
    base = f"/me/contactFolders/{pipeliner}/contacts"
    found = g.get(
        base, query={"$filter": "emailAddresses/any(a:a/address eq 'kai.taylor@proseware.example')"}
    )["value"]
    assert [c["displayName"] for c in found] == ["Kai Taylor"]  # stored as Kai.Taylor@Proseware…
    assert (
        g.get(
            "/me/contacts",
            query={"$filter": "emailAddresses/any(a:a/address eq 'kai.taylor@proseware.example')"},
        )["value"]
        == []
    )  # only the folder asked for
    stamped = g.new_contact(
        pipeliner, singleValueExtendedProperties=[{"id": STAMP, "value": "P-42"}]
    )
    g.new_contact(pipeliner, singleValueExtendedProperties=[{"id": STAMP, "value": "P-43"}])
    hit = g.get(
        base,
        query={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{STAMP}' and "
            "ep/value eq 'P-42')"
        },
    )["value"]
    assert [c["id"] for c in hit] == [stamped["id"]]
    quoted = g.new_contact(emailAddresses=[{"address": "o'brien@x.example"}])
    hit = g.get(
        "/me/contacts",
        query={"$filter": "emailAddresses/any(x: x/address eq 'O''Brien@x.example')"},
    )["value"]
    assert [c["id"] for c in hit] == [quoted["id"]]
    # An edit moves the index along.
    g.call("PATCH", f"/me/contacts/{quoted['id']}", json={"emailAddresses": []})
    assert (
        g.get(
            "/me/contacts",
            query={"$filter": "emailAddresses/any(x: x/address eq 'o''brien@x.example')"},
        )["value"]
        == []
    )
    assert g.error("GET", base, 400, query={"$filter": "displayName eq 'Kai Taylor'"}) == (
        "ErrorInvalidUrlQueryFilter"
    )


def test_select_trims_but_keeps_id_and_etag(g):
    pipeliner = g.folder_id("Pipeliner")
    body = g.get(
        f"/me/contactFolders/{pipeliner}/contacts", query={"$select": "givenName,emailAddresses"}
    )
    for item in body["value"]:
        assert set(item) == {"@odata.etag", "id", "givenName", "emailAddresses"}
    one = g.get(f"/me/contacts/{body['value'][0]['id']}", query={"$select": "surname"})
    assert set(one) == {"@odata.context", "@odata.etag", "id", "surname"}
    assert g.error("GET", "/me/contacts", 400, query={"$select": "nope"}) == (
        "RequestBroker--ParseUri"
    )
    assert g.error("GET", "/me/contacts", 400, query={"$orderby": "displayName"}) == "BadRequest"


def test_top_skip_and_next_links(g):
    folder = g.call("POST", "/me/contactFolders", json={"displayName": "Bulk"}, status=201)["id"]
    g.ctl("POST", "/generate", {"mailbox": "alex@contoso.example", "folder": folder, "count": 25})
    path = f"/me/contactFolders/{folder}/contacts"
    first = g.get(path)
    assert len(first["value"]) == 10 and "$skip=10" in first["@odata.nextLink"]  # default 10
    assert first["@odata.nextLink"].startswith("http")
    everything = all_pages(g, path, query={"$top": "7", "$select": "displayName"})
    assert len(everything) == 25 and len({c["id"] for c in everything}) == 25
    assert set(everything[0]) == {"@odata.etag", "id", "displayName"}  # $select survives paging
    assert len(g.get(path, query={"$top": "1000"})["value"]) == 25
    for bad in ("1001", "0", "-1", "ten"):
        assert g.error("GET", path, 400, query={"$top": bad}) == "BadRequest"


# --------------------------------------------------------------------------- delta


def test_delta_first_round_then_only_changes(g):
    pipeliner = g.folder_id("Pipeliner")
    family = g.folder_id("Family")
    start = f"/me/contactFolders/{pipeliner}/contacts/delta"
    pages, link = delta_round(g, start, size=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert g.last.headers["Preference-Applied"] == "odata.maxpagesize=2"
    seen = {c["id"]: c for page in pages for c in page}
    assert len(seen) == 5 and "$deltatoken=" in link

    pages, link = delta_round(g, link)  # nothing changed
    assert pages == [[]]

    contacts = g.contacts(pipeliner)
    kai, chloe, wei, siobhan = contacts[1], contacts[2], contacts[0], contacts[3]
    created = g.new_contact(pipeliner)
    g.call("PATCH", f"/me/contacts/{kai['id']}", json={"jobTitle": "CMO"})
    g.call("DELETE", f"/me/contacts/{chloe['id']}", status=204)
    g.ctl("POST", f"/mailboxes/{ALEX}/contacts/{wei['id']}/move", {"folder": family})
    g.ctl("PATCH", f"/mailboxes/{ALEX}/contacts/{siobhan['id']}", {"jobTitle": "Head of Buying"})
    pages, link = delta_round(g, link)
    items = [i for page in pages for i in page]
    changed = {i["id"]: i for i in items if "@removed" not in i}
    removed = {i["id"]: i for i in items if "@removed" in i}
    assert set(changed) == {created["id"], kai["id"], siobhan["id"]}
    assert changed[kai["id"]]["jobTitle"] == "CMO"
    assert set(removed) == {chloe["id"], wei["id"]}  # deleted, and moved out
    assert removed[chloe["id"]] == {
        "@odata.type": "#microsoft.graph.contact",
        "id": chloe["id"],
        "@removed": {"reason": "deleted"},
    }
    # The family folder's own delta sees Wei arrive.
    fam_pages, _ = delta_round(g, f"/me/contactFolders/{family}/contacts/delta")
    assert wei["id"] in {c["id"] for c in fam_pages[0]}
    # $select given on the first request holds for the whole chain.
    pages, link = delta_round(g, start + "?$select=displayName,jobTitle", size=3)
    assert all(set(c) == {"@odata.etag", "id", "displayName", "jobTitle"} for c in pages[0])
    g.call("PATCH", f"/me/contacts/{kai['id']}", json={"jobTitle": "CEO"})
    pages, _ = delta_round(g, link)
    assert pages == [[{"@odata.etag": pages[0][0]["@odata.etag"], "id": kai["id"],
                       "displayName": "Kai Taylor", "jobTitle": "CEO"}]]  # fmt: skip


def test_delta_page_size_is_capped_at_200_and_next_links_repeat(g):
    folder = g.call("POST", "/me/contactFolders", json={"displayName": "Big"}, status=201)["id"]
    g.ctl("POST", "/generate", {"mailbox": ALEX, "folder": folder, "count": 450})
    body = g.get(
        f"/me/contactFolders/{folder}/contacts/delta", headers={"Prefer": "odata.maxpagesize=500"}
    )
    assert len(body["value"]) == 200
    assert g.last.headers["Preference-Applied"] == "odata.maxpagesize=200"
    again = g.get(body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=500"})
    same = g.get(body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=500"})
    assert [c["id"] for c in again["value"]] == [c["id"] for c in same["value"]]
    pages, _ = delta_round(g, body["@odata.nextLink"], size=500)
    assert sum(len(p) for p in pages) == 250
    default = g.get(f"/me/contactFolders/{folder}/contacts/delta")
    assert len(default["value"]) == 10 and "Preference-Applied" not in g.last.headers


def test_delta_replays_items_when_asked(g):
    pipeliner = g.folder_id("Pipeliner")
    assert g.ctl("GET", "/delta")["replay_rate"] == 0
    g.ctl("POST", "/delta", {"replay_rate": 1, "seed": 7})
    pages, _ = delta_round(g, f"/me/contactFolders/{pipeliner}/contacts/delta", size=2)
    ids = [c["id"] for page in pages for c in page]
    assert len(ids) == 5 + len(pages) and len(set(ids)) == 5  # one replay per page
    g.ctl("POST", "/delta", {"replay_rate": 0})
    assert g.ctl("POST", "/delta", {"replay_rate": 2}, status=400)


def test_expired_and_unknown_delta_tokens_answer_410(g):
    pipeliner = g.folder_id("Pipeliner")
    start = f"/me/contactFolders/{pipeliner}/contacts/delta"
    _, link = delta_round(g, start)
    family_link = delta_round(g, f"/me/contactFolders/{g.folder_id('Family')}/contacts/delta")[1]
    first = g.get(start, headers={"Prefer": "odata.maxpagesize=2"})
    g.ctl("POST", "/expire-delta-tokens", {"mailbox": "alex@contoso.example", "folder": pipeliner})
    assert g.error("GET", link, 410) == "syncStateNotFound"
    assert g.error("GET", first["@odata.nextLink"], 410) == "syncStateNotFound"
    delta_round(g, family_link)  # other folders keep their tokens
    g.get(start)  # a fresh round works at once
    assert g.error("GET", start, 410, query={"$deltatoken": "made-up"}) == "syncStateNotFound"
    g.ctl("POST", "/expire-delta-tokens", {})
    assert g.error("GET", family_link, 410) == "syncStateNotFound"
    # A token of one folder is no token for another.
    _, link = delta_round(g, start)
    other = link.replace(pipeliner, g.folder_id("Family"))
    assert g.error("GET", other, 410) == "syncStateNotFound"


# --------------------------------------------------------------------------- $batch


def _req(rid: str, method: str, url: str, body: Any = None, **extra: Any) -> dict[str, Any]:
    item = {"id": rid, "method": method, "url": url, **extra}
    if body is not None:
        item["body"], item["headers"] = body, JSON
    return item


def test_batch_runs_relative_requests_with_per_request_status(g):
    requests = [_req(str(i), "POST", "/me/contacts", {"givenName": f"B{i}"}) for i in range(19)]
    # Unordered requests run in parallel: the listing waits for the last create by dependsOn.
    requests.append(_req("list", "GET", "me/contacts?$top=50&$select=givenName", dependsOn=["18"]))
    body = g.call("POST", "/$batch", json={"requests": requests})
    by_id = {r["id"]: r for r in body["responses"]}
    assert [r["id"] for r in body["responses"]] == [r["id"] for r in requests]
    assert {by_id[str(i)]["status"] for i in range(19)} == {201}
    assert by_id["0"]["body"]["givenName"] == "B0"
    assert by_id["0"]["headers"]["Content-Type"].startswith("application/json")
    assert by_id["list"]["status"] == 200 and len(by_id["list"]["body"]["value"]) == 21
    contact = by_id["0"]["body"]["id"]
    body = g.call(
        "POST",
        "/$batch",
        json={
            "requests": [
                _req("a", "PATCH", f"/me/contacts/{contact}", {"businessPhones": ["1", "2", "3"]}),
                _req("b", "DELETE", f"/me/contacts/{contact}", dependsOn=["a"]),
                _req("c", "GET", f"/me/contacts/{contact}", dependsOn=["b"]),
                _req("d", "GET", f"/users/{ALEX}/contacts/{contact}"),
                _req("e", "GET", "/me/nowhere"),
                _req("f", "DELETE", f"/me/contacts/{contact}", headers={"If-Match": 'W/"x"'}),
            ]
        },
    )
    status = {r["id"]: r["status"] for r in body["responses"]}
    assert status == {"a": 400, "b": 424, "c": 424, "d": 200, "e": 404, "f": 412}
    errors = {r["id"]: r["body"]["error"]["code"] for r in body["responses"] if r["status"] >= 400}
    assert errors["a"] == "ErrorInvalidProperty" and errors["b"] == "FailedDependency"
    g.get(f"/me/contacts/{contact}")  # never deleted


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"requests": [_req(str(i), "GET", "/me/contacts") for i in range(21)]}, "20"),
        ({"requests": []}, "no requests"),
        ({}, "requests"),
        (
            {"requests": [_req("1", "GET", "/me/contacts"), _req("1", "GET", "/me/contacts")]},
            "unique",
        ),
        (
            {
                "requests": [
                    _req("1", "GET", "/me/contacts", dependsOn=["2"]),
                    _req("2", "GET", "/me"),
                ]
            },
            "depends",
        ),
        (
            {"requests": [{"id": "1", "method": "POST", "url": "/me/contacts", "body": {}}]},
            "Content-Type",
        ),
    ],
)
def test_batch_payloads_graph_refuses(g, payload, needle):
    assert g.error("POST", "/$batch", 400, json=payload) == "BadRequest"
    assert needle in g.last.json["error"]["message"]


def test_batch_needs_a_valid_token_and_inner_requests_are_authorized(g):
    assert g.error("POST", "/$batch", 401, bearer=token(lifetime=-1), json={"requests": []}) == (
        "InvalidAuthenticationToken"
    )
    body = g.call(
        "POST",
        "/$batch",
        json={"requests": [_req("1", "GET", "/me/contacts")]},
        bearer=token(None),
    )
    assert body["responses"][0]["status"] == 400  # /me with an app-only token
    body = g.call(
        "POST", "/$batch", json={"requests": [_req("1", "GET", f"/users/{NESTOR}/contacts")]}
    )
    assert body["responses"][0]["status"] == 403


def test_batch_inner_requests_are_throttled_with_their_own_retry_after(g):
    g.ctl("POST", "/throttle", {"requests": 5, "window_seconds": 2})
    requests = [_req(str(i), "POST", "/me/contacts", {"givenName": f"T{i}"}) for i in range(8)]
    team = g.folder_id("Team", "megan@contoso.example")
    requests.append(_req("megan", "GET", f"/users/{MEGAN}/contactFolders/{team}"))
    body = g.call("POST", "/$batch", json={"requests": requests})
    status = [r["status"] for r in body["responses"]]
    # Unordered requests run in parallel: which five get the budget is not fixed.
    assert sorted(status[:8]) == [201] * 5 + [429] * 3
    assert status[8] == 200  # the other mailbox has its own budget
    throttled = next(r for r in body["responses"] if r["status"] == 429)
    assert throttled["body"]["error"]["code"] == "ApplicationThrottled"
    wait = float(throttled["headers"]["Retry-After"])
    assert 0 < wait <= 2
    stats = g.ctl("GET", "/stats")["mailboxes"]
    assert stats[ALEX]["throttled_budget"] == 3 and stats[ALEX]["requests"] == 5


# --------------------------------------------------------------------------- throttling over HTTPS


def test_more_than_four_concurrent_requests_to_one_mailbox_get_429(sandbox_reset):
    graph = sandbox_reset.control("graph")
    url = sandbox_reset.info["graph_url"]
    graph.latency(0.6, path_prefix=f"/v1.0/users/{ALEX}/")
    bearer = {"Authorization": f"Bearer {token()}"}
    results: dict[str, list[Any]] = {"alex": [], "megan": []}

    app_only = {"Authorization": f"Bearer {token(None)}"}

    def hit(who: str, path: str) -> None:
        with sandbox_reset.session() as http:
            headers = bearer if who == "alex" else app_only
            reply = http.get(url + path, headers=headers, timeout=10)
            results[who].append((reply.status_code, reply.headers.get("Retry-After"), reply.json()))

    threads = [
        threading.Thread(target=hit, args=("alex", f"/v1.0/users/{ALEX}/contactFolders"))
        for _ in range(5)
    ]
    threads.append(
        threading.Thread(target=hit, args=("megan", f"/v1.0/users/{MEGAN}/contactFolders/Contacts"))
    )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _, _ in results["alex"])
    assert statuses.count(429) >= 1 and statuses.count(200) >= 1, statuses
    throttled = next(r for r in results["alex"] if r[0] == 429)
    assert throttled[2]["error"]["code"] == "ApplicationThrottled"
    assert throttled[2]["error"]["message"] == "Application is over its MailboxConcurrency limit."
    assert throttled[1] == "1"
    assert [r[0] for r in results["megan"]] == [200]  # another mailbox is unaffected
    stats = graph.session.get(f"{graph.control_url}/graph/stats", timeout=10).json()["mailboxes"]
    assert stats[ALEX]["max_in_flight"] == 4 and stats[ALEX]["throttled_concurrency"] >= 1
    endpoint = graph.endpoint("GET /v1.0/users/{user_id}/contactFolders")
    assert endpoint["statuses"].get("429", 0) >= 1  # the framework counters see them
    graph.clear_faults()


def _batches_at_once(sandbox: Any, batches: list[list[dict[str, Any]]]) -> list[list[int]]:
    """POST the batches concurrently (one app, app-only); their inner statuses."""
    url = sandbox.info["graph_url"] + "/v1.0/$batch"
    bearer = {"Authorization": f"Bearer {token(None)}"}
    answers: list[list[int]] = [[] for _ in batches]

    def post(n: int) -> None:
        with sandbox.session() as http:
            reply = http.post(url, json={"requests": batches[n]}, headers=bearer, timeout=30)
            answers[n] = [r["status"] for r in reply.json()["responses"]]

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _creates(tag: str, n: int, user: str = ALEX, chained: bool = False) -> list[dict[str, Any]]:
    path = f"/users/{user}/contacts"
    requests = [_req(f"{tag}{i}", "POST", path, {"givenName": f"{tag}{i}"}) for i in range(n)]
    if chained:
        for before, item in itertools.pairwise(requests):
            item["dependsOn"] = [before["id"]]
    return requests


def test_a_batch_runs_four_requests_at_once_each_holding_a_slot(sandbox_reset):
    """Graph's throttling page, "Outlook service limits for JSON batching": a batch's requests
    without dependsOn run up to four at a time, each within the mailbox's four concurrent
    requests; with dependsOn, one at a time. So two unordered batches at once are throttled,
    while four chained ones are not."""
    graph = sandbox_reset.control("graph")
    stats_url = f"{graph.control_url}/graph/stats"

    def stats() -> dict[str, Any]:
        return graph.session.get(stats_url, timeout=10).json()["mailboxes"][ALEX]

    graph._call("POST", "/graph/throttle", json={"request_seconds": 0.05})
    [alone] = _batches_at_once(sandbox_reset, [_creates("a", 8)])
    assert alone == [201] * 8 and stats()["max_in_flight"] == 4  # the old model: 1

    two = _batches_at_once(sandbox_reset, [_creates("b", 20), _creates("c", 20)])
    assert sum(s == 429 for batch in two for s in batch) > 0
    assert stats()["throttled_concurrency"] > 0 and stats()["max_in_flight"] == 4

    before = stats()["throttled_concurrency"]
    chained = _batches_at_once(
        sandbox_reset, [_creates(f"d{n}", 5, chained=True) for n in range(4)]
    )
    assert chained == [[201] * 5] * 4 and stats()["throttled_concurrency"] == before

    # Per mailbox, another mailbox's batch does not count; the per-app reading counts it.
    mixed = [_creates("e", 8), _creates("f", 8, user=MEGAN)]
    graph._call("POST", "/graph/throttle", json={"concurrency_scope": "mailbox"})
    assert _batches_at_once(sandbox_reset, mixed) == [[201] * 8, [201] * 8]
    graph._call("POST", "/graph/throttle", json={"concurrency_scope": "app"})
    per_app = _batches_at_once(sandbox_reset, [_creates("g", 20), _creates("h", 20, user=MEGAN)])
    assert sum(s == 429 for batch in per_app for s in batch) > 0


def test_request_budget_answers_429_with_fractional_retry_after(sandbox_reset):
    graph = sandbox_reset.control("graph")
    url = sandbox_reset.info["graph_url"]
    throttle = f"{graph.control_url}/graph/throttle"
    settings = graph.session.post(throttle, json={"requests": 3, "window_seconds": 1}).json()
    assert settings["requests"] == 3 and settings["concurrency"] == 4
    bearer = {"Authorization": f"Bearer {token()}"}
    with sandbox_reset.session() as http:
        codes = [
            http.get(f"{url}/v1.0/me/contacts", headers=bearer, timeout=10).status_code
            for _ in range(3)
        ]
        refused = http.get(f"{url}/v1.0/me/contacts", headers=bearer, timeout=10)
        other = http.get(
            f"{url}/v1.0/users/{MEGAN}/contactFolders/Contacts",
            headers={"Authorization": f"Bearer {token(None)}"},
            timeout=10,
        )
        assert codes == [200, 200, 200]
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "ApplicationThrottled"
        wait = refused.headers["Retry-After"]
        assert "." in wait and 0 < float(wait) <= 1
        assert other.status_code == 200
        time.sleep(float(wait) + 0.05)
        assert http.get(f"{url}/v1.0/me/contacts", headers=bearer, timeout=10).status_code == 200
    assert graph.session.post(throttle, json={"requests": None}).json()["requests"] is None
    refused = graph.session.post(throttle, json={"requests": 0})
    assert refused.status_code == 400 and "positive" in refused.json()["error"]["message"]


# --------------------------------------------------------------------------- control API


def test_owner_actions_bump_change_keys_and_show_in_the_api(g):
    pipeliner = g.folder_id("Pipeliner")
    created = g.ctl(
        "POST",
        f"/mailboxes/alex@contoso.example/folders/{pipeliner}/contacts",
        {
            "givenName": "Owen",
            "surname": "Owner",
            "birthday": "1970-01-02T00:00:00Z",
            "categories": ["VIP"],
            "homeAddress": {"city": "Oslo"},
            "businessPhones": ["+47 1", "+47 2"],
            "singleValueExtendedProperties": [{"id": OTHER_PHONE, "value": "+47 3"}],
        },
        status=201,
    )
    api = g.get(f"/me/contacts/{created['id']}")
    assert api["changeKey"] == created["changeKey"] and api["businessPhones"] == ["+47 1", "+47 2"]
    edited = g.ctl("PATCH", f"/mailboxes/{ALEX}/contacts/{created['id']}", {"nickName": "O"})
    assert edited["changeKey"] != created["changeKey"]
    assert g.get(f"/me/contacts/{created['id']}")["nickName"] == "O"
    assert g.ctl("GET", f"/mailboxes/{ALEX}/contacts/{created['id']}")["categories"] == ["VIP"]
    assert g.ctl("POST", f"/mailboxes/{ALEX}/folders/Pipeliner/contacts",
                 {"homePhones": ["1", "2", "3"]}, status=400)  # fmt: skip
    folder = g.ctl(
        "POST",
        f"/mailboxes/{ALEX}/folders",
        {"displayName": "Sub", "parent": "Pipeliner"},
        status=201,
    )
    assert folder["path"] == "Contacts/Pipeliner/Sub"
    moved = g.ctl(
        "POST", f"/mailboxes/{ALEX}/contacts/{created['id']}/move", {"folder": folder["id"]}
    )
    assert moved["parentFolderId"] == folder["id"] and moved["changeKey"] != edited["changeKey"]
    g.ctl("DELETE", f"/mailboxes/{ALEX}/contacts/{created['id']}")
    assert g.error("GET", f"/me/contacts/{created['id']}", 404) == "ErrorItemNotFound"
    boxes = g.ctl("GET", "/mailboxes")["mailboxes"]
    assert [b["user_principal_name"] for b in boxes][:2] == [
        "alex@contoso.example",
        "megan@contoso.example",
    ]


def test_seed_state_round_trip_and_default_contents(g):
    state = g.emulator.snapshot()
    twin = GraphEmulator()
    twin.seed(state)
    assert twin.snapshot() == state
    whole = default_seed()
    twin.seed(whole)  # the whole default seed works too
    alex = next(b for b in state["mailboxes"] if b["id"] == ALEX)
    folders = {f["displayName"]: f for f in alex["contacts_folder"]["childFolders"]}
    emails = {
        e["address"].lower()
        for c in folders["Pipeliner"]["contacts"]
        for e in c.get("emailAddresses", [])
    }
    assert {"wei.schroder@mail.example", "kai.taylor@proseware.example"} <= emails
    megan = next(b for b in state["mailboxes"] if b["id"] == MEGAN)
    team = megan["contacts_folder"]["childFolders"][0]
    assert team["shared_with"] == [{"mailbox": "alex@contoso.example", "can_edit": False}]
    with pytest.raises(ValueError, match="EmailAddresses"):
        too_many = {"contacts": [{"emailAddresses": [{"address": "a@x.example"}] * 4}]}
        box = {"id": "m", "user_principal_name": "m@x.example", "contacts_folder": too_many}
        GraphEmulator().seed({"mailboxes": [box]})


def test_generate_fifty_thousand_and_read_them_back(g):
    """How fast the sandbox does this is a benchmark figure, not asserted here (load varies)."""
    folder = g.call("POST", "/me/contactFolders", json={"displayName": "50k"}, status=201)["id"]
    report = g.ctl("POST", "/generate", {"mailbox": ALEX, "folder": folder, "count": 50_000})
    assert report["created"] == 50_000 and report["folder_contacts"] == 50_000
    first = g.get(f"/me/contactFolders/{folder}/contacts", query={"$top": "1000"})
    assert len(first["value"]) == 1000 and "@odata.nextLink" in first
    pages, link = delta_round(g, f"/me/contactFolders/{folder}/contacts/delta?$select=id", 200)
    assert len(pages) == 250 and sum(len(p) for p in pages) == 50_000
    last = g.get(f"/me/contacts/{report['last_id']}")
    g.call("PATCH", f"/me/contacts/{last['id']}", json={"jobTitle": "Needle"})
    pages, _ = delta_round(g, link)
    assert [[c["id"] for c in p] for p in pages] == [[last["id"]]]  # only what changed
    address = last["emailAddresses"][0]["address"].upper()
    hit = g.get(
        f"/me/contactFolders/{folder}/contacts",
        query={"$filter": f"emailAddresses/any(a:a/address eq '{address}')"},
    )["value"]
    assert [c["id"] for c in hit] == [last["id"]]


def test_a_thousand_creates_through_fifty_batches(g):
    folder = g.call("POST", "/me/contactFolders", json={"displayName": "Fast"}, status=201)["id"]
    for batch in range(50):
        requests = [
            _req(str(i), "POST", f"/me/contactFolders/{folder}/contacts",
                 {"givenName": f"B{batch}", "surname": str(i),
                  "emailAddresses": [{"address": f"b{batch}.{i}@x.example"}]})
            for i in range(20)
        ]  # fmt: skip
        body = g.call("POST", "/$batch", json={"requests": requests})
        assert {r["status"] for r in body["responses"]} == {201}
    assert len(g.contacts(folder)) == 1000


def test_a_contact_url_s_folder_segment_scopes_it_or_not_by_the_labelled_option(g):
    """Graph lists `contactFolders/{id}/contacts/{id}` beside `contacts/{id}` for get, update and
    delete and says nothing of a contact not in the folder named: by default the folder scopes
    it (404); with `folder_scoped_item_urls` false the segment is ignored, and a PATCH or DELETE
    reaches the contact wherever it is. `contacts/{id}` finds it anywhere in the mailbox."""
    family = g.ctl("POST", f"/mailboxes/{ALEX}/folders", {"displayName": "Filed"}, status=201)
    contact = g.new_contact(g.folder_id("Pipeliner"))
    g.ctl("POST", f"/mailboxes/{ALEX}/contacts/{contact['id']}/move", {"folder": "Filed"})
    pipeliner = g.folder_id("Pipeliner")
    via_folder = f"/me/contactFolders/{pipeliner}/contacts/{contact['id']}"
    assert g.error("GET", via_folder, 404) == "ErrorItemNotFound"
    assert g.error("PATCH", via_folder, 404, json={"jobTitle": "x"}) == "ErrorItemNotFound"
    assert g.get(f"/me/contacts/{contact['id']}")["parentFolderId"] == family["id"]
    g.ctl("POST", "/storage", {"folder_scoped_item_urls": False})
    assert g.get(via_folder)["parentFolderId"] == family["id"]
    assert g.call("PATCH", via_folder, json={"jobTitle": "Written"})["jobTitle"] == "Written"
    g.call("DELETE", via_folder, status=204)
    assert g.contacts("Filed") == []


def test_an_owner_s_delete_moves_to_deleted_items_with_the_labelled_option(g):
    """By default the owner's delete removes the contact; with `deleted_items` it goes to Deleted
    Items as the Outlook client does: still readable by id, under a folder that is no contact
    folder of `Contacts`; delta of its folder reports it removed either way."""
    contact = g.new_contact(g.folder_id("Pipeliner"))
    g.ctl("POST", "/storage", {"deleted_items": True})
    g.ctl("DELETE", f"/mailboxes/{ALEX}/contacts/{contact['id']}")
    found = g.get(f"/me/contacts/{contact['id']}")
    trash = g.get(f"/me/contactFolders/{found['parentFolderId']}")
    assert trash["displayName"] == "Deleted Items"
    children = g.get("/me/contactFolders/Contacts/childFolders")["value"]
    assert trash["id"] not in [f["id"] for f in children]
    assert trash["parentFolderId"] != g.get("/me/contactFolders/Contacts")["id"]
    g.ctl("DELETE", f"/mailboxes/{ALEX}/contacts/{contact['id']}")  # emptied from there: gone
    assert g.error("GET", f"/me/contacts/{contact['id']}", 404) == "ErrorItemNotFound"
