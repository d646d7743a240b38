"""contactsync.pipeliner.api: settings and timestamps offline, the client against the emulator.

Emulator tests seed small datasets through the sandbox control API and check both what the
client returns and what went over the wire (emulator counters and request log, and the bodies
against the vendor OpenAPI through tests/contract/specs.py).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from requests.auth import HTTPBasicAuth

from contactsync.http import HttpClient, HttpPolicy
from contactsync.pipeliner.api import (
    BatchItemResult,
    PipelinerAuthError,
    PipelinerClient,
    PipelinerConfigError,
    PipelinerError,
    PipelinerNotFound,
    PipelinerSettings,
    format_timestamp,
    normalize_service_url,
    parse_timestamp,
)
from contactsync.pipeliner.projection import from_pipeliner
from contactsync.pipeliner.scope import ContactSharing, SharingRole
from contactsync_sandbox.seed import default_seed, pipeliner_user
from tests.contract.specs import validate_pipeliner_request, validate_pipeliner_response

FAST = HttpPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05, total_budget=20.0)


def _settings(**overrides: object) -> PipelinerSettings:
    values: dict[str, object] = {
        "service_url": "https://eu-central.api.pipelinersales.com",
        "space_id": "space_1",
        "api_username": "user",
        "api_password": "s3cret-password",
    }
    values.update(overrides)
    return PipelinerSettings(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- service URL


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://eu-central.api.pipelinersales.com", "https://eu-central.api.pipelinersales.com"),
        ("https://eu-central.api.pipelinersales.com/", "https://eu-central.api.pipelinersales.com"),
        (
            "  HTTPS://EU-Central.api.pipelinersales.com//  ",
            "https://eu-central.api.pipelinersales.com",
        ),
        (
            "https://eu-central.api.pipelinersales.com/api/v100/rest/spaces/abc_1/",
            "https://eu-central.api.pipelinersales.com",
        ),
        (
            "https://us-east.api.pipelinersales.com/api/v100/rest/spaces/abc/entities/Contacts"
            "?first=5",
            "https://us-east.api.pipelinersales.com",
        ),
        ("https://host.example:8443/api/v100", "https://host.example:8443"),
        (
            "https://proxy.example/pipeliner/api/v100/rest/spaces/x",
            "https://proxy.example/pipeliner",
        ),
        ("http://127.0.0.1:8701", "http://127.0.0.1:8701"),
        ("http://127.1.2.3/", "http://127.1.2.3"),
        ("http://localhost:8701/api/v100/rest/spaces/s", "http://localhost:8701"),
        ("http://[::1]:8701", "http://[::1]:8701"),
    ],
)
def test_normalize_service_url_accepts(given: str, expected: str) -> None:
    assert normalize_service_url(given) == expected


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("http://eu-central.api.pipelinersales.com", "https://"),
        ("http://10.0.0.1:8701", "https://"),
        ("http://localhost.evil.example", "https://"),
        ("ftp://eu-central.api.pipelinersales.com", "https://"),
        ("eu-central.api.pipelinersales.com", "https://"),
        ("", "empty"),
        ("   ", "empty"),
        ("https://user:pw@eu-central.api.pipelinersales.com", "api_username"),
        ("https://eu-central.api.pipelinersales.com/?space=1", "query"),
        ("https://host.example:99999", "not a valid URL"),
    ],
)
def test_normalize_service_url_refuses(given: str, hint: str) -> None:
    with pytest.raises(PipelinerConfigError) as caught:
        normalize_service_url(given)
    message = str(caught.value)
    assert "service_url" in message
    assert hint in message
    assert "pw@" not in message
    assert isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------- settings


def test_settings_normalise_and_hide_the_password() -> None:
    settings = _settings(
        service_url="https://h.example/api/v100/rest/spaces/space_1/", space_id=" space_1 "
    )
    assert settings.service_url == "https://h.example"
    assert settings.space_id == "space_1"
    assert settings.api_url == "https://h.example/api/v100/rest/spaces/space_1"
    assert settings.page_size == 100
    assert "s3cret-password" not in repr(settings)


@pytest.mark.parametrize("name", ["service_url", "space_id", "api_username", "api_password"])
@pytest.mark.parametrize("empty", ["", "  ", None])
def test_settings_refuse_empty_required_values(name: str, empty: object) -> None:
    if name == "api_password" and empty == "  ":
        empty = ""  # a password of spaces is a password
    with pytest.raises(PipelinerConfigError, match=name):
        _settings(**{name: empty})


@pytest.mark.parametrize("size", [0, 101, -1, 2.5, True, "50"])
def test_settings_refuse_bad_page_size(size: object) -> None:
    with pytest.raises(PipelinerConfigError, match="page_size"):
        _settings(page_size=size)


@pytest.mark.parametrize("size", [1, 2, 100])
def test_settings_accept_page_sizes_in_range(size: int) -> None:
    assert _settings(page_size=size).page_size == size


def test_settings_refuse_a_space_id_with_a_path_and_a_missing_ca_bundle(tmp_path) -> None:
    with pytest.raises(PipelinerConfigError, match="space_id"):
        _settings(space_id="abc/entities")
    with pytest.raises(PipelinerConfigError, match="ca_bundle"):
        _settings(ca_bundle=str(tmp_path / "missing.pem"))
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert _settings(ca_bundle=str(bundle)).ca_bundle == str(bundle)
    assert _settings(ca_bundle="").ca_bundle is None


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-01T00:00:00", datetime(2019, 1, 1, tzinfo=UTC)),
        ("2019-01-01T00:00:00Z", datetime(2019, 1, 1, tzinfo=UTC)),
        ("2019-01-01 10:00:00.5+02:00", datetime(2019, 1, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("2019-01-01T10:00:00.123456789+0000", datetime(2019, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2019-01-01T10:00-01:30", datetime(2019, 1, 1, 11, 30, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2019-13-01T00:00:00", "2019-01-01"])
def test_parse_timestamp_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_format_timestamp_is_utc_with_z_and_round_trips() -> None:
    assert format_timestamp(datetime(2024, 5, 1, 12, 30, tzinfo=UTC)) == "2024-05-01T12:30:00Z"
    plus2 = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2024, 5, 1, 12, 30, 0, 5, tzinfo=plus2)) == (
        "2024-05-01T10:30:00.000005Z"
    )
    assert format_timestamp(datetime(2024, 5, 1)) == "2024-05-01T00:00:00Z"  # naive = UTC
    moment = datetime(2024, 5, 1, 1, 2, 3, 456789, tzinfo=UTC)
    assert parse_timestamp(format_timestamp(moment)) == moment


# --------------------------------------------------------------------------- no server


def test_unreachable_host_fails_quickly_with_a_hint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    policy = HttpPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.02, total_budget=3.0)
    settings = _settings(service_url=f"http://127.0.0.1:{port}", policy=policy)
    started = time.monotonic()
    with PipelinerClient(settings) as client, pytest.raises(PipelinerError) as caught:
        list(client.iter_contacts())
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "service_url" in message
    assert f"127.0.0.1:{port}" in message
    assert "s3cret-password" not in message
    assert not isinstance(caught.value, PipelinerAuthError | PipelinerNotFound)


def test_batch_modify_refuses_a_create_without_owner_before_sending() -> None:
    # A closed port: any request would fail, so passing proves nothing was sent.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = _settings(service_url=f"http://127.0.0.1:{port}")
    with PipelinerClient(settings) as client:
        results = client.batch_modify([{"first_name": "No owner"}, "junk", {"id": ""}])
        assert [r.ok for r in results] == [False, False, False]
        assert "owner_id" in (results[0].error or "")
        assert results == sorted(results, key=lambda r: r.index)
        assert client.batch_delete([]) == []
        assert client.stats.attempts == 0
    assert isinstance(results[0], BatchItemResult)


# =========================================================================== against the emulator

UNIT_EU = "a0000000-0000-4000-8000-000000000001"
UNIT_ROOT = "a0000000-0000-4000-8000-000000000003"
ACCOUNT_A = "60000000-0000-4000-8000-0000000000a1"
ACCOUNT_B = "60000000-0000-4000-8000-0000000000b1"
ACCOUNT_B2 = "60000000-0000-4000-8000-0000000000b2"
ACCOUNT_GONE = "60000000-0000-4000-8000-0000000000c1"
ENDPOINT = "/api/v100/rest/spaces/{space_id}/entities"


def pipeliner_space_id() -> str:
    return str(default_seed()["pipeliner"]["space_id"])


def _user_id(email: str) -> str:
    return str(pipeliner_user(email)["id"])


def _cid(n: int) -> str:
    return f"20000000-0000-4000-8000-{n:012d}"


def _seed(control, *, contacts=(), accounts=(), **settings: object) -> None:
    """The default identities (users, roles, units) with only the given contacts/accounts."""
    data = default_seed()["pipeliner"]
    data.pop("demo_contacts", None)
    data["accounts"] = list(accounts)
    data["contacts"] = list(contacts)
    if settings:
        data["settings"] = settings
    control.seed(data)
    control.clear_faults()
    control.reset_counters()


def _contact(n: int, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": _cid(n),
        "owner_id": _user_id("alex@contoso.example"),
        "first_name": f"First{n}",
        "last_name": f"Last{n}",
        "email1": f"person{n}@example.com",
    }
    row.update(fields)
    return row


class RecordingHttp(HttpClient):
    """The real HttpClient, remembering each request and answer for the contract checks."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[tuple[str, str, dict, object, object]] = []
        self.after: Callable[[str, str], None] | None = None  # hook run after each answer

    def request(self, method, path_or_url, **options):  # type: ignore[override]
        response = super().request(method, path_or_url, **options)
        self.calls.append(
            (
                method.upper(),
                path_or_url,
                dict(options.get("params") or {}),
                options.get("json"),
                response,
            )
        )
        if self.after is not None:
            self.after(method.upper(), path_or_url)
        return response

    def check_contract(self) -> int:
        """Validate every body sent and received against the vendor OpenAPI; returns the count."""
        checked = 0
        for method, path, params, body, response in self.calls:
            template = "/" + path.split("?")[0]
            parts = template.split("/")
            if len(parts) == 4 and parts[3] not in (
                "batch-modify",
                "batch-delete",
                "batch-restore",
            ):
                template = "/".join([*parts[:3], "{id}"])
            if template.startswith("/entities/SalesUnits"):
                continue  # outside the pruned spec (the emulator serves it for the unit tree)
            if body is not None:
                validate_pipeliner_request(method, template, body)
            validate_pipeliner_response(
                method,
                template,
                response.status_code,
                response.json(),
                expand=params.get("expand", ""),
            )
            checked += 1
        return checked


@pytest.fixture
def pipeliner(sandbox):
    """The Pipeliner emulator's control client, seeded with identities only, no contacts."""
    control = sandbox.control("pipeliner")
    _seed(control)
    yield control
    control.clear_faults()


@pytest.fixture
def make_client(sandbox, pipeliner):
    """`make_client(**settings overrides)` → a PipelinerClient on the emulator (closed after)."""
    made: list[PipelinerClient] = []

    def make(**overrides: object) -> PipelinerClient:
        values: dict[str, object] = {
            "service_url": sandbox.info["pipeliner_url"],
            "space_id": sandbox.info["pipeliner_space_id"],
            "api_username": sandbox.info["pipeliner_api_username"],
            "api_password": sandbox.info["pipeliner_api_password"],
            "ca_bundle": str(sandbox.ca_path),
            "policy": FAST,
        }
        values.update(overrides)
        settings = PipelinerSettings(**values)  # type: ignore[arg-type]
        http = RecordingHttp(
            settings.api_url,
            settings.policy,
            verify=settings.ca_bundle or True,
            auth=HTTPBasicAuth(settings.api_username, settings.api_password),
        )
        client = PipelinerClient(settings, http=http)
        client.recorder = http  # type: ignore[attr-defined]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
        client.recorder.close()  # type: ignore[attr-defined]


def _list_requests(control, entity: str = "Contacts") -> list[dict]:
    return [r for r in control.requests() if r["endpoint"] == f"GET {ENDPOINT}/{entity}"]


def _count(control, key: str) -> int:
    return int(control.endpoint(key)["requests"])


# --------------------------------------------------------------------------- reading contacts


@pytest.mark.parametrize(("total", "page_size"), [(7, 2), (25, 10), (250, 100)])
def test_iter_contacts_pages_with_cursors_and_yields_each_contact_once(
    pipeliner, make_client, total: int, page_size: int
) -> None:
    _seed(pipeliner, contacts=[_contact(n) for n in range(total)])
    client = make_client(page_size=page_size)
    rows = list(client.iter_contacts())
    ids = [row["id"] for row in rows]
    assert sorted(ids) == sorted(_cid(n) for n in range(total))
    assert len(set(ids)) == total
    assert client.last_read_complete
    modified = [parse_timestamp(row["modified"]) for row in rows]
    assert modified == sorted(modified)
    pages = -(-total // page_size)
    assert pages >= 3
    log = _list_requests(pipeliner)
    assert len(log) == pages  # one request per page, none after has_next_page is false
    assert all(f"first={page_size}" in r["query"] for r in log)
    assert all("order-by=modified" in r["query"] for r in log)
    assert "after=" not in log[0]["query"] and all("after=" in r["query"] for r in log[1:])
    assert client.recorder.check_contract() == pages


def test_a_contact_changed_while_paging_is_read_once_and_not_lost(pipeliner, make_client) -> None:
    _seed(pipeliner, contacts=[_contact(n) for n in range(9)])
    client = make_client(page_size=3)
    reader = client.iter_contacts()
    first_page = [next(reader) for _ in range(3)]
    # Two edits while we page: one of a contact already read, then one of a contact ahead.
    edits = client.batch_modify(
        [{"id": first_page[0]["id"], "position": "CEO"}, {"id": _cid(8), "position": "CTO"}]
    )
    assert all(r.ok for r in edits)
    rest = list(reader)
    seen = [row["id"] for row in [*first_page, *rest]]
    assert len(seen) == len(set(seen))
    assert first_page[0]["id"] not in [row["id"] for row in rest]
    assert not client.last_read_complete  # stopped at the repeat
    # The next incremental run, from the largest `modified` read, gets what was left.
    bookmark = max(parse_timestamp(row["modified"]) for row in [*first_page, *rest])
    later = {row["id"]: row for row in client.iter_contacts(modified_since=bookmark)}
    assert client.last_read_complete
    assert later[first_page[0]["id"]]["position"] == "CEO"
    assert later[_cid(8)]["position"] == "CTO"
    assert set(seen) | set(later) == {_cid(n) for n in range(9)}


def test_modified_since_returns_only_changed_contacts_in_one_request(
    pipeliner, make_client
) -> None:
    contacts = [
        _contact(n, modified=f"2025-03-0{n + 1}T10:00:00.{n:06d}Z", created="2025-01-01T00:00:00Z")
        for n in range(6)
    ]
    _seed(pipeliner, contacts=contacts)
    client = make_client()
    since = datetime(2025, 3, 4, 10, 0, 0, 3, tzinfo=UTC)  # == contact 3's modified
    rows = list(client.iter_contacts(modified_since=since))
    assert [row["id"] for row in rows] == [_cid(3), _cid(4), _cid(5)]
    log = _list_requests(pipeliner)
    assert len(log) == 1
    assert "filter-op%5Bmodified%5D=gte" in log[0]["query"]
    assert "filter%5Bmodified%5D=2025-03-04T10%3A00%3A00.000003Z" in log[0]["query"]
    # Nothing changed since the newest one: one request, no rows.
    newest = parse_timestamp(rows[-1]["modified"]) + timedelta(microseconds=1)
    assert list(client.iter_contacts(modified_since=newest)) == []
    assert _count(pipeliner, f"GET {ENDPOINT}/Contacts") == 2
    client.recorder.check_contract()


@pytest.mark.parametrize("style", ["vendor", "iso_z", "naive"])
def test_every_timestamp_style_of_the_api_parses_and_filters(pipeliner, make_client, style) -> None:
    contacts = [_contact(n, modified=f"2025-03-0{n + 1}T10:00:00Z") for n in range(3)]
    _seed(pipeliner, contacts=contacts, timestamp_format=style)
    client = make_client()
    rows = list(client.iter_contacts())
    stamps = [parse_timestamp(row["modified"]) for row in rows]
    assert stamps == [datetime(2025, 3, n + 1, 10, tzinfo=UTC) for n in range(3)]
    assert [r["id"] for r in client.iter_contacts(modified_since=stamps[1])] == [_cid(1), _cid(2)]


def test_include_deleted(pipeliner, make_client) -> None:
    _seed(pipeliner, contacts=[_contact(0), _contact(1, is_deleted=True), _contact(2)])
    client = make_client()
    rows = {row["id"]: row for row in client.iter_contacts()}
    assert set(rows) == {_cid(0), _cid(1), _cid(2)}
    assert rows[_cid(1)]["is_deleted"] is True and rows[_cid(0)]["is_deleted"] is False
    live = [row["id"] for row in client.iter_contacts(include_deleted=False)]
    assert sorted(live) == [_cid(0), _cid(2)]
    client.recorder.check_contract()


def _accounts() -> list[dict[str, object]]:
    alex = _user_id("alex@contoso.example")
    return [
        {"id": ACCOUNT_A, "name": "Acme Corp", "owner_id": alex},
        {"id": ACCOUNT_B, "name": "Globex", "owner_id": alex},
        {"id": ACCOUNT_B2, "name": "GLOBEX", "owner_id": alex},
        {"id": ACCOUNT_GONE, "name": "Initech", "owner_id": alex, "is_deleted": True},
    ]


def test_expand_gives_the_primary_account_name_and_sharing_in_the_same_request(
    pipeliner, make_client
) -> None:
    megan = _user_id("megan@contoso.example")
    contacts = [
        _contact(
            0,
            account_relations=[
                {"account_id": ACCOUNT_A, "is_primary": True},
                {"account_id": ACCOUNT_B, "is_primary": False},
            ],
            sharing_clients=[{"client_id": megan, "role": 2}],
            sharing_units=[{"unit_id": UNIT_EU, "role": 1}],
            share_mode=1,
        ),
        _contact(1, quick_account_name="Free text Ltd"),
    ]
    _seed(pipeliner, contacts=contacts, accounts=_accounts())
    client = make_client()
    rows = {row["id"]: row for row in client.iter_contacts()}
    linked, loose = rows[_cid(0)], rows[_cid(1)]
    assert linked["primary_account"]["name"] == "Acme Corp"
    assert from_pipeliner(linked)["company"] == "Acme Corp"
    assert from_pipeliner(loose)["company"] == "Free text Ltd"
    sharing = ContactSharing.from_api(linked)
    assert sharing.sharing_clients == ((megan, SharingRole.EDITOR),)
    assert sharing.sharing_units == ((UNIT_EU, SharingRole.WATCHER),)
    assert sharing.share_mode == 1
    assert ContactSharing.from_api(loose).sharing_clients == ()
    assert _count(pipeliner, f"GET {ENDPOINT}/Contacts") == 1
    assert (
        "expand=primary_account%2Csharing_clients%2Csharing_units"
        in (_list_requests(pipeliner)[0]["query"])
    )
    client.recorder.check_contract()


def test_get_contact_and_get_contacts(pipeliner, make_client) -> None:
    _seed(
        pipeliner,
        contacts=[_contact(n, is_deleted=n == 3) for n in range(8)],
        accounts=_accounts(),
    )
    client = make_client(policy=HttpPolicy(max_concurrency=3, backoff_base=0.01))
    one = client.get_contact(_cid(2))
    assert one is not None and one["id"] == _cid(2) and "sharing_clients" in one
    deleted = client.get_contact(_cid(3))
    assert deleted is not None and deleted["is_deleted"] is True
    assert client.get_contact(_cid(99)) is None
    assert client.get_contact("not-a-uuid") is None
    pipeliner.reset_counters()
    pipeliner.latency(0.05, path_prefix="/api/")
    wanted = [_cid(n) for n in range(8)] + [_cid(99), _cid(0)]
    found = client.get_contacts(wanted)
    assert set(found) == {_cid(n) for n in range(8)}
    assert found[_cid(3)]["is_deleted"] is True
    stats = pipeliner.endpoint(f"GET {ENDPOINT}/Contacts")
    assert stats["requests"] == 9  # one per distinct id
    assert 1 < stats["max_in_flight"] <= 3
    assert client.get_contacts([]) == {}
    client.recorder.check_contract()


def test_find_contacts_is_case_insensitive_over_three_emails_and_skips_deleted(
    pipeliner, make_client
) -> None:
    contacts = [
        _contact(0, email1="Pat@Example.com"),
        _contact(1, email1="other@example.com", email2="pat@example.COM"),
        _contact(2, email3="PAT@example.com", is_deleted=True),
        _contact(3, first_name="Zoë", last_name="Ångström", email1=""),
        _contact(4, first_name="ZOË", last_name="ångström", email1=""),
        _contact(5, first_name="Zoë", last_name="Other", email1=""),
    ]
    _seed(pipeliner, contacts=contacts)
    client = make_client()
    by_mail = client.find_contacts(email=" pat@EXAMPLE.com ")
    assert sorted(row["id"] for row in by_mail) == [_cid(0), _cid(1)]
    assert _count(pipeliner, f"GET {ENDPOINT}/Contacts") == 3
    by_name = client.find_contacts(first_name="zoë", last_name="ÅNGSTRÖM")
    assert sorted(row["id"] for row in by_name) == [_cid(3), _cid(4)]
    assert len(client.find_contacts(first_name="Zoë", limit=1)) == 1
    assert client.find_contacts(email="nobody@example.com") == []
    with pytest.raises(ValueError):
        client.find_contacts()
    client.recorder.check_contract()


# --------------------------------------------------------------------------- users and accounts


def test_resolve_user_by_id_and_by_email(pipeliner, make_client) -> None:
    client = make_client()
    nestor = pipeliner_user("nestor@contoso.example")
    by_id = client.resolve_user(user_id=nestor["id"])
    by_mail = client.resolve_user(email="NESTOR@Contoso.Example")
    assert by_id == by_mail
    assert by_id.client["id"] == nestor["id"]
    assert by_id.role["id"] == nestor["master_right_id"]
    user = by_id.sync_user
    assert user.id == nestor["id"]
    assert user.role.can_delete is True
    assert UNIT_EU in user.managed_unit_ids
    assert UNIT_EU in user.unit_ids
    assert user.units.ancestors(UNIT_EU) == {UNIT_ROOT}  # the tree came from SalesUnits
    alex = client.resolve_user(email="alex@contoso.example")
    assert alex.sync_user.unit_ids == {UNIT_EU} and not alex.sync_user.managed_unit_ids
    client.recorder.check_contract()


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"email": "nobody@contoso.example"}, "user_email"),
        ({"user_id": "c0000000-0000-4000-8000-0000000000ff"}, "user_id"),
        ({"user_id": "not-a-uuid"}, "user_id"),
        ({}, "user_id"),
        (
            {"user_id": "c0000000-0000-4000-8000-000000000001", "email": "megan@contoso.example"},
            "user_email",
        ),
    ],
)
def test_resolve_user_refuses_unknown_users(pipeliner, make_client, kwargs, setting) -> None:
    client = make_client()
    with pytest.raises(PipelinerConfigError, match=setting):
        client.resolve_user(**kwargs)


def test_find_accounts_matches_case_insensitively_and_never_guesses(pipeliner, make_client) -> None:
    _seed(pipeliner, accounts=_accounts())
    client = make_client()
    found = client.find_accounts(["ACME corp", "Acme Corp", "globex", "Initech", "Nope", "", "  "])
    assert found == {"acme corp": ACCOUNT_A}  # Globex is ambiguous, Initech deleted
    assert _count(pipeliner, f"GET {ENDPOINT}/Accounts") == 4  # one per distinct name
    assert client.find_accounts(["acme CORP", "Globex"]) == {"acme corp": ACCOUNT_A}
    assert _count(pipeliner, f"GET {ENDPOINT}/Accounts") == 4  # cached
    client.recorder.check_contract()


def test_set_primary_account(pipeliner, make_client) -> None:
    contacts = [
        _contact(0, quick_account_name="Acme Corp"),
        _contact(1, account_relations=[{"account_id": ACCOUNT_B, "is_primary": False}]),
    ]
    _seed(pipeliner, contacts=contacts, accounts=_accounts())
    client = make_client()
    client.set_primary_account(_cid(0), ACCOUNT_A)
    contact = client.get_contact(_cid(0))
    assert contact is not None and contact["primary_account"]["id"] == ACCOUNT_A
    client.set_primary_account(_cid(0), ACCOUNT_A)  # already primary: nothing sent
    assert _count(pipeliner, f"POST {ENDPOINT}/ContactAccountRelations") == 1
    with pytest.raises(PipelinerError, match="non-primary"):
        client.set_primary_account(_cid(1), ACCOUNT_B)
    client.recorder.check_contract()


# --------------------------------------------------------------------------- batch writes


def test_batch_modify_saves_the_valid_items_and_reports_the_invalid_one(
    pipeliner, make_client
) -> None:
    _seed(pipeliner, contacts=[_contact(0), _contact(1)])
    client = make_client()
    alex = _user_id("alex@contoso.example")
    items = [
        {"id": _cid(0), "position": "Buyer", "phone1": "+1 555 0100"},
        {"owner_id": alex, "first_name": "New", "last_name": "Person", "email1": "new@example.com"},
        {"owner_id": "c0000000-0000-4000-8000-0000000000ff", "first_name": "Bad owner"},
        {"first_name": "No owner"},
        {"id": _cid(1), "last_name": "Changed"},
        {"id": _cid(77), "last_name": "Unknown"},
    ]
    results = client.batch_modify(items)
    assert [r.index for r in results] == list(range(6))
    assert [r.ok for r in results] == [True, True, False, False, True, False]
    assert results[0].id == _cid(0) and results[4].id == _cid(1)
    assert results[1].id and results[1].error is None
    bad_owner = results[2].error or ""
    assert "ERROR_ENTITY_VALIDATION" in bad_owner and "owner_id" in bad_owner
    assert bad_owner.split(":")[0].split() == ["40000", "ERROR_ENTITY_VALIDATION"]
    assert "owner_id is required" in (results[3].error or "")
    assert "ERROR_ENTITY_NOT_FOUND" in (results[5].error or "") and results[5].id == _cid(77)
    # One request; the item refused locally was not sent; rollback-method=1 kept the others.
    log = [r for r in pipeliner.requests() if r["endpoint"].endswith("/Contacts/batch-modify")]
    assert len(log) == 1 and "rollback-method=1" in log[0]["query"]
    sent = client.recorder.calls[0][3]
    assert len(sent) == 5 and all("owner_id" in i or "id" in i for i in sent)
    saved = client.get_contacts([_cid(0), _cid(1), results[1].id])
    assert saved[_cid(0)]["position"] == "Buyer" and saved[_cid(1)]["last_name"] == "Changed"
    assert saved[results[1].id]["email1"] == "new@example.com"
    client.recorder.check_contract()


def test_writes_succeed_in_a_space_with_required_fields_we_never_write(
    pipeliner, make_client, monkeypatch
) -> None:
    """Real spaces make custom fields required; we send validation-level 2 (validate what the
    request changes), so our creates and updates still succeed there. With the default (0)
    every write of a contact missing such a field would be refused."""
    _seed(
        pipeliner,
        contacts=[_contact(0)],
        accounts=_accounts(),
        contact_required_fields=["cf_region", "phone3"],
    )
    client = make_client()
    alex = _user_id("alex@contoso.example")
    items = [{"id": _cid(0), "city": "Oslo"}, {"owner_id": alex, "first_name": "New"}]
    assert [r.ok for r in client.batch_modify(items)] == [True, True]
    client.set_primary_account(_cid(0), ACCOUNT_A, position="CTO")
    assert client.get_contact(_cid(0))["account_position"] == "CTO"
    assert [r.ok for r in client.batch_delete([_cid(0)])] == [True]
    assert [r.ok for r in client.batch_restore([_cid(0)])] == [True]
    log = [r for r in pipeliner.requests() if "/Contacts/batch-" in r["endpoint"]]
    assert log and all("validation-level=2" in r["query"] for r in log)
    # What we send is still validated: clearing a required field is refused for that item.
    cleared = client.batch_modify([{"id": _cid(0), "phone3": ""}])
    assert not cleared[0].ok and "phone3" in (cleared[0].error or "")
    # The old assumption (no validation-level: 0, every field) fails every write here.
    monkeypatch.setattr("contactsync.pipeliner.api.VALIDATION_LEVEL", 0)
    assert [r.ok for r in client.batch_modify(items)] == [False, False]


def test_batch_modify_chunks_250_items_into_3_requests_in_order(pipeliner, make_client) -> None:
    client = make_client()
    alex = _user_id("alex@contoso.example")
    items = [{"owner_id": alex, "first_name": f"P{n}", "last_name": "Bulk"} for n in range(250)]
    results = client.batch_modify(items)
    assert len(results) == 250 and all(r.ok for r in results)
    assert [r.index for r in results] == list(range(250))
    assert len({r.id for r in results}) == 250
    assert _count(pipeliner, f"POST {ENDPOINT}/Contacts/batch-modify") == 3
    assert [len(call[3]) for call in client.recorder.calls] == [100, 100, 50]
    rows = {row["id"]: row for row in client.iter_contacts()}
    assert len(rows) == 250
    assert [rows[r.id]["first_name"] for r in results[:3]] == ["P0", "P1", "P2"]
    assert rows[results[249].id]["first_name"] == "P249"
    client.recorder.check_contract()


def test_batch_delete_and_restore(pipeliner, make_client) -> None:
    _seed(pipeliner, contacts=[_contact(n, is_delete_protected=n == 2) for n in range(4)])
    client = make_client()
    deleted = client.batch_delete([_cid(0), _cid(1), _cid(2), _cid(99), ""])
    assert [r.ok for r in deleted] == [True, True, False, False, False]
    assert [r.id for r in deleted[:4]] == [_cid(0), _cid(1), _cid(2), _cid(99)]
    assert "ERROR_ENTITY_DELETE_PROTECTED" in (deleted[2].error or "")
    assert "ERROR_ENTITY_NOT_FOUND" in (deleted[3].error or "")
    rows = {row["id"]: row["is_deleted"] for row in client.iter_contacts()}
    assert rows == {_cid(0): True, _cid(1): True, _cid(2): False, _cid(3): False}
    restored = client.batch_restore([_cid(0), _cid(99)])
    assert [r.ok for r in restored] == [True, False]
    assert client.get_contact(_cid(0))["is_deleted"] is False  # type: ignore[index]
    assert client.get_contact(_cid(1))["is_deleted"] is True  # type: ignore[index]
    log = [r for r in pipeliner.requests() if "/Contacts/batch-" in r["endpoint"]]
    assert len(log) == 2 and all("rollback-method=1" in r["query"] for r in log)
    client.recorder.check_contract()


# --------------------------------------------------------------------------- faults and errors


def test_429_burst_and_5xx_are_retried_without_duplicates(pipeliner, make_client) -> None:
    _seed(pipeliner, contacts=[_contact(n) for n in range(5)])
    client = make_client(page_size=2, policy=HttpPolicy(max_attempts=8, backoff_base=0.01))
    pipeliner.burst_429(3, retry_after=0.05, path_prefix="/api/")
    pipeliner.fail_5xx(2, status=503, method="GET")
    assert len(list(client.iter_contacts())) == 5
    alex = _user_id("alex@contoso.example")
    pipeliner.burst_429(2, retry_after=0.05, method="POST")
    created = client.batch_modify([{"owner_id": alex, "first_name": "Once"}])
    assert created[0].ok
    pipeliner.fail_5xx(2, status=502, method="POST")
    updated = client.batch_modify([{"id": _cid(0), "position": "Retried"}])  # updates: repeatable
    assert updated[0].ok
    contacts = list(client.iter_contacts())
    assert len(contacts) == 6
    assert sum(1 for c in contacts if c["first_name"] == "Once") == 1
    statuses = pipeliner.endpoint(f"POST {ENDPOINT}/Contacts/batch-modify")["statuses"]
    assert statuses == {"200": 2, "429": 2, "502": 2}
    assert client.stats.throttled == 5


def test_a_5xx_on_a_batch_with_creates_is_not_repeated(pipeliner, make_client) -> None:
    client = make_client()
    alex = _user_id("alex@contoso.example")
    pipeliner.fail_5xx(1, status=500, method="POST")
    with pytest.raises(PipelinerError, match="500"):
        client.batch_modify([{"owner_id": alex, "first_name": "Maybe"}])
    assert _count(pipeliner, f"POST {ENDPOINT}/Contacts/batch-modify") == 1
    assert list(client.iter_contacts()) == []


def test_a_failed_later_chunk_keeps_the_results_of_the_earlier_ones(pipeliner, make_client) -> None:
    client = make_client()
    alex = _user_id("alex@contoso.example")

    def fail_the_next_post(method: str, path: str) -> None:
        if method == "POST" and len(client.recorder.calls) == 1:
            pipeliner.fail_5xx(1, status=500, method="POST")

    client.recorder.after = fail_the_next_post
    items = [{"owner_id": alex, "first_name": f"P{n}"} for n in range(230)]
    results = client.batch_modify(items)
    assert [r.ok for r in results] == [True] * 100 + [False] * 130
    assert "may or may not have been created" in (results[100].error or "")
    assert "not sent" in (results[200].error or "")
    assert _count(pipeliner, f"POST {ENDPOINT}/Contacts/batch-modify") == 2  # no third request
    assert {r.id for r in results[:100]} == {row["id"] for row in client.iter_contacts()}


def test_bad_credentials_give_an_auth_error_without_the_password(pipeliner, make_client) -> None:
    wrong = "wrong-password-1234"
    client = make_client(api_password=wrong)
    with pytest.raises(PipelinerAuthError) as caught:
        list(client.iter_contacts())
    message = str(caught.value)
    assert message.startswith(
        "Pipeliner rejected the application keys (api_username/api_password) for space "
    )
    assert pipeliner_space_id() in message
    assert wrong not in message and wrong not in repr(caught.value.__cause__)
    assert caught.value.status == 401
    with pytest.raises(PipelinerAuthError):
        client.resolve_user(email="alex@contoso.example")
    assert _count(pipeliner, f"GET {ENDPOINT}/Contacts") == 1  # 401 is not retried


def test_unknown_space_is_reported_as_not_found(pipeliner, make_client) -> None:
    client = make_client(space_id="no_such_space")
    for call in (
        lambda: list(client.iter_contacts()),
        lambda: client.get_contact(_cid(1)),
        lambda: client.resolve_user(user_id=_user_id("alex@contoso.example")),
    ):
        with pytest.raises(PipelinerNotFound) as caught:
            call()
        assert "space_id 'no_such_space'" in str(caught.value)


def test_dropped_connections_on_reads_are_retried(pipeliner, make_client) -> None:
    _seed(pipeliner, contacts=[_contact(n) for n in range(3)])
    client = make_client()
    pipeliner.drop(2, method="GET")
    assert len(list(client.iter_contacts())) == 3
    assert client.stats.transport_errors == 2


def test_another_service_at_service_url_is_reported(sandbox, pipeliner) -> None:
    # The echo emulator is an HTTPS server that is not Pipeliner: the API paths answer 404.
    settings = PipelinerSettings(
        sandbox.url("echo"), "space_1", "u", "p4ssw0rd", ca_bundle=str(sandbox.ca_path), policy=FAST
    )
    with PipelinerClient(settings) as client, pytest.raises(PipelinerNotFound) as caught:
        list(client.iter_contacts())
    assert "space_id 'space_1'" in str(caught.value) and "service_url" in str(caught.value)


def test_a_tls_failure_points_at_ca_bundle(sandbox, pipeliner) -> None:
    settings = PipelinerSettings(
        sandbox.info["pipeliner_url"], sandbox.info["pipeliner_space_id"], "u", "p4ssw0rd"
    )  # no ca_bundle: the sandbox CA is not trusted
    with PipelinerClient(settings) as client, pytest.raises(PipelinerError) as caught:
        client.resolve_user(email="alex@contoso.example")
    assert "ca_bundle" in str(caught.value) and "p4ssw0rd" not in str(caught.value)


class _HtmlHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_non_json_answer_means_a_wrong_service_url() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = _settings(service_url=f"http://127.0.0.1:{server.server_address[1]}")
        with PipelinerClient(settings) as client, pytest.raises(PipelinerError) as caught:
            client.get_contact(_cid(1))
        assert "text/html" in str(caught.value) and "service_url" in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()
