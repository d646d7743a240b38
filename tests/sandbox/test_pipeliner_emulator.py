"""Behaviour of the Pipeliner emulator: paging, filters, versions, batches, sharing, control API.

Most tests drive one in-process emulator through werkzeug's test client (fast, no TLS); the
registration and the HTTPS/auth path are checked on the session sandbox. Response shapes are
the contract tests' business (tests/contract/test_pipeliner_contract.py).
"""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

import pytest
from werkzeug.test import Client

from contactsync_sandbox.pipeliner import PipelinerEmulator, demo_contacts
from contactsync_sandbox.pipeliner.timefmt import parse_us
from contactsync_sandbox.runner import DEFAULT_PORTS
from contactsync_sandbox.seed import default_seed

SPACE = "5a5a5a5a-0000-4000-8000-000000000001"
P = f"/api/v100/rest/spaces/{SPACE}/entities"
AUTH = {
    "Authorization": "Basic "
    + base64.b64encode(b"contactsync-sandbox:sandbox-app-password-not-a-secret").decode()
}
ALEX = "c0000000-0000-4000-8000-000000000001"
MEGAN = "c0000000-0000-4000-8000-000000000002"
NESTOR = "c0000000-0000-4000-8000-000000000003"
LYNNE = "c0000000-0000-4000-8000-000000000004"
EUROPE = "a0000000-0000-4000-8000-000000000001"
AMERICAS = "a0000000-0000-4000-8000-000000000002"
CONTOSO = "60000000-0000-4000-8000-000000000001"
FABRIKAM = "60000000-0000-4000-8000-000000000002"


class Pl:
    """The API and the control API of one in-process emulator."""

    def __init__(self, emulator: PipelinerEmulator) -> None:
        self.emulator = emulator
        self.client = Client(emulator)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        status: int | None = 200,
        headers: Any = None,
    ) -> Any:
        response = self.client.open(
            P + path,
            method=method,
            query_string=params,
            json=json,
            headers=AUTH if headers is None else headers,
        )
        if status is not None:
            assert response.status_code == status, response.get_data(as_text=True)[:800]
        return response.json

    def get(self, path: str, status: int | None = 200, **params: Any) -> Any:
        return self.call("GET", path, params=params, status=status)

    def data(self, path: str, **params: Any) -> Any:
        return self.get(path, **params)["data"]

    def all(self, path: str = "/Contacts", **params: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = params.pop("after", None)
        while True:
            extra = {"after": cursor} if cursor else {}
            body = self.get(path, first=100, **params, **extra)
            rows += body["data"]
            if not body["page_info"]["has_next_page"]:
                return rows
            cursor = body["page_info"]["end_cursor"]

    def ids(self, path: str = "/Contacts", **params: Any) -> list[str]:
        return [row["id"] for row in self.all(path, **params)]

    def contact(self, cid: str, **params: Any) -> dict[str, Any]:
        return self.data(f"/Contacts/{cid}", **params)

    def ctl(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        response = self.client.open(f"/_sandbox/pipeliner{path}", method=method, json=json)
        assert response.status_code == status, response.get_data(as_text=True)
        return response.json

    def seed(self, contacts: list[dict[str, Any]], **extra: Any) -> None:
        data = copy.deepcopy(default_seed()["pipeliner"])
        data.pop("demo_contacts")
        data.update(contacts=contacts, **extra)
        response = self.client.post("/_sandbox/seed", json=data)
        assert response.status_code == 200, response.get_data(as_text=True)


@pytest.fixture(scope="module")
def emulator():
    return PipelinerEmulator()


@pytest.fixture
def pl(emulator):
    emulator.reset()
    return Pl(emulator)


def _create(pl: Pl, **fields: Any) -> dict[str, Any]:
    body = {"owner_id": ALEX, "first_name": "Grace", "last_name": "Hopper", **fields}
    return pl.call("POST", "/Contacts", json=body, status=201)["data"]


def _us(text: str) -> int:
    return parse_us(text)


# --------------------------------------------------------------------------- registration, auth


def test_registered_in_the_runner_with_its_info(sandbox):
    info = sandbox.info
    assert DEFAULT_PORTS["pipeliner"] == 8701
    assert info["pipeliner_url"] == info["urls"]["pipeliner"]
    assert info["pipeliner_url"].startswith("https://127.0.0.1:")
    assert info["pipeliner_space_id"] == SPACE
    assert info["pipeliner_api_username"] == "contactsync-sandbox"
    control = sandbox.control("pipeliner")
    control.reset()
    with sandbox.session() as http:
        url = f"{info['pipeliner_url']}/api/v100/rest/spaces/{SPACE}/entities/Contacts"
        auth = (info["pipeliner_api_username"], info["pipeliner_api_password"])
        assert http.get(url, auth=auth, timeout=10).status_code == 200
        assert http.get(f"{url}/nope", auth=auth, timeout=10).status_code == 404
        assert http.get(url, auth=("contactsync-sandbox", "x"), timeout=10).status_code == 401
    endpoints = control.counters()["endpoints"]
    assert endpoints[f"GET {P.replace(SPACE, '{space_id}')}/Contacts"]["statuses"] == {
        "200": 1,
        "401": 1,
    }
    assert endpoints[f"GET {P.replace(SPACE, '{space_id}')}/Contacts/{{id}}"]["requests"] == 1
    listed = control.session.get(f"{control.control_url}", timeout=10).json()["control_routes"]
    assert "POST /_sandbox/pipeliner/users/<user_id>/contacts" in listed


def test_authentication_and_space(pl):
    assert pl.call("GET", "/Contacts", status=401, headers={})["name"] == "ERROR_UNAUTHORIZED"
    basic = {"Authorization": "Basic " + base64.b64encode(b"contactsync-sandbox:no").decode()}
    assert pl.call("GET", "/Contacts", headers=basic, status=401)["http_status"] == 401
    unicode = {
        "Authorization": "Basic " + base64.b64encode("contactsync-sandbox:pä".encode()).decode()
    }
    assert pl.call("GET", "/Contacts", headers=unicode, status=401)["code"] == 101
    bearer = {"Authorization": "Bearer abc"}
    assert pl.call("GET", "/Contacts", headers=bearer, status=401)["code"] == 101
    other = pl.client.get(P.replace(SPACE, "someone-else") + "/Contacts", headers=AUTH)
    assert other.status_code == 404 and other.json["name"] == "ERROR_SPACE_NOT_FOUND"


# --------------------------------------------------------------------------- paging


def test_paging_by_id_visits_every_contact_once(pl):
    state = pl.client.get("/_sandbox/state").json
    alive = sorted(c["id"] for c in state["contacts"] if not c.get("is_deleted"))
    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        body = pl.get("/Contacts", first=37, **({"after": cursor} if cursor else {}))
        pages.append(body)
        seen += [c["id"] for c in body["data"]]
        if not body["page_info"]["has_next_page"]:
            break
        cursor = body["page_info"]["end_cursor"]
    assert seen == alive  # default order: id; no duplicates, no gaps
    assert len(pages) == -(-len(alive) // 37)
    assert pages[0]["page_info"]["has_previous_page"] is False
    assert pages[1]["page_info"]["has_previous_page"] is True
    assert len(pl.data("/Contacts")) == 30  # default page size
    # `before` + `last` walk backwards from a cursor.
    back = pl.get("/Contacts", last=37, before=pages[1]["page_info"]["start_cursor"])
    assert [c["id"] for c in back["data"]] == [c["id"] for c in pages[0]["data"]]
    assert back["page_info"]["has_next_page"] is True
    first_then_last = pl.data("/Contacts", first=10, last=3)
    assert [c["id"] for c in first_then_last] == alive[7:10]


@pytest.mark.parametrize("value", ["101", "0", "-1", "ten", "1000"])
def test_page_size_outside_1_to_100_is_refused(pl, value):
    error = pl.get("/Contacts", status=400, first=value)
    assert error["name"] == "ERROR_PARAMETER_INVALID" and "[first]" in error["message"]


def test_paging_while_contacts_change(pl):
    """order-by=modified: a contact changed behind the cursor is read again (never lost);
    contacts nobody touches are read exactly once; deleted ones vanish; new ones appear."""
    before = {c["id"]: c for c in pl.all()}
    params = {"order-by": "modified", "first": 40}
    first_page = pl.get("/Contacts", **params)
    seen = [c["id"] for c in first_page["data"]]
    ordered = sorted(before.values(), key=lambda c: (_us(c["modified"]), c["id"]))
    already, later, doomed = seen[5], ordered[-5]["id"], ordered[-2]["id"]
    assert later not in seen and doomed not in seen and doomed != later
    pl.ctl("PATCH", f"/users/{MEGAN}/contacts/{already}", {"phone2": "+1 555 0001"})
    pl.ctl("PATCH", f"/users/{MEGAN}/contacts/{later}", {"phone2": "+1 555 0002"})
    pl.ctl("DELETE", f"/users/{MEGAN}/contacts/{doomed}")
    new = pl.ctl(
        "POST", f"/users/{MEGAN}/contacts", {"first_name": "Late", "last_name": "Comer"}, 201
    )
    versions: dict[str, list[int]] = {}
    for row in first_page["data"]:
        versions.setdefault(row["id"], []).append(row["revision"])
    cursor = first_page["page_info"]["end_cursor"]
    while cursor:
        body = pl.get("/Contacts", after=cursor, **params)
        for row in body["data"]:
            versions.setdefault(row["id"], []).append(row["revision"])
        cursor = body["page_info"]["end_cursor"] if body["page_info"]["has_next_page"] else None
    assert set(versions) == (set(before) - {doomed}) | {new["id"]}
    assert len(versions[already]) == 2 and versions[already][-1] > versions[already][0]
    assert len(versions[later]) == 1 and versions[later][0] > before[later]["revision"]
    assert all(len(v) == 1 for cid, v in versions.items() if cid != already)

    # The default id order never repeats a contact, whatever changes.
    page = pl.get("/Contacts", first=50)
    pl.ctl("PATCH", f"/users/{ALEX}/contacts/{page['data'][3]['id']}", {"phone2": "2"})
    rest = pl.ids(after=page["page_info"]["end_cursor"])
    assert not set(rest) & {c["id"] for c in page["data"]}


# --------------------------------------------------------------------------- filters, order


FILTER_SEED = [
    {
        "id": "10000000-0000-4000-8000-0000000000c1",
        "owner_id": ALEX,
        "first_name": "Anna",
        "email1": "Anna.Berg@Contoso.example",
        "gender": 2,
        "modified": "2026-01-01T10:00:00Z",
    },
    {
        "id": "10000000-0000-4000-8000-0000000000c2",
        "owner_id": ALEX,
        "first_name": "anna",
        "email1": "anna@fabrikam.example",
        "gender": 1,
        "share_mode": 1,
        "modified": "2026-01-02T10:00:00Z",
    },
    {
        "id": "10000000-0000-4000-8000-0000000000c3",
        "owner_id": MEGAN,
        "first_name": "Bob",
        "gender": 1,
        "share_mode": 2,
        "modified": "2026-01-03T10:00:00Z",
    },
    {
        "id": "10000000-0000-4000-8000-0000000000c4",
        "owner_id": MEGAN,
        "first_name": "Zoë",
        "email1": "zoe@contoso.example",
        "gender": 3,
        "share_mode": 3,
        "picture_id": "0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e",
        "modified": "2026-01-04T10:00:00Z",
    },
]


@pytest.mark.parametrize(
    ("field", "op", "value", "expected"),
    [
        ("first_name", None, "Anna", "1"),
        ("first_name", "eq", "Anna", "1"),
        ("first_name", "ieq", "ANNA", "12"),
        ("first_name", "not-eq", "Anna", "234"),
        ("first_name", "not-ieq", "anna", "34"),
        ("email1", "contains", "contoso", "4"),
        ("email1", "icontains", "contoso", "14"),
        ("email1", "starts", "anna", "2"),
        ("email1", "istarts", "anna", "12"),
        ("email1", "ends", ".example", "124"),
        ("email1", "iends", "CONTOSO.EXAMPLE", "14"),
        ("picture_id", "null", None, "123"),
        ("picture_id", "not-null", None, "4"),
        ("email1", "empty", "", "3"),
        ("email1", "not-empty", "", "124"),
        ("gender", "gt", "1", "14"),
        ("gender", "gte", "2", "14"),
        ("gender", "lt", "2", "23"),
        ("gender", "lte", "1", "23"),
        ("share_mode", "between", "1,2", "23"),
        ("share_mode", None, "3", "4"),
        ("is_archived", None, "false", "1234"),
        ("owner_id", None, MEGAN, "34"),
        ("modified", "gt", "2026-01-02T10:00:00Z", "34"),
        ("modified", "gte", "2026-01-02 10:00:00", "234"),
        ("modified", "lte", "2026-01-02T11:00:00+01:00", "12"),
        ("modified", "lt", "2026-01-02", "1"),
        ("modified", "eq", "2026-01-02T10:00:00.000Z", "2"),
        ("modified", "between", "2026-01-01T12:00:00Z,2026-01-03T10:00:00Z", "23"),
    ],
)
def test_filter_operators(pl, field, op, value, expected):
    pl.seed(FILTER_SEED)
    params = {} if value is None else {f"filter[{field}]": value}
    if op:
        params[f"filter-op[{field}]"] = op
    got = pl.ids(**params)
    assert got == [f"10000000-0000-4000-8000-0000000000c{n}" for n in expected]
    # The same filter under a descending order on the filtered field gives the same rows.
    if field in ("modified", "gender", "share_mode"):
        assert sorted(pl.ids(**params, **{"order-by": f"-{field}"})) == got


def test_filters_combine_and_bad_filters_are_refused(pl):
    pl.seed(FILTER_SEED)
    both = {"filter[first_name]": "anna", "filter-op[first_name]": "ieq", "filter[gender]": "1"}
    assert pl.ids(**both) == ["10000000-0000-4000-8000-0000000000c2"]
    for params, fragment in [
        ({"filter[modified]": "2026-01-02T10:00:00 00:00"}, "not a valid datetime"),  # raw '+'
        ({"filter[gender]": "two"}, "not a valid int"),
        ({"filter[is_archived]": "yes"}, "not a valid bool"),
        ({"filter[gender]": "1", "filter-op[gender]": "contains"}, "text fields only"),
        ({"filter-op[email1]": "gte"}, "needs filter[email1]"),
        ({"filter[share_mode]": "1", "filter-op[share_mode]": "between"}, "two values"),
        ({"filter[sharing_clients]": "x"}, "cannot filter"),
        ({"filter": "x"}, "filter[<field>]"),
        ({"filter-op[email1]": "regex", "filter[email1]": "x"}, "unknown operator"),
    ]:
        error = pl.get("/Contacts", status=400, **params)
        assert fragment in error["message"], (params, error)


def test_order_by(pl):
    rows = pl.all(**{"order-by": "-modified"})
    stamps = [_us(r["modified"]) for r in rows]
    assert stamps == sorted(stamps, reverse=True)
    rows = pl.all(**{"order-by": "share_mode,-last_name"})
    keys = [(r["share_mode"], r["last_name"], r["id"]) for r in rows]
    assert keys == sorted(keys, key=lambda k: (k[0], _Desc(k[1]), k[2]))
    by_mode = pl.all(**{"order-by": "share_mode"})  # ties broken by id
    assert [(r["share_mode"], r["id"]) for r in by_mode] == sorted(
        (r["share_mode"], r["id"]) for r in by_mode
    )
    cursor = pl.get("/Contacts", first=5, **{"order-by": "modified"})["page_info"]["end_cursor"]
    mixed = pl.get("/Contacts", status=400, after=cursor, **{"order-by": "share_mode,created"})
    assert "invalid cursor" in mixed["message"]
    assert pl.get("/Contacts", status=400, **{"order-by": "owner"})["code"] == 117


class _Desc:
    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value


def test_load_only_and_expand(pl):
    rows = pl.data("/Contacts", first=5, **{"load-only": "email1,modified"})
    assert all(set(r) == {"id", "email1", "modified"} for r in rows)
    nested = pl.data(
        "/Contacts",
        first=100,
        expand="owner,account_relations.account",
        **{"load-only": "owner.email,account_relations,first_name"},
    )
    assert all(set(r) == {"id", "owner", "account_relations", "first_name"} for r in nested)
    assert all(set(r["owner"]) == {"id", "email"} for r in nested)
    linked = next(r for r in nested if r["account_relations"])
    assert linked["account_relations"][0]["account"]["name"]
    unexpanded = pl.data("/Contacts", first=1, **{"load-only": "owner.email"})[0]
    assert isinstance(unexpanded["owner"], str)
    assert "cannot expand" in pl.get("/Contacts", status=400, expand="unit")["message"]
    assert "unknown field" in pl.get("/Contacts", status=400, expand="boss")["message"]


# --------------------------------------------------------------------------- versions, deletes


def test_soft_delete_and_restore_bump_modified_and_revision(pl):
    created = _create(pl)
    cid = created["id"]
    pl.call("DELETE", f"/Contacts/{cid}")
    assert cid not in pl.ids()
    pl.get(f"/Contacts/{cid}", status=404)
    deleted = pl.contact(cid, **{"include-deleted": "true"})
    assert deleted["is_deleted"] is True
    assert deleted["revision"] > created["revision"]
    assert _us(deleted["modified"]) > _us(created["modified"])
    listed = {c["id"]: c for c in pl.all(**{"include-deleted": "true"})}
    assert listed[cid]["is_deleted"] is True
    assert pl.ids(**{"include-deleted": "true", "filter[is_deleted]": "true"}) == sorted(
        c for c, row in listed.items() if row["is_deleted"]
    )
    pl.call("DELETE", f"/Contacts/{cid}", status=404)  # already deleted
    assert pl.call("POST", "/Contacts/batch-restore", json=[cid])["data"] == [cid]
    restored = pl.contact(cid)
    assert restored["is_deleted"] is False and restored["revision"] > deleted["revision"]
    again = pl.call("POST", "/Contacts/batch-restore", json=[cid])["data"]
    assert again == [cid] and pl.contact(cid)["revision"] == restored["revision"]  # no-op


def test_delete_protected_contacts_are_refused(pl):
    protected, other = _create(pl), _create(pl, first_name="Other")
    pl.ctl("POST", f"/contacts/{protected['id']}/delete-protection", {"is_delete_protected": True})
    assert pl.contact(protected["id"])["is_delete_protected"] is True
    error = pl.call("DELETE", f"/Contacts/{protected['id']}", status=422)
    assert error["name"] == "ERROR_ENTITY_DELETE_PROTECTED"
    ids = [other["id"], protected["id"]]
    all_or_nothing = pl.call("POST", "/Contacts/batch-delete", json=ids, status=422)
    assert all_or_nothing["message"].startswith("[item 1]")
    assert other["id"] in pl.ids()  # rolled back: nothing deleted
    partial = pl.call("POST", "/Contacts/batch-delete", params={"rollback-method": 1}, json=ids)
    assert partial["data"][0] == other["id"]
    assert partial["data"][1]["http_status"] == 422
    assert other["id"] not in pl.ids() and protected["id"] in pl.ids()


def test_batch_modify_rollback_0_versus_1(pl):
    a, b = _create(pl), _create(pl, first_name="B")
    count = len(pl.ids())
    items = [
        {"id": a["id"], "phone1": "+1 555 1111"},
        {"owner_id": ALEX, "first_name": "New"},
        {"id": b["id"], "share_mode": 7},  # invalid enum
    ]
    refused = pl.call("POST", "/Contacts/batch-modify", json=items, status=400)
    assert refused["message"].startswith("[item 2] [share_mode]")
    assert pl.contact(a["id"])["revision"] == a["revision"] and len(pl.ids()) == count
    result = pl.call("POST", "/Contacts/batch-modify", params={"rollback-method": "1"}, json=items)
    saved, created, error = result["data"]
    assert saved == a["id"] and pl.contact(a["id"])["phone1"] == "+1 555 1111"
    assert pl.contact(created)["first_name"] == "New" and len(pl.ids()) == count + 1
    assert error["success"] is False and error["code"] == 117
    assert pl.contact(b["id"])["revision"] == b["revision"]
    too_many = [{"id": a["id"]}] * 101
    assert (
        "at most 100"
        in pl.call("POST", "/Contacts/batch-modify", json=too_many, status=400)["message"]
    )
    assert pl.call("POST", "/Contacts/batch-modify", json=[])["data"] == []
    assert pl.call("POST", "/Contacts/batch-delete", json="x", status=400)["code"] == 117


def test_writes_preserve_unmapped_and_custom_fields(pl):
    created = _create(
        pl,
        phone3="+1 555 0199",
        email4="four@example.test",
        email5="five@example.test",
        cf_birthday_note="likes 🎂",
        cf_score=7,
    )
    updated = pl.call("PATCH", f"/Contacts/{created['id']}", json={"phone1": "+1 555 0100"})
    data = updated["data"]
    assert (data["phone3"], data["email4"], data["email5"]) == (
        "+1 555 0199",
        "four@example.test",
        "five@example.test",
    )
    assert data["cf_birthday_note"] == "likes 🎂" and data["cf_score"] == 7
    batch = [{"id": created["id"], "cf_score": 8, "email1": "g@example.test"}]
    pl.call("POST", "/Contacts/batch-modify", json=batch)
    again = pl.contact(created["id"])
    assert again["cf_score"] == 8 and again["phone3"] == "+1 555 0199"
    assert pl.ids(**{"filter[cf_birthday_note]": "likes", "filter-op[cf_birthday_note]": "starts"})
    bad = pl.call("PATCH", f"/Contacts/{created['id']}", json={"cf_x": {"a": 1}}, status=400)
    assert "[cf_x]" in bad["message"]


def test_noop_update_changes_no_version_and_names_are_required(pl):
    created = _create(pl)
    same = pl.call("PATCH", f"/Contacts/{created['id']}", json={"first_name": "Grace"})["data"]
    assert same["revision"] == created["revision"] and same["modified"] == created["modified"]
    error = pl.call(
        "PATCH", f"/Contacts/{created['id']}", json={"first_name": "", "last_name": " "}, status=422
    )
    assert error["name"] == "ERROR_ENTITY_VALIDATION"
    only_last = pl.call(
        "POST", "/Contacts", json={"owner_id": LYNNE, "last_name": "Solo"}, status=201
    )
    assert only_last["data"]["unit_id"] == AMERICAS  # the owner's default unit
    assert only_last["data"]["formatted_name"] == "Solo"


def test_archived_contacts_cannot_be_edited_until_reactivated(pl):
    created = _create(pl)
    pl.call("PATCH", f"/Contacts/{created['id']}", json={"is_archived": True})
    refused = pl.call("PATCH", f"/Contacts/{created['id']}", json={"phone1": "1"}, status=422)
    assert "archived" in refused["message"]
    back = pl.call(
        "PATCH", f"/Contacts/{created['id']}", json={"is_archived": False, "phone1": "1"}
    )
    assert back["data"]["phone1"] == "1" and back["data"]["is_archived"] is False


def test_a_linked_contacts_job_title_is_its_account_position(pl):
    """Editing a linked contact's job title changes the account relation's position, not the
    hidden Quick Account Position, and the other way round (the create-contact tutorial)."""
    created = _create(
        pl,
        position="Quick title",
        account_relations=[{"account_id": CONTOSO, "is_primary": True, "position": "CTO"}],
    )
    cid = created["id"]
    assert (created["account_position"], created["position"]) == ("CTO", "Quick title")
    edited = pl.call("PATCH", f"/Contacts/{cid}", json={"account_position": "CEO"})["data"]
    assert (edited["account_position"], edited["position"]) == ("CEO", "Quick title")
    relation = pl.contact(cid, expand="account_relations")["account_relations"][0]
    assert relation["position"] == "CEO" and edited["revision"] > created["revision"]
    hidden = pl.call("PATCH", f"/Contacts/{cid}", json={"position": "Other quick"})["data"]
    assert (hidden["account_position"], hidden["position"]) == ("CEO", "Other quick")
    loose = _create(pl, position="Buyer")  # no primary account: the quick position shows
    assert loose["account_position"] == "Buyer"
    moved = pl.call("PATCH", f"/Contacts/{loose['id']}", json={"account_position": "Lead"})
    assert moved["data"]["position"] == "Lead" == moved["data"]["account_position"]


def test_required_fields_follow_the_validation_level(pl):
    """A space's required fields: level 0 (the default) checks every field of the contact, 2
    only the fields a request sends, 4 only system fields (API parameters page)."""
    required = ["cf_region", "phone1"]
    assert (
        pl.ctl("POST", "/settings", {"contact_required_fields": required})[
            "contact_required_fields"
        ]
        == required
    )
    body = {"owner_id": ALEX, "first_name": "Vera"}
    refused = pl.call("POST", "/Contacts", json=body, status=422)
    assert "[cf_region]" in refused["message"] and refused["name"] == "ERROR_ENTITY_VALIDATION"
    level2 = {"validation-level": 2}
    created = pl.call("POST", "/Contacts", json=body, params=level2, status=201)["data"]
    cid = created["id"]
    pl.call("PATCH", f"/Contacts/{cid}", json={"city": "Oslo"}, status=422)
    pl.call("PATCH", f"/Contacts/{cid}", json={"city": "Oslo"}, params=level2)
    # Level 2 still checks what the request sends.
    cleared = {"phone1": ""}
    pl.call("PATCH", f"/Contacts/{cid}", json=cleared, params=level2, status=422)
    pl.call("PATCH", f"/Contacts/{cid}", json=cleared, params={"validation-level": 4})
    batch = pl.call(
        "POST",
        "/Contacts/batch-modify",
        json=[{"owner_id": ALEX, "first_name": "Batch"}, {"id": cid, "city": "Bergen"}],
        params={"rollback-method": 1, "validation-level": 2},
    )["data"]
    assert all(isinstance(item, str) for item in batch)
    pl.ctl("POST", "/settings", {"contact_required_fields": ["title", "gender"]}, 400)
    pl.ctl("POST", "/settings", {"contact_required_fields": []})


# --------------------------------------------------------------------------- relations


def test_primary_account_relation_clears_the_others_and_sets_primary_account(pl):
    created = _create(pl, quick_account_name="Contoso (typed)")
    cid = created["id"]
    first = pl.call(
        "POST",
        "/ContactAccountRelations",
        json={"contact_id": cid, "account_id": CONTOSO, "is_primary": True, "position": "CTO"},
        status=201,
    )["data"]
    linked = pl.contact(cid, expand="primary_account")
    assert linked["primary_account"]["name"] == "Contoso Ltd"
    assert linked["account_position"] == "CTO" and linked["revision"] > created["revision"]
    second = pl.call(
        "POST",
        "/ContactAccountRelations",
        json={"contact_id": cid, "account_id": FABRIKAM, "is_primary": True},
        status=201,
    )["data"]
    relations = {
        r["id"]: r for r in pl.all("/ContactAccountRelations", **{"filter[contact_id]": cid})
    }
    assert relations[first["id"]]["is_primary"] is False
    assert relations[first["id"]]["revision"] > first["revision"]
    assert relations[second["id"]]["is_primary"] is True
    again = pl.contact(cid)
    assert again["primary_account"].endswith(f"/Accounts/{FABRIKAM}")
    assert again["revision"] > linked["revision"]
    assert len(again["account_relations"]) == 2
    duplicate = {"contact_id": cid, "account_id": FABRIKAM, "is_primary": False}
    pl.call("POST", "/ContactAccountRelations", json=duplicate, status=422)
    gone = {
        "contact_id": cid,
        "account_id": "60000000-0000-4000-8000-000000000007",
        "is_primary": True,
    }
    assert (
        "doesn't exist"
        in pl.call("POST", "/ContactAccountRelations", json=gone, status=422)["message"]
    )


def test_sharing_changes_bump_the_contact_unless_configured_off(pl):
    cid = _create(pl)["id"]

    def revision() -> int:
        return pl.contact(cid)["revision"]

    start = revision()
    share = pl.call(
        "POST",
        "/ContactSharingClientRelations",
        json={"contact_id": cid, "client_id": MEGAN},
        status=201,
    )["data"]
    assert share["role"] == 1
    after_share = revision()
    assert after_share > start
    pl.call("PATCH", f"/ContactSharingClientRelations/{share['id']}", json={"role": 2})
    after_role = revision()
    assert after_role > after_share
    pl.call(
        "POST",
        "/ContactSharingSalesUnitRelations",
        json={"contact_id": cid, "unit_id": AMERICAS, "role": 2},
        status=201,
    )
    after_unit = revision()
    assert after_unit > after_role
    pl.call("DELETE", f"/ContactSharingClientRelations/{share['id']}")
    after_unshare = revision()
    assert after_unshare > after_unit and pl.contact(cid)["sharing_clients"] == []
    pl.ctl("POST", "/settings", {"sharing_bumps_contact": False})
    pl.call(
        "POST",
        "/ContactSharingClientRelations",
        json={"contact_id": cid, "client_id": NESTOR},
        status=201,
    )
    assert revision() == after_unshare
    assert len(pl.contact(cid)["sharing_clients"]) == 1


def test_whether_a_delete_moves_modified_is_a_switch(pl):
    # Undocumented by the vendor: both readings are served (the product must heal either way).
    kept = _create(pl)
    pl.call("DELETE", f"/Contacts/{kept['id']}")
    bumped = pl.contact(kept["id"], **{"include-deleted": "true"})
    assert bumped["is_deleted"] and _us(bumped["modified"]) > _us(kept["modified"])

    pl.ctl("POST", "/settings", {"delete_bumps_modified": False})
    quiet = _create(pl)
    pl.call("POST", "/Contacts/batch-delete", json=[quiet["id"]])
    after = pl.contact(quiet["id"], **{"include-deleted": "true"})
    assert after["is_deleted"]
    assert (after["modified"], after["revision"]) == (quiet["modified"], quiet["revision"])
    since = {"filter[modified]": quiet["modified"], "filter-op[modified]": "gt"}
    assert quiet["id"] not in pl.ids(**{"include-deleted": "true"}, **since)


def test_deleted_contacts_can_be_purged_after_a_while(pl):
    gone, kept = _create(pl), _create(pl, first_name="Ada")
    pl.ctl("POST", "/settings", {"purge_deleted_after": 3600})
    pl.call("DELETE", f"/Contacts/{gone['id']}")
    assert gone["id"] in pl.ids(**{"include-deleted": "true"})
    pl.ctl("POST", "/clock", {"advance_seconds": 3599})
    assert gone["id"] in pl.ids(**{"include-deleted": "true"})
    pl.ctl("POST", "/clock", {"advance_seconds": 2})
    listed = pl.ids(**{"include-deleted": "true"})
    assert gone["id"] not in listed and kept["id"] in listed
    pl.get(f"/Contacts/{gone['id']}", status=404)
    pl.ctl("POST", "/settings", {"purge_deleted_after": -1}, status=400)


def test_contact_inputs_replace_relation_sets(pl):
    created = _create(
        pl,
        sharing_clients=[{"client_id": MEGAN, "role": 2}],
        sharing_units=[{"unit_id": AMERICAS}],
        account_relations=[{"account_id": CONTOSO, "is_primary": True}],
        account_position="Buyer",
    )
    cid = created["id"]
    shares = pl.contact(cid, expand="sharing_clients,account_relations")
    assert [(s["client_id"], s["role"]) for s in shares["sharing_clients"]] == [(MEGAN, 2)]
    assert shares["account_relations"][0]["position"] == "Buyer"
    assert shares["position"] == ""  # account_position went to the primary relation
    keep = shares["sharing_clients"][0]["id"]
    body = {"sharing_clients": [{"id": keep}, {"client_id": NESTOR, "role": 1}]}
    pl.call("PATCH", f"/Contacts/{cid}", json=body)
    assert {
        s["client_id"] for s in pl.contact(cid, expand="sharing_clients")["sharing_clients"]
    } == {
        MEGAN,
        NESTOR,
    }
    pl.call("PATCH", f"/Contacts/{cid}", json={"sharing_clients": [], "sharing_units": []})
    emptied = pl.contact(cid)
    assert emptied["sharing_clients"] == [] and emptied["sharing_units"] == []
    twice = {"sharing_clients": [{"client_id": MEGAN}, {"client_id": MEGAN}]}
    pl.call("PATCH", f"/Contacts/{cid}", json=twice, status=422)
    foreign = {"sharing_clients": [{"id": "40000000-0000-4000-8000-000000000001"}]}
    pl.call("PATCH", f"/Contacts/{cid}", json=foreign, status=422)
    tags = {"tags": [{"id": "https://x/TagRelations/1"}]}
    assert (
        "does not model" in pl.call("PATCH", f"/Contacts/{cid}", json=tags, status=422)["message"]
    )


# --------------------------------------------------------------------------- control API


def test_control_api_acts_as_a_pipeliner_user(pl):
    created = pl.ctl(
        "POST", f"/users/{MEGAN}/contacts", {"first_name": "Ivy", "email1": "ivy@x.example"}, 201
    )
    cid = created["id"]
    assert created["owner_id"] == MEGAN and created["modified_by_user"] == created["modified"]
    edited = pl.ctl("PATCH", f"/users/{ALEX}/contacts/{cid}", {"phone4": "+44 7700 900000"})
    assert (
        edited["revision"] > created["revision"]
        and edited["modified_by_user"] == edited["modified"]
    )
    api_edit = pl.call("PATCH", f"/Contacts/{cid}", json={"phone5": "1"})["data"]
    assert api_edit["modified_by_user"] == edited["modified_by_user"]  # API writes are not users'
    owned = pl.ctl("POST", f"/users/{NESTOR}/contacts/{cid}/owner", {"owner_id": ALEX})
    assert owned["owner_id"] == ALEX and owned["revision"] > api_edit["revision"]
    shared = pl.ctl("POST", f"/users/{ALEX}/contacts/{cid}/share", {"client_id": LYNNE, "role": 1})
    assert len(shared["sharing_clients"]) == 1 and shared["revision"] > owned["revision"]
    promoted = pl.ctl(
        "POST", f"/users/{ALEX}/contacts/{cid}/share", {"client_id": LYNNE, "role": 2}
    )
    assert promoted["revision"] > shared["revision"]
    relation = pl.contact(cid, expand="sharing_clients")["sharing_clients"][0]
    assert relation["role"] == 2
    unit = pl.ctl("POST", f"/users/{ALEX}/contacts/{cid}/share", {"unit_id": AMERICAS, "role": 1})
    assert len(unit["sharing_units"]) == 1
    unshared = pl.ctl("POST", f"/users/{ALEX}/contacts/{cid}/unshare", {"client_id": LYNNE})
    assert unshared["sharing_clients"] == [] and unshared["revision"] > unit["revision"]
    pl.ctl("POST", f"/users/{ALEX}/contacts/{cid}/unshare", {"unit_id": AMERICAS})
    deleted = pl.ctl("DELETE", f"/users/{ALEX}/contacts/{cid}")
    assert deleted["is_deleted"] is True
    restored = pl.ctl("POST", f"/users/{ALEX}/contacts/{cid}/restore")
    assert restored["is_deleted"] is False and restored["revision"] > deleted["revision"]
    raw = pl.ctl("GET", f"/contacts/{cid}")
    assert raw["owner_id"] == ALEX and len(raw["sharing_clients"]) == 1  # deleted relation kept
    assert raw["sharing_clients"][0]["is_deleted"] is True
    # Refusals of the control API use its own error format.
    assert pl.ctl("POST", f"/users/{ALEX}/contacts/{cid}/unshare", {"client_id": LYNNE}, 404)
    assert pl.ctl("POST", "/users/c0000000-0000-4000-8000-00000000dead/contacts", {}, 404)
    bad = pl.ctl(
        "POST", f"/users/{ALEX}/contacts/{cid}/share", {"client_id": MEGAN, "unit_id": EUROPE}, 400
    )
    assert bad["error"]["code"] == "BadRequest"


def test_control_api_creates_identities_and_tunes_the_emulator(pl):
    unit = pl.ctl(
        "POST",
        "/units",
        {"name": "Sales Asia", "parent_id": "a0000000-0000-4000-8000-000000000003"},
        201,
    )
    role = pl.ctl("POST", "/roles", {"name": "Intern", "access_entity_contact": 1}, 201)
    user = pl.ctl(
        "POST",
        "/users",
        {
            "email": "kim@contoso.example",
            "first_name": "Kim",
            "last_name": "Akers",
            "default_unit_id": unit["id"],
            "unit_member_ids": [unit["id"]],
            "master_right_id": role["id"],
        },
        201,
    )
    account = pl.ctl(
        "POST", "/accounts", {"name": "Lucerne Publishing", "owner_id": user["id"]}, 201
    )
    assert account["unit_id"] == unit["id"]
    assert pl.data(f"/MasterRights/{role['id']}")["access_entity_contact"] == 1
    assert user["id"] in [c["id"] for c in pl.all("/Clients")]
    assert unit["id"] in [u["id"] for u in pl.all("/SalesUnits")]
    assert pl.ctl("POST", "/users", {"email": "kim@contoso.example"}, 400)
    assert pl.ctl("POST", "/accounts", {"name": "X", "owner_id": "nobody"}, 400)

    for style, sample in [("iso_z", "Z"), ("naive", ""), ("vendor", "+00:00")]:
        pl.ctl("POST", "/settings", {"timestamp_format": style})
        modified = pl.contact(_create(pl)["id"])["modified"]
        assert modified.endswith(sample) and _us(modified) > 0
        if style == "iso_z":
            assert len(modified) == len("2026-01-01T00:00:00.000Z")
    assert pl.ctl("POST", "/settings", {"timestamp_format": "unix"}, 400)
    assert pl.ctl("POST", "/settings", {"colour": "red"}, 400)

    clock = pl.ctl("GET", "/clock")
    later = pl.ctl("POST", "/clock", {"advance_seconds": 7200})
    assert _us(later["now"]) - _us(clock["now"]) >= 7200 * 1_000_000
    assert _us(_create(pl)["modified"]) >= _us(later["now"])

    pl.ctl("POST", "/settings", {"include_total": True})
    assert pl.get("/Contacts", first=1)["total"] == len(pl.ids())


def test_rate_limit_answers_429_with_retry_after(pl):
    assert pl.ctl("GET", "/rate-limit") == {"rate_limit": None}
    pl.ctl("POST", "/rate-limit", {"requests": 2, "per_seconds": 0.4})
    pl.get("/Contacts", first=1)
    pl.get("/Contacts", first=1)
    response = pl.client.get(P + "/Contacts", headers=AUTH)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert (
        response.json["name"] == "ERROR_TOO_MANY_REQUESTS" and response.json["http_status"] == 429
    )
    time.sleep(0.45)
    pl.get("/Contacts", first=1)
    pl.ctl("POST", "/rate-limit", {"requests": None})
    for _ in range(5):
        pl.get("/Contacts", first=1)
    assert pl.ctl("POST", "/rate-limit", {"requests": 0}, 400)


# --------------------------------------------------------------------------- seeds, scale


def test_demo_seed_shape_is_deterministic_and_varied(pl):
    demo = demo_contacts(300, 42)
    assert demo == demo_contacts(300, 42) and demo != demo_contacts(300, 43)
    assert len({c["id"] for c in demo}) == 300
    owners = {
        user: sum(c["owner_id"] == user for c in demo) for user in (ALEX, MEGAN, NESTOR, LYNNE)
    }
    assert owners[ALEX] > owners[MEGAN] > owners[LYNNE] > 20
    modes = {m: sum(c["share_mode"] == m for c in demo) for m in range(4)}
    assert modes[0] > 150 and min(modes.values()) >= 15
    assert sum("account_relations" in c for c in demo) > 80
    assert sum(len(c.get("account_relations", ())) == 2 for c in demo) > 5
    # Linked contacts whose job title (the primary relation's position) is not their hidden
    # Quick Account Position: a sync reading `position` would show the wrong one.
    differing = [
        c
        for c in demo
        for r in c.get("account_relations", ())
        if r["is_primary"] and r.get("position") != c.get("position", "")
    ]
    assert len(differing) > 20
    assert sum("quick_account_name" in c for c in demo) > 60
    roles = [s["role"] for c in demo for s in c.get("sharing_clients", ())]
    assert roles.count(1) > 10 and roles.count(2) > 10
    assert sum("sharing_units" in c for c in demo) > 15
    for slot in ("phone3", "email4", "email5"):
        assert 3 <= sum(slot in c for c in demo) <= 40, slot
    assert any(not (c["first_name"] + c["last_name"]).isascii() for c in demo)
    assert sum(bool(c.get("is_delete_protected")) for c in demo) >= 3
    assert sum(bool(c.get("is_deleted")) for c in demo) >= 2
    # The emulator serves exactly that data by default.
    served = pl.all(**{"include-deleted": "true"})
    assert sorted(c["id"] for c in served) == sorted(c["id"] for c in demo)
    by_id = {c["id"]: c for c in served}
    sample = demo[0]
    assert by_id[sample["id"]]["first_name"] == sample["first_name"]
    assert len({c["owner_id"] for c in served}) == 4


def test_seed_round_trip_and_bad_seeds(pl):
    pl.seed(
        [
            {
                "owner_id": ALEX,
                "first_name": "Seeded",
                "cf_tier": "gold",
                "sharing_clients": [{"client_id": MEGAN, "role": 2}],
                "account_relations": [{"account_id": FABRIKAM, "is_primary": True}],
            }
        ]
    )
    (only,) = pl.all(expand="primary_account")
    assert only["primary_account"]["name"] == "Fabrikam" and only["cf_tier"] == "gold"
    state = pl.client.get("/_sandbox/state").json
    pl.client.post("/_sandbox/seed", json=state)
    assert pl.client.get("/_sandbox/state").json == state
    for bad in [
        {"contacts": [{"first_name": "No owner"}]},
        {"contacts": [{"owner_id": ALEX, "nickname": "x"}]},
        {"contacts": [{"owner_id": ALEX, "sharing_clients": [{"client_id": "nobody"}]}]},
        {"accounts": [{"id": CONTOSO, "name": "No owner"}]},
        {"demo_contacts": {"count": -1}},
        {"flavour": "vanilla"},
    ]:
        data = {**copy.deepcopy(default_seed()["pipeliner"]), **bad}
        assert pl.client.post("/_sandbox/seed", json=data).status_code == 400, bad


def test_generate_50k_contacts_and_page_through_them_without_sorting_each_page(pl):
    result = pl.ctl("POST", "/generate", {"count": 50_000, "owner_id": MEGAN, "seed": 1}, 201)
    assert result["generated"] == 50_000 and result["contacts"] == 50_300
    params = {
        "first": 100,
        "order-by": "modified",
        "filter[modified]": "2026-01-01T00:00:00Z",
        "filter-op[modified]": "gte",
    }
    body = pl.get("/Contacts", **params)  # builds the sorted index once
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        body = pl.get("/Contacts", **{**params, "after": body["page_info"]["end_cursor"]})
        timings.append(time.perf_counter() - started)
        stamps = [_us(c["modified"]) for c in body["data"]]
        assert len(stamps) == 100 and stamps == sorted(stamps)
    assert min(timings) < 0.5, timings  # ~10 ms on a laptop; the bound only catches a full sort
    again = pl.ctl("POST", "/generate", {"count": 10, "seed": 1}, 201)  # same seed, new ids
    assert again["contacts"] == 50_310
