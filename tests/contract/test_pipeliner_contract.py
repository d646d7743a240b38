"""Contract tests of the Pipeliner emulator: its answers against the vendor's OpenAPI document.

Every response the emulator produces on the routes of the pruned spec is validated with the
harness (`specs.validate_pipeliner_response`, closed schemas: no invented fields), every request
body these tests send is validated first (`validate_pipeliner_request`), and the requests the
real API refuses are refused with a valid `Error` body. Runs against the real HTTPS server of
the session sandbox.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from contactsync_sandbox.pipeliner import fields as F
from contactsync_sandbox.pipeliner.emulator import PipelinerEmulator
from contactsync_sandbox.server import route_template

from . import specs
from .specs import validate_pipeliner_request, validate_pipeliner_response

ALEX = "c0000000-0000-4000-8000-000000000001"
MEGAN = "c0000000-0000-4000-8000-000000000002"
EUROPE = "a0000000-0000-4000-8000-000000000001"
CONTOSO = "60000000-0000-4000-8000-000000000001"
FABRIKAM = "60000000-0000-4000-8000-000000000002"
SALES_REP = "b0000000-0000-4000-8000-000000000001"
EXPAND_ALL = "primary_account,owner,sharing_clients,sharing_units,account_relations"
_ID = re.compile(r"/[0-9a-f-]{36}(?=/|$)")


class Api:
    """Calls the emulator over HTTPS; validates request bodies and every response."""

    def __init__(self, sandbox: Any) -> None:
        info = sandbox.info
        self.prefix = f"/api/v100/rest/spaces/{info['pipeliner_space_id']}/entities"
        self.base = info["pipeliner_url"] + self.prefix
        self.session = sandbox.session()
        self.session.auth = (info["pipeliner_api_username"], info["pipeliner_api_password"])
        self.control = sandbox.control("pipeliner")
        self.validated: set[tuple[str, str, int]] = set()

    def call(
        self,
        method: str,
        path: str,
        *,
        template: str | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        expand: str = "",
        status: int | None = None,
        check_request: bool = True,
        auth: Any = "default",
        base: str | None = None,
    ) -> Any:
        template = template or "/entities" + _ID.sub("/{id}", path)
        if json is not None and check_request:
            validate_pipeliner_request(method, template, json)
        kwargs: dict[str, Any] = {"params": params, "json": json, "timeout": 10}
        if auth != "default":
            kwargs["auth"] = auth
        response = self.session.request(method, (base or self.base) + path, **kwargs)
        if status is not None:
            assert response.status_code == status, response.text
        body = response.json()
        validate_pipeliner_response(method, template, response.status_code, body, expand=expand)
        self.validated.add((method, template, response.status_code))
        return body

    def ctl(self, method: str, path: str, json: Any = None) -> Any:
        response = self.control.session.request(
            method, f"{self.control.control_url}/pipeliner{path}", json=json, timeout=10
        )
        assert response.status_code < 300, response.text
        return response.json()


@pytest.fixture
def api(sandbox):
    sandbox.control("pipeliner").reset()
    return Api(sandbox)


def _new_contact(api: Api, **fields: Any) -> dict[str, Any]:
    body = {"owner_id": ALEX, "first_name": "Grace", "last_name": "Hopper", **fields}
    return api.call("POST", "/Contacts", json=body, status=201)["data"]


# --------------------------------------------------------------------------- the catalogue, routes


def _kind(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if kind == "array":
        items = prop["items"]
        if items.get("format") == "uri":
            return "uri[]"
        if items.get("type") == "object":
            return "rel[]"
        return "uuid[]" if items.get("format") == "uuid" else f"{items.get('type')}[]"
    if kind == "string":
        return {"uri": "uri", "uuid": "uuid", "date-time": "datetime", "binary": "binary"}.get(
            prop.get("format", ""), "str"
        )
    if kind == "object":
        return "rel" if list(prop.get("properties", {})) == ["id"] else "object"
    return {"boolean": "bool", "integer": "int"}[kind]


def test_the_field_catalogue_is_the_spec():
    schemas = specs.load_spec(specs.PIPELINER_OPENAPI_FILE)["components"]["schemas"]
    assert F.schema_names() == sorted(n for n in schemas if n != "Error")
    for name in F.schema_names():
        spec = schemas[name]
        ours = F.schema(name)
        assert list(ours.kinds) == list(spec["properties"]), name
        assert ours.kinds == {k: _kind(v) for k, v in spec["properties"].items()}, name
        read_only = {k for k, v in spec["properties"].items() if v.get("readOnly")}
        assert ours.read_only == read_only, name
        assert ours.required == tuple(spec.get("required", ())), name
        for prop, value in spec["properties"].items():
            if value.get("type") == "integer" and "enum" in value:
                assert F.ENUMS[prop] == frozenset(value["enum"]), (name, prop)
    operator_text = specs.pipeliner_operation("GET", "/entities/Contacts")["parameters"]
    filter_op = next(p for p in operator_text if p["name"] == "filter-op")["description"]
    assert filter_op.endswith(f"[{', '.join(F.FILTER_OPERATORS)}].")


def test_every_route_is_a_documented_operation_and_every_operation_is_served():
    served = set()
    for rule in PipelinerEmulator().rules():
        template = route_template(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if template.endswith("/entities/SalesUnits"):
                continue  # outside the pruned spec, documented as such
            specs.pipeliner_operation(method, template)  # raises if undocumented
            served.add((method, specs._document_path(template)))
    document = specs.pipeliner_document()
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "delete")
    }
    assert served == documented


# --------------------------------------------------------------------------- contacts: reads


def test_contact_lists_validate_plain_expanded_and_nested(api):
    page = api.call("GET", "/Contacts", params={"first": 100}, status=200)
    assert len(page["data"]) == 100 and page["page_info"]["has_next_page"] is True
    assert "total" not in page  # the spec's list wrapper has none (see README)
    for contact in page["data"]:
        assert isinstance(contact["owner"], str) and contact["owner"].startswith("https://")
    after = api.call(
        "GET",
        "/Contacts",
        params={"first": 100, "after": page["page_info"]["end_cursor"], "include-deleted": "true"},
        status=200,
    )
    assert after["page_info"]["has_previous_page"] is True

    expanded = api.call(
        "GET", "/Contacts", params={"first": 100, "expand": EXPAND_ALL}, expand=EXPAND_ALL
    )
    kinds = {
        "primary": any(isinstance(c.get("primary_account"), dict) for c in expanded["data"]),
        "owner": all(isinstance(c["owner"], dict) for c in expanded["data"]),
        "sharing": any(c["sharing_clients"] for c in expanded["data"]),
        "units": any(c["sharing_units"] for c in expanded["data"]),
        "relations": any(c["account_relations"] for c in expanded["data"]),
    }
    assert all(kinds.values()), kinds
    nested = "account_relations.account,sharing_clients.client,owner.master_right"
    body = api.call("GET", "/Contacts", params={"first": 50, "expand": nested}, expand=nested)
    with_relation = next(c for c in body["data"] if c["account_relations"])
    assert with_relation["account_relations"][0]["account"]["name"]


def test_single_contact_get_and_load_only(api):
    contact = api.call("GET", "/Contacts", params={"first": 1})["data"][0]
    single = api.call("GET", f"/Contacts/{contact['id']}", status=200)
    assert single["data"] == contact
    one = api.call("GET", f"/Contacts/{contact['id']}", params={"expand": "owner"}, expand="owner")
    assert one["data"]["owner"]["id"] == contact["owner_id"]

    # load-only drops fields the schema marks required: validate each returned property.
    response = api.session.get(
        f"{api.base}/Contacts", params={"first": 5, "load-only": "id,modified,email1"}, timeout=10
    )
    schema = copy.deepcopy(specs.pipeliner_document()["components"]["schemas"]["Contact"])
    schema.pop("required")
    for item in response.json()["data"]:
        assert set(item) == {"id", "modified", "email1"}
        Draft202012Validator(schema).validate(item)


# --------------------------------------------------------------------------- contacts: writes


def test_create_patch_delete_and_restore_validate(api):
    created = api.call(
        "POST",
        "/Contacts",
        json={
            "owner_id": ALEX,
            "first_name": "Grace",
            "last_name": "Hopper",
            "position": "Rear Admiral",
            "email1": "grace@fabrikam.example",
            "phone3": "+1 555 0199",
            "share_mode": 1,
        },
        status=201,
    )["data"]
    assert created["formatted_name"] == "Grace Hopper" and created["revision"] >= 1
    patched = api.call(
        "PATCH", f"/Contacts/{created['id']}", json={"phone1": "+1 555 0100"}, status=200
    )["data"]
    assert patched["revision"] > created["revision"] and patched["phone3"] == "+1 555 0199"
    deleted = api.call("DELETE", f"/Contacts/{created['id']}", status=200)
    assert deleted["data"] == created["id"]
    api.call("GET", f"/Contacts/{created['id']}", status=404)
    gone = api.call(
        "GET", f"/Contacts/{created['id']}", params={"include-deleted": "true"}, status=200
    )
    assert gone["data"]["is_deleted"] is True
    restored = api.call("POST", "/Contacts/batch-restore", json=[created["id"]], status=200)
    assert restored["data"] == [created["id"]]


def test_batch_routes_validate_with_ids_and_error_items(api):
    first = _new_contact(api)
    body = [
        {"id": first["id"], "email2": "grace.2@fabrikam.example"},
        {"owner_id": ALEX, "first_name": "Ada", "last_name": "Lovelace"},
        {"id": "0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e", "phone1": "1"},  # no such contact
        {"owner_id": "0b6e1d1c-5a53-4d8e-9d0e-000000000000", "last_name": "Nobody"},
    ]
    result = api.call(
        "POST", "/Contacts/batch-modify", params={"rollback-method": 1}, json=body, status=200
    )["data"]
    assert result[0] == first["id"] and isinstance(result[1], str)
    assert result[2]["http_status"] == 404 and result[3]["http_status"] == 422

    refused = api.call("POST", "/Contacts/batch-modify", json=body, status=404)
    assert refused["success"] is False and refused["message"].startswith("[item 2]")

    ids = [first["id"], result[1]]
    deleted = api.call("POST", "/Contacts/batch-delete", params={"rollback-method": 1}, json=ids)
    assert deleted["data"] == ids
    restored = api.call("POST", "/Contacts/batch-restore", params={"rollback-method": 1}, json=ids)
    assert restored["data"] == ids
    api.ctl("POST", f"/contacts/{first['id']}/delete-protection", {"is_delete_protected": True})
    mixed = api.call("POST", "/Contacts/batch-delete", params={"rollback-method": 1}, json=ids)
    assert mixed["data"][0]["name"] == "ERROR_ENTITY_DELETE_PROTECTED"
    assert mixed["data"][1] == result[1]


# --------------------------------------------------------------------------- other entities


def test_accounts_clients_and_master_rights_validate(api):
    accounts = api.call("GET", "/Accounts", params={"first": 100}, status=200)["data"]
    assert {"Contoso Ltd", "Fabrikam", "Northwind Traders"} <= {a["name"] for a in accounts}
    api.call("GET", f"/Accounts/{CONTOSO}", status=200)
    api.call("GET", f"/Accounts/{CONTOSO}", params={"expand": "owner"}, expand="owner")
    account = api.call(
        "POST", "/Accounts", json={"name": "Proseware", "owner_id": MEGAN}, status=201
    )["data"]
    assert account["formatted_name"] == "Proseware"

    clients = api.call("GET", "/Clients", params={"filter[email]": "alex@contoso.example"})
    assert [c["id"] for c in clients["data"]] == [ALEX]
    api.call("GET", f"/Clients/{ALEX}", params={"expand": "master_right"}, expand="master_right")
    new = api.call(
        "POST",
        "/Clients",
        json={
            "email": "pradeep@contoso.example",
            "default_unit_id": EUROPE,
            "master_right_id": SALES_REP,
            "unit_membership": [{"id": EUROPE}],
        },
        status=201,
    )["data"]
    assert new["unit_member_ids"] == [EUROPE]
    api.call("PATCH", f"/Clients/{new['id']}", json={"position": "Intern"}, status=200)
    api.call("DELETE", f"/Clients/{new['id']}", status=200)

    role = api.call("GET", f"/MasterRights/{SALES_REP}", status=200)["data"]
    assert role["access_entity_contact_delete"] is True and role["access_entity_contact"] == 2
    assert {
        "access_contacts",
        "access_entity_contact_direction",
        "access_entity_contact_private",
    } <= set(role)


def test_relation_routes_validate(api):
    contact = _new_contact(api)
    share = api.call(
        "POST",
        "/ContactSharingClientRelations",
        json={"contact_id": contact["id"], "client_id": MEGAN, "role": 2},
        status=201,
    )["data"]
    api.call("GET", f"/ContactSharingClientRelations/{share['id']}", status=200)
    api.call(
        "GET",
        f"/ContactSharingClientRelations/{share['id']}",
        params={"expand": "client,contact"},
        expand="client,contact",
    )
    api.call("PATCH", f"/ContactSharingClientRelations/{share['id']}", json={"role": 1}, status=200)
    listed = api.call(
        "GET", "/ContactSharingClientRelations", params={"filter[contact_id]": contact["id"]}
    )
    assert [r["role"] for r in listed["data"]] == [1]
    api.call("DELETE", f"/ContactSharingClientRelations/{share['id']}", status=200)

    unit = api.call(
        "POST",
        "/ContactSharingSalesUnitRelations",
        json={"contact_id": contact["id"], "unit_id": EUROPE, "role": 1},
        status=201,
    )["data"]
    assert unit["unit"].endswith(f"/SalesUnits/{EUROPE}")
    api.call("GET", "/ContactSharingSalesUnitRelations", params={"first": 100})

    relation = api.call(
        "POST",
        "/ContactAccountRelations",
        json={"contact_id": contact["id"], "account_id": FABRIKAM, "is_primary": True},
        status=201,
    )["data"]
    listed = api.call(
        "GET",
        "/ContactAccountRelations",
        params={"filter[contact_id]": contact["id"], "expand": "account"},
        expand="account",
    )
    assert listed["data"][0]["id"] == relation["id"]
    assert listed["data"][0]["account"]["name"] == "Fabrikam"
    again = api.call(
        "GET",
        f"/Contacts/{contact['id']}",
        params={"expand": "primary_account"},
        expand="primary_account",
    )
    assert again["data"]["primary_account"]["id"] == FABRIKAM


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"first": 101}, "[first]"),
        ({"first": 0}, "[first]"),
        ({"filter[email1]": "x", "filter-op[email1]": "like"}, "unknown operator"),
        ({"filter[job_title]": "CEO"}, "no field 'job_title'"),
        ({"filter[owner]": "x"}, "cannot filter"),
        ({"order-by": "salary"}, "[order-by]"),
        ({"after": "not-a-cursor"}, "invalid cursor"),
        ({"expand": "unit"}, "cannot expand"),
        ({"expand": "first_name"}, "not a relation"),
        ({"load-only": "id,nickname"}, "[load-only]"),
        ({"filter[modified]": "yesterday", "filter-op[modified]": "gte"}, "not a valid datetime"),
        ({"include-deleted": "maybe"}, "[include-deleted]"),
    ],
)
def test_invalid_list_parameters_are_refused_like_the_real_api(api, params, fragment):
    error = api.call("GET", "/Contacts", params=params, status=400)
    assert error["code"] == 117 and error["name"] == "ERROR_PARAMETER_INVALID"
    assert fragment in error["message"]


def test_bad_credentials_unknown_space_and_unknown_ids(api):
    bare = requests.Session()
    bare.trust_env, bare.verify = False, api.session.verify
    unauthenticated = bare.get(f"{api.base}/Contacts", timeout=10)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"] == 'Basic realm="restapi"'
    validate_pipeliner_response("GET", "/entities/Contacts", 401, unauthenticated.json())
    bare.close()

    wrong = api.call("GET", "/Contacts", auth=("contactsync-sandbox", "wrong"), status=401)
    assert wrong["name"] == "ERROR_UNAUTHORIZED"
    other_space = api.base.replace("5a5a5a5a-0000-4000-8000-000000000001", "nv3_Unknown")
    unknown = api.call("GET", "/Contacts", base=other_space, status=404)
    assert unknown["name"] == "ERROR_SPACE_NOT_FOUND"
    api.call("GET", "/Contacts/0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e", status=404)
    api.call("GET", "/Accounts/0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e", status=404)
    api.call("GET", "/MasterRights/0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e", status=404)
    api.call(
        "PATCH", "/Contacts/0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e", json={"phone1": "1"}, status=404
    )


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"first_name": "No owner"}, 400, "[owner_id] is required"),
        ({"owner_id": ALEX, "first_name": "A", "job_title": "CEO"}, 400, "[job_title]"),
        (
            {"owner_id": ALEX, "first_name": "A", "modified": "2026-01-01T00:00:00Z"},
            400,
            "[modified] is read-only",
        ),
        ({"owner_id": ALEX, "first_name": "A", "share_mode": 9}, 400, "[share_mode]"),
        ({"owner_id": ALEX, "first_name": 5}, 400, "[first_name] expected str"),
        ({"owner_id": ALEX, "email1": "only-an-email@x.example"}, 422, "first_name"),
        (
            {"owner_id": "0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e", "first_name": "A"},
            422,
            "doesn't exist",
        ),
    ],
)
def test_invalid_writes_are_refused_with_error_bodies(api, body, status, fragment):
    error = api.call("POST", "/Contacts", json=body, status=status, check_request=False)
    assert fragment in error["message"]
    assert error["name"] == (
        "ERROR_PARAMETER_INVALID" if status == 400 else "ERROR_ENTITY_VALIDATION"
    )


def test_more_refusals_validate_as_errors(api):
    contact = _new_contact(api)
    api.ctl("POST", f"/contacts/{contact['id']}/delete-protection", {"is_delete_protected": True})
    protected = api.call("DELETE", f"/Contacts/{contact['id']}", status=422)
    assert protected["name"] == "ERROR_ENTITY_DELETE_PROTECTED"
    too_many = [{"id": contact["id"], "phone1": str(i)} for i in range(101)]
    api.call("POST", "/Contacts/batch-modify", json=too_many, status=400)
    api.call("POST", "/Contacts/batch-delete", json={"ids": []}, status=400, check_request=False)
    api.call("POST", "/Contacts/batch-modify", params={"rollback-method": 2}, json=[], status=400)
    duplicate = {"contact_id": contact["id"], "client_id": MEGAN}
    api.call("POST", "/ContactSharingClientRelations", json=duplicate, status=201)
    api.call("POST", "/ContactSharingClientRelations", json=duplicate, status=422)
    response = api.session.put(f"{api.base}/Contacts/{contact['id']}", json={}, timeout=10)
    assert response.status_code == 405
    validate_pipeliner_response("GET", "/entities/Contacts/{id}", 405, response.json())


def test_rate_limit_and_faults_answer_with_error_bodies(api):
    api.ctl("POST", "/rate-limit", {"requests": 1, "per_seconds": 60})
    api.call("GET", "/Contacts", params={"first": 1}, status=200)
    throttled = api.session.get(f"{api.base}/Contacts", timeout=10)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    validate_pipeliner_response("GET", "/entities/Contacts", 429, throttled.json())
    api.ctl("POST", "/rate-limit", {"requests": None})
    api.control.fail_5xx(count=1, status=503)
    failed = api.session.get(f"{api.base}/Contacts", timeout=10)
    assert failed.status_code == 503
    validate_pipeliner_response("GET", "/entities/Contacts", 503, failed.json())
    api.control.burst_429(count=1, retry_after=0.5)
    burst = api.session.get(f"{api.base}/Contacts", timeout=10)
    assert burst.status_code == 429 and burst.headers["Retry-After"] == "0.5"
    validate_pipeliner_response("GET", "/entities/Contacts", 429, burst.json())


def test_every_documented_operation_answers_a_valid_success(api):
    contact = _new_contact(api)
    cid = contact["id"]
    calls = [
        ("GET", "/Contacts", None),
        ("GET", f"/Contacts/{cid}", None),
        ("PATCH", f"/Contacts/{cid}", {"phone2": "1"}),
        ("POST", "/Contacts/batch-modify", [{"id": cid, "phone2": "2"}]),
        ("POST", "/ContactSharingClientRelations", {"contact_id": cid, "client_id": MEGAN}),
        ("GET", "/ContactSharingClientRelations", None),
        ("POST", "/ContactSharingSalesUnitRelations", {"contact_id": cid, "unit_id": EUROPE}),
        ("GET", "/ContactSharingSalesUnitRelations", None),
        (
            "POST",
            "/ContactAccountRelations",
            {"contact_id": cid, "account_id": CONTOSO, "is_primary": False},
        ),
        ("GET", "/ContactAccountRelations", None),
        ("GET", "/Accounts", None),
        ("GET", f"/Accounts/{CONTOSO}", None),
        ("POST", "/Accounts", {"name": "Trey Research", "owner_id": ALEX}),
        ("GET", "/Clients", None),
        ("GET", f"/Clients/{ALEX}", None),
        ("GET", f"/MasterRights/{SALES_REP}", None),
        ("POST", "/Contacts/batch-delete", [cid]),
        ("POST", "/Contacts/batch-restore", [cid]),
        ("POST", "/Contacts", {"owner_id": ALEX, "last_name": "Solo"}),
    ]
    for method, path, body in calls:
        api.call(method, path, json=body)
    shares = api.call("GET", "/ContactSharingClientRelations", params={"filter[contact_id]": cid})
    share = shares["data"][0]
    api.call("PATCH", f"/ContactSharingClientRelations/{share['id']}", json={"role": 2})
    api.call("GET", f"/ContactSharingClientRelations/{share['id']}")
    api.call("DELETE", f"/ContactSharingClientRelations/{share['id']}")
    api.call("DELETE", f"/Contacts/{cid}")
    client = api.call(
        "POST",
        "/Clients",
        json={
            "email": "x@contoso.example",
            "default_unit_id": EUROPE,
            "master_right_id": SALES_REP,
            "unit_membership": [],
        },
    )["data"]
    api.call("PATCH", f"/Clients/{client['id']}", json={"type": 1})
    api.call("DELETE", f"/Clients/{client['id']}")
    succeeded = {(method, template) for method, template, status in api.validated if status < 300}
    documented = {
        (method.upper(), f"/entities{path}" if not path.startswith("/entities") else path)
        for path, item in specs.pipeliner_document()["paths"].items()
        for method in item
        if method in ("get", "post", "patch", "delete")
    }
    assert succeeded == documented
