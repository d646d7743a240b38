"""The contract harness accepts what the vendor schemas allow and rejects what they do not."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from . import specs
from .specs import (
    ContractViolation,
    pipeliner_request_schema,
    validate_graph,
    validate_graph_collection,
    validate_pipeliner_request,
    validate_pipeliner_response,
    validate_pipeliner_schema,
)

# The sample response of Microsoft's "Get contact" page (api-reference/v1.0/api/contact-get.md,
# microsoftgraph/microsoft-graph-docs-contrib @ 333f38b751ec0a703b3324939bcd72dd5f397760).
GRAPH_DOCS_SAMPLE_CONTACT = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('48d31887-5fad-4d73-a9f5"
    "-3c356e68a038')/contacts/$entity",
    "@odata.etag": 'W/"EQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYc8Bf"',
    "id": "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBw"
    "AiIsqMbYjsT5e-T7KzowPTAAAAAAEOAAAiIsqMbYjsT5e-T7KzowPTAAAYbuK-AAA=",
    "createdDateTime": "2017-09-04T15:54:01Z",
    "lastModifiedDateTime": "2017-09-04T15:54:02Z",
    "changeKey": "EQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAYc8Bf",
    "categories": [],
    "parentFolderId": "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAAAAAAiQ8W967B7T"
    "KBjgx9rVEURAQAiIsqMbYjsT5e-T7KzowPTAAAAAAEOAAA=",
    "birthday": None,
    "fileAs": "",
    "displayName": "Alex Wilber",
    "givenName": "Alex",
    "initials": None,
    "middleName": None,
    "nickName": None,
    "surname": "Wilber",
    "title": None,
    "yomiGivenName": None,
    "yomiSurname": None,
    "yomiCompanyName": None,
    "generation": None,
    "imAddresses": [],
    "jobTitle": None,
    "companyName": None,
    "department": None,
    "officeLocation": None,
    "profession": None,
    "businessHomePage": None,
    "assistantName": None,
    "manager": None,
    "homePhones": [],
    "mobilePhone": None,
    "businessPhones": [],
    "spouseName": None,
    "personalNotes": "",
    "children": [],
    "emailAddresses": [{"name": "Alex@FineArtSchool.net", "address": "Alex@FineArtSchool.net"}],
    "homeAddress": {},
    "businessAddress": {},
    "otherAddress": {},
}

SPACE = "https://127.0.0.1:8701/api/v100/rest/spaces/5a5a5a5a-0000-4000-8000-000000000001"
CONTACT_ID = "0b6e1d1c-5a53-4d8e-9d0e-1f2a3b4c5d6e"
ACCOUNT_ID = "7f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
OWNER_ID = "c0000000-0000-4000-8000-000000000001"
UNIT_ID = "a0000000-0000-4000-8000-000000000001"


def pipeliner_contact(**overrides):
    """A hand-made Contact as the API returns it without `expand` (relations as URIs)."""
    contact = {
        "id": CONTACT_ID,
        "is_delete_protected": False,
        "is_deleted": False,
        "modified": "2026-01-02T03:04:05",
        "created": "2026-01-01T00:00:00",
        "contact_type": f"{SPACE}/entities/ContactTypes/11111111-2222-4333-8444-555555555555",
        "owner": f"{SPACE}/entities/Clients/{OWNER_ID}",
        "owner_id": OWNER_ID,
        "unit": f"{SPACE}/entities/SalesUnits/{UNIT_ID}",
        "unit_id": UNIT_ID,
        "first_name": "Grace",
        "last_name": "Hopper",
        "formatted_name": "Grace Hopper",
        "position": "Rear Admiral",
        "email1": "grace@fabrikam.example",
        "phone1": "+1 555 0100",
        "quick_account_name": "Fabrikam",
        "share_mode": 0,
        "revision": 7,
        "is_favorite": False,
        "sharing_clients": [],
    }
    contact.update(overrides)
    return contact


def contact_list(*contacts, **page_info):
    return {
        "success": True,
        "data": list(contacts),
        "page_info": {
            "start_cursor": "WyJhIl0=",
            "end_cursor": "WyJiIl0=",
            "has_previous_page": False,
            "has_next_page": False,
            **page_info,
        },
    }


def account():
    return {
        "id": ACCOUNT_ID,
        "is_delete_protected": False,
        "name": "Fabrikam",
        "formatted_name": "Fabrikam",
        "owner_id": OWNER_ID,
        "is_favorite": False,
        "account_type": f"{SPACE}/entities/AccountTypes/22222222-3333-4444-8555-666666666666",
        "owner": f"{SPACE}/entities/Clients/{OWNER_ID}",
        "unit": f"{SPACE}/entities/SalesUnits/x",
    }


# --------------------------------------------------------------------------- the specs copy


def test_bundled_specs_are_byte_identical_to_the_shared_ones():
    shared = specs.SHARED_SPECS_DIR
    if not shared.is_dir():
        pytest.skip(f"{shared} is absent (a fresh clone): nothing to compare the copy with")
    shared_files = sorted(p.name for p in shared.iterdir() if p.is_file())
    bundled_files = sorted(p.name for p in specs.BUNDLED_SPECS_DIR.iterdir() if p.is_file())
    assert bundled_files == shared_files, "copy the spec files again: cp ../shared/specs/* ..."
    for name in shared_files:
        assert (specs.BUNDLED_SPECS_DIR / name).read_bytes() == (shared / name).read_bytes(), (
            f"tests/contract/specs/{name} differs from {shared / name}; copy it unchanged"
        )


def test_the_specs_dir_can_be_overridden(tmp_path, monkeypatch):
    schema = json.loads((specs.BUNDLED_SPECS_DIR / specs.GRAPH_SCHEMA_FILE).read_text("utf-8"))
    schema["$defs"]["contact"]["required"] = ["nickName"]
    (tmp_path / specs.GRAPH_SCHEMA_FILE).write_text(json.dumps(schema), "utf-8")
    shutil.copy(specs.BUNDLED_SPECS_DIR / specs.PIPELINER_OPENAPI_FILE, tmp_path)

    validate_graph({"displayName": "x"})
    monkeypatch.setenv(specs.SPECS_DIR_ENV, str(tmp_path))
    assert specs.specs_dir() == tmp_path
    with pytest.raises(ContractViolation, match="nickName"):
        validate_graph({"displayName": "x"})


# --------------------------------------------------------------------------- Graph


def test_graph_docs_sample_contact_is_valid():
    validate_graph(GRAPH_DOCS_SAMPLE_CONTACT)
    validate_graph(GRAPH_DOCS_SAMPLE_CONTACT, "contact")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"givenName": 5}, "$.givenName"),
        ({"businessPhones": None}, "$.businessPhones"),
        ({"businessPhones": ["+1 555 0100", 7]}, "$.businessPhones[1]"),
        ({"emailAddresses": [{"address": "a@b.example", "type": "work"}]}, "$.emailAddresses[0]"),
        ({"businessAddress": {"street": "1 Main St", "zip": "12345"}}, "$.businessAddress"),
        ({"id": None}, "$.id"),
    ],
)
def test_graph_contact_violations_name_the_failing_element(change, where):
    contact = {**copy.deepcopy(GRAPH_DOCS_SAMPLE_CONTACT), **change}
    with pytest.raises(ContractViolation) as caught:
        validate_graph(contact)
    assert f"at {where}:" in str(caught.value)
    assert isinstance(caught.value, AssertionError)


def test_graph_other_definitions_and_collections():
    validate_graph(
        {"id": "AQMk", "displayName": "Pipeliner", "parentFolderId": "AQMj"}, "contactFolder"
    )
    validate_graph(
        {"id": "String 0x3A1F", "value": "+1 555 0199"}, "singleValueLegacyExtendedProperty"
    )
    with pytest.raises(ContractViolation):
        validate_graph({"displayName": 3}, "contactFolder")
    with pytest.raises(KeyError, match="contactFolder"):
        validate_graph({}, "folder")

    page = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/contacts",
        "value": [GRAPH_DOCS_SAMPLE_CONTACT, {"id": "gone", "@removed": {"reason": "deleted"}}],
        "@odata.nextLink": "https://127.0.0.1:8702/v1.0/users/x/contacts/delta?$skiptoken=a",
    }
    validate_graph_collection(page)
    with pytest.raises(ContractViolation, match=r"at \$\.value\[0\]\.surname"):
        validate_graph_collection({"value": [{"surname": ["Wilber"]}]})
    with pytest.raises(ContractViolation, match="'value' is a required property"):
        validate_graph_collection({"@odata.deltaLink": "https://x"})


# --------------------------------------------------------------------------- Pipeliner responses


def test_contact_list_response_is_valid():
    path = "/entities/Contacts"
    validate_pipeliner_response("GET", path, 200, contact_list(pipeliner_contact()))
    validate_pipeliner_response("GET", path, 200, contact_list())
    validate_pipeliner_schema(pipeliner_contact(), "Contact")
    # Any form of the path: the service path, with {space_id}, werkzeug's <id>, a query.
    full = "/api/v100/rest/spaces/{space_id}/entities/Contacts?first=100"
    validate_pipeliner_response("get", full, "200", contact_list(pipeliner_contact()))
    single = {"success": True, "data": pipeliner_contact()}
    validate_pipeliner_response(
        "GET", "/api/v100/rest/spaces/<space_id>/entities/Contacts/<id>", 200, single
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (contact_list(pipeliner_contact(first_name=5)), r"at \$\.data\[0\]\.first_name: 5 is not"),
        (contact_list(pipeliner_contact(share_mode=9)), r"at \$\.data\[0\]\.share_mode"),
        (contact_list(pipeliner_contact(sharing_clients="x")), r"\$\.data\[0\]\.sharing_clients"),
        (
            contact_list({k: v for k, v in pipeliner_contact().items() if k != "id"}),
            r"at \$\.data\[0\]: 'id' is a required property",
        ),
        (contact_list(pipeliner_contact(job_title="CEO")), r"'job_title' was unexpected"),
        (contact_list(pipeliner_contact(), has_next_page="no"), r"at \$\.page_info\.has_next_page"),
        ({"success": True}, r"'data' is a required property"),
        ({"success": True, "data": {"id": CONTACT_ID}}, r"at \$\.data: .* is not of type 'array'"),
        ([], r"is not of type 'object'"),
    ],
)
def test_wrong_contact_list_responses_are_rejected(body, message):
    with pytest.raises(ContractViolation, match=message):
        validate_pipeliner_response("GET", "/entities/Contacts", 200, body)


def test_open_mode_allows_undocumented_fields():
    body = contact_list(pipeliner_contact(job_title="CEO"))
    validate_pipeliner_response("GET", "/entities/Contacts", 200, body, closed=False)
    validate_pipeliner_schema(pipeliner_contact(job_title="CEO"), "Contact", closed=False)


def test_error_bodies_documented_and_undocumented():
    error = {
        "success": False,
        "http_status": 404,
        "code": 404,
        "name": "ERROR_ENTITY_NOT_FOUND",
        "message": "Contact not found",
    }
    validate_pipeliner_response("GET", "/entities/Contacts/{id}", 404, error)
    throttled = {**error, "http_status": 429, "name": "TOO_MANY_REQUESTS"}
    validate_pipeliner_response("GET", "/entities/Contacts", 429, throttled)
    with pytest.raises(ContractViolation, match="'http_status' is a required property"):
        validate_pipeliner_response("GET", "/entities/Contacts", 401, {"success": False})
    with pytest.raises(ContractViolation, match="does not document status 429"):
        validate_pipeliner_response("GET", "/entities/Contacts", 429, throttled, strict_status=True)
    with pytest.raises(ContractViolation, match="does not document status 204"):
        validate_pipeliner_response("DELETE", "/entities/Contacts/{id}", 204, None)


def test_batch_responses_mix_ids_and_errors():
    error = {
        "success": False,
        "http_status": 400,
        "code": 117,
        "name": "ERROR_PARAMETER_INVALID",
        "message": "bad email",
    }
    body = {"success": True, "data": [CONTACT_ID, error]}
    validate_pipeliner_response("POST", "/entities/Contacts/batch-modify", 200, body)
    validate_pipeliner_response(
        "POST", "/entities/Contacts/batch-delete", 200, {"success": True, "data": [CONTACT_ID]}
    )
    with pytest.raises(ContractViolation, match=r"at \$\.data\[0\]"):
        validate_pipeliner_response(
            "POST", "/entities/Contacts/batch-modify", 200, {"success": True, "data": [42]}
        )
    # The report names the branch that fits: an object item is judged as an Error.
    with pytest.raises(
        ContractViolation, match=r"at \$\.data\[1\]: 'http_status' is a required property"
    ):
        validate_pipeliner_response(
            "POST",
            "/entities/Contacts/batch-modify",
            200,
            {"success": True, "data": [CONTACT_ID, {"success": False}]},
        )


def test_expanded_relations_validate_as_their_entities():
    expanded = pipeliner_contact(primary_account=account())
    with pytest.raises(ContractViolation, match=r"at \$\.data\[0\]\.primary_account"):
        validate_pipeliner_response("GET", "/entities/Contacts", 200, contact_list(expanded))
    validate_pipeliner_response(
        "GET", "/entities/Contacts", 200, contact_list(expanded), expand="primary_account"
    )
    validate_pipeliner_schema(expanded, "Contact", expand=["primary_account"])

    broken = pipeliner_contact(primary_account={**account(), "name": 3})
    with pytest.raises(ContractViolation, match=r"\$\.data\[0\]\.primary_account\.name"):
        validate_pipeliner_response(
            "GET", "/entities/Contacts", 200, contact_list(broken), expand="primary_account"
        )

    relation = {
        "id": "r1",
        "is_delete_protected": False,
        "account": account(),
        "contact": f"{SPACE}/entities/Contacts/{CONTACT_ID}",
        "account_id": ACCOUNT_ID,
        "contact_id": CONTACT_ID,
        "is_primary": True,
    }
    nested = pipeliner_contact(account_relations=[relation])
    validate_pipeliner_schema(nested, "Contact", expand="account_relations.account")
    with pytest.raises(ContractViolation):
        validate_pipeliner_schema(nested, "Contact", expand="account_relations")
    with pytest.raises(KeyError, match="not a relation"):
        validate_pipeliner_schema(nested, "Contact", expand="first_name")


# --------------------------------------------------------------------------- Pipeliner requests


def test_request_schemas_are_found_under_both_media_type_spellings():
    create = pipeliner_request_schema("POST", "/entities/Contacts")  # 'application / json'
    assert create["$ref"].endswith("#/components/schemas/createContactInput")
    update = pipeliner_request_schema("PATCH", "/entities/Contacts/{id}")  # 'application/json'
    assert update["$ref"].endswith("#/components/schemas/updateContactInput")
    with pytest.raises(KeyError, match="no request body"):
        pipeliner_request_schema("GET", "/entities/Contacts")


def test_request_bodies_are_validated():
    validate_pipeliner_request(
        "POST", "/entities/Contacts", {"owner_id": OWNER_ID, "first_name": "Ada", "position": "CTO"}
    )
    validate_pipeliner_request("PATCH", "/entities/Contacts/{id}", {"phone1": "+1 555 0101"})
    validate_pipeliner_request(
        "POST",
        "/entities/Contacts/batch-modify",
        [{"id": CONTACT_ID, "email1": "a@b.example"}, {"owner_id": OWNER_ID, "last_name": "New"}],
    )
    validate_pipeliner_request("POST", "/entities/Contacts/batch-delete", [CONTACT_ID])


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/entities/Contacts", {"first_name": "Ada"}, "'owner_id' is a required property"),
        (
            "POST",
            "/entities/Contacts",
            {"owner_id": OWNER_ID, "modified": "2026-01-01T00:00:00"},
            r"at \$\.modified: is readOnly",
        ),
        ("PATCH", "/entities/Contacts/{id}", {"job_title": "CTO"}, "'job_title' was unexpected"),
        ("PATCH", "/entities/Contacts/{id}", {"email1": ["a@b.example"]}, r"at \$\.email1"),
        ("POST", "/entities/Contacts/batch-modify", {"id": CONTACT_ID}, "is not of type 'array'"),
        ("POST", "/entities/Contacts/batch-delete", [7], r"at \$\[0\]"),
    ],
)
def test_wrong_request_bodies_are_rejected(method, path, body, message):
    with pytest.raises(ContractViolation, match=message):
        validate_pipeliner_request(method, path, body)


def test_unknown_operations_and_schemas_are_errors_not_passes():
    with pytest.raises(KeyError, match="not in the spec"):
        validate_pipeliner_response("GET", "/entities/Leads", 200, {})
    with pytest.raises(KeyError, match="documented"):
        validate_pipeliner_response("PUT", "/entities/Contacts/{id}", 200, {})
    with pytest.raises(KeyError, match="known"):
        validate_pipeliner_schema({}, "Lead")


def test_openapi_nullable_becomes_a_type_union():
    schema = {"properties": {"a": {"type": "string", "nullable": True, "enum": ["x"]}}}
    specs._normalize(schema, closed=True)
    assert schema == {
        "type": "object",
        "additionalProperties": False,
        "properties": {"a": {"type": ["string", "null"], "enum": ["x", None]}},
    }
    assert "nullable" not in json.dumps(specs.pipeliner_document())
