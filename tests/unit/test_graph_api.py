"""contactsync.outlook.graph_api: settings offline, the client against the Graph emulator.

Tokens come straight from the sandbox token registry (the identity emulator's back end) through
a tiny fake token provider, so these tests exercise the Graph client alone.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import unquote

import pytest

from contactsync.http import HttpClient, HttpPolicy
from contactsync.outlook.graph_api import (
    DEFAULT_FOLDER_NAME,
    EXPANDED_PROPERTIES,
    Folder,
    GraphAuthError,
    GraphClient,
    GraphConfigError,
    GraphFolderError,
    GraphSettings,
    GraphThrottled,
    SyncStateExpired,
    normalize_graph_url,
)
from contactsync.outlook.pacing import MailboxPacer
from contactsync.outlook.projection import (
    EMPTY_SLOT_PROPERTY_ID,
    OTHER_PHONE_PROPERTY_ID,
    PIPELINER_ID_PROPERTY_ID,
    extended_property,
    from_graph,
    pipeliner_stamp,
    to_graph,
)
from contactsync_sandbox import tokens
from tests.contract.specs import validate_graph

# --------------------------------------------------------------------------- offline


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "https://graph.microsoft.com"),
        ("", "https://graph.microsoft.com"),
        ("https://graph.microsoft.com", "https://graph.microsoft.com"),
        ("https://graph.microsoft.com/", "https://graph.microsoft.com"),
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com"),
        ("https://graph.microsoft.com/v1.0/", "https://graph.microsoft.com"),
        ("  HTTPS://Graph.Microsoft.com/V1.0/me/contacts?$top=5 ", "https://graph.microsoft.com"),
        ("https://graph.microsoft.us", "https://graph.microsoft.us"),
        ("https://proxy.example/graph/v1.0", "https://proxy.example/graph"),
        ("https://127.0.0.1:8702/v1.0", "https://127.0.0.1:8702"),
        ("http://127.0.0.1:8702", "http://127.0.0.1:8702"),
        ("http://localhost:8702/v1.0/", "http://localhost:8702"),
        ("http://[::1]:8702", "http://[::1]:8702"),
    ],
)
def test_normalize_graph_url(given, expected):
    assert normalize_graph_url(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("http://graph.microsoft.com", "plain http"),
        ("ftp://graph.microsoft.com", "https://"),
        ("graph.microsoft.com", "https://"),
        ("https://user:pw@graph.microsoft.com", "credentials"),
        ("https://graph.microsoft.com/beta", "v1.0"),
        ("https://graph.microsoft.com?x=1", "query"),
        ("https://graph.microsoft.com:99999", "not a valid URL"),
        (42, "string"),
    ],
)
def test_normalize_graph_url_refuses(given, message):
    with pytest.raises(GraphConfigError, match="graph_url") as caught:
        normalize_graph_url(given)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert "pw" not in str(caught.value)


def test_settings_defaults_and_normalisation(tmp_path):
    settings = GraphSettings()
    assert settings.graph_url == "https://graph.microsoft.com"
    assert settings.api_url == "https://graph.microsoft.com/v1.0"
    assert (settings.mailbox, settings.user_path) == ("me", "/me")
    assert (settings.page_size, settings.delta_page_size) == (1000, 200)
    assert (settings.batch_size, settings.max_in_flight) == (20, 1)
    assert settings.policy.max_concurrency == 4
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    other = GraphSettings(
        graph_url="https://graph.microsoft.com/v1.0/",
        mailbox=" alex@contoso.example ",
        ca_bundle=f" {bundle} ",
    )
    assert other.graph_url == "https://graph.microsoft.com"
    assert other.user_path == "/users/alex@contoso.example"
    assert other.ca_bundle == str(bundle)
    assert GraphSettings(mailbox="ME").mailbox == "me"
    assert GraphSettings(ca_bundle="  ").ca_bundle is None
    assert DEFAULT_FOLDER_NAME == "Pipeliner"
    assert EXPANDED_PROPERTIES == (
        OTHER_PHONE_PROPERTY_ID,
        PIPELINER_ID_PROPERTY_ID,
        EMPTY_SLOT_PROPERTY_ID,
    )


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"delta_page_size": 201}, "delta_page_size"),
        ({"batch_size": 21}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_in_flight": 5}, "max_in_flight"),
        ({"max_in_flight": "4"}, "max_in_flight"),
        ({"mailbox": ""}, "mailbox"),
        ({"mailbox": "a/b"}, "mailbox"),
        ({"mailbox": "two words"}, "mailbox"),
        ({"ca_bundle": "/no/such/file.pem"}, "ca_bundle"),
        ({"policy": {"max_attempts": 2}}, "policy"),
        ({"graph_url": "http://example.com"}, "graph_url"),
    ],
)
def test_settings_refused(overrides, setting):
    with pytest.raises(GraphConfigError, match=setting):
        GraphSettings(**overrides)


def test_settings_accept_limits():
    settings = GraphSettings(
        page_size=1, delta_page_size=1, batch_size=1, max_in_flight=1, policy=HttpPolicy()
    )
    assert (settings.page_size, settings.batch_size) == (1, 1)


# --------------------------------------------------------------------------- against the emulator

ALEX = "d0000000-0000-4000-8000-000000000001"
ALEX_UPN = "alex@contoso.example"
MEGAN = "d0000000-0000-4000-8000-000000000002"
MEGAN_UPN = "megan@contoso.example"
APP_ID = "f0000000-0000-4000-8000-000000000001"
TENANT = "e0000000-0000-4000-8000-000000000001"
BATCH = "POST /v1.0/$batch"
FAST = HttpPolicy(
    max_attempts=10, backoff_base=0.01, backoff_max=0.1, total_budget=30.0, max_concurrency=4
)


class FakeTokens:
    """A test double of the identity provider: mints tokens straight into the sandbox registry."""

    def __init__(
        self, mailbox_id: str | None = ALEX, upn: str | None = ALEX_UPN, *, lifetime=3600.0
    ):
        self.mailbox_id, self.upn, self.lifetime = mailbox_id, upn, lifetime
        self.refreshes = 0
        self.issued: list[str] = []
        self._token = self._mint(3600.0)

    def _mint(self, lifetime: float) -> str:
        grant = tokens.REGISTRY.issue(
            client_id=APP_ID,
            tenant_id=TENANT,
            mailbox_id=self.mailbox_id,
            upn=self.upn,
            scopes=["Contacts.ReadWrite"] if self.mailbox_id else [".default"],
            lifetime=lifetime,
        )
        self.issued.append(grant.token)
        return grant.token

    def token(self) -> str:
        return self._token

    def refresh(self) -> str:
        self.refreshes += 1
        self._token = self._mint(self.lifetime)
        return self._token


class Emu:
    """The Graph emulator's control API, with its Graph-specific routes."""

    def __init__(self, sandbox) -> None:
        self.sandbox = sandbox
        self.control = sandbox.control("graph")

    def call(self, method: str, path: str, body=None):
        return self.control._call(method, f"/graph{path}", json=body)

    def new_folder(self, name: str, mailbox: str = ALEX_UPN, parent: str = "Contacts") -> str:
        body = {"displayName": name, "parent": parent}
        return self.call("POST", f"/mailboxes/{mailbox}/folders", body)["id"]

    def folders(self, mailbox: str = ALEX_UPN) -> list[dict]:
        return self.call("GET", f"/mailboxes/{mailbox}/folders")["folders"]

    def generate(self, folder: str, count: int, mailbox: str = ALEX_UPN) -> dict:
        return self.call(
            "POST", "/generate", {"mailbox": mailbox, "folder": folder, "count": count}
        )

    def contacts(self, folder: str, mailbox: str = ALEX_UPN) -> list[dict]:
        return self.call("GET", f"/mailboxes/{mailbox}/folders/{folder}/contacts")["contacts"]

    def add_contact(self, folder: str, body: dict, mailbox: str = ALEX_UPN) -> dict:
        return self.call("POST", f"/mailboxes/{mailbox}/folders/{folder}/contacts", body)

    def patch_contact(self, cid: str, body: dict, mailbox: str = ALEX_UPN) -> dict:
        return self.call("PATCH", f"/mailboxes/{mailbox}/contacts/{cid}", body)

    def delete_contact(self, cid: str, mailbox: str = ALEX_UPN) -> None:
        self.control.session.delete(
            f"{self.control.control_url}/graph/mailboxes/{mailbox}/contacts/{cid}"
        ).raise_for_status()

    def throttle(self, **settings) -> dict:
        return self.call("POST", "/throttle", settings)

    def stats(self, mailbox_id: str = ALEX) -> dict:
        return self.call("GET", "/stats")["mailboxes"].get(mailbox_id, {})

    def requests_to(self, endpoint: str) -> list[dict]:
        return [r for r in self.control.requests() if r["endpoint"] == endpoint]

    def count(self, endpoint: str) -> int:
        return self.control.endpoint(endpoint)["requests"]

    def total(self) -> int:
        return self.control.counters()["total"]["requests"]


@pytest.fixture
def emu(sandbox_reset) -> Emu:
    return Emu(sandbox_reset)


def _client(emu: Emu, provider=None, **overrides) -> GraphClient:
    values = {
        "graph_url": emu.sandbox.info["graph_url"],
        "ca_bundle": str(emu.sandbox.ca_path),
        "policy": FAST,
    }
    values.update(overrides)
    return GraphClient(GraphSettings(**values), provider or FakeTokens())


def _body(n: int, **extra) -> dict:
    values = {
        "first_name": f"Given{n}",
        "last_name": f"Sur{n}",
        "company": "Contoso",
        "email1": f"person{n}@example.com",
        "other_phone": f"+1 555 01{n:04d}",
        "business_phone": f"+1 555 02{n:04d}",
    }
    values.update(extra)
    body = to_graph(values, stamp=f"pl-{n}")
    validate_graph(body)
    return body


def _ids(contacts) -> list[str]:
    return [c["id"] for c in contacts]


# --------------------------------------------------------------------------- folders


def test_resolve_folder_by_name_alias_and_id(emu):
    graph = _client(emu)
    rows = {f["displayName"]: f for f in emu.folders()}
    pipeliner = graph.resolve_folder("pipeliner")
    assert pipeliner == Folder(
        rows["Pipeliner"]["id"], "Pipeliner", rows["Pipeliner"]["parentFolderId"]
    )
    default = graph.resolve_folder("Contacts")
    assert default.id == rows["Contacts"]["id"]
    assert graph.resolve_folder("CONTACTS") == default
    assert graph.resolve_folder(f"  {rows['Family']['id']} ").display_name == "Family"
    assert graph.resolve_folder(default.id) == default
    # A grandchild, by id only: personal because its parents lead to the default folder.
    nested = emu.new_folder("Deep", parent=rows["Family"]["id"])
    assert graph.resolve_folder(nested).display_name == "Deep"
    for row in emu.control.requests():
        assert row["path"].startswith("/v1.0/me/")


def test_resolve_folder_creates_once(emu):
    graph = _client(emu)
    created = graph.resolve_folder("Sync Target", create=True)
    assert created.display_name == "Sync Target"
    assert created.parent_folder_id == graph.resolve_folder("Contacts").id
    again = graph.resolve_folder("sync target", create=True)
    assert again == created
    assert [f["displayName"] for f in emu.folders()].count("Sync Target") == 1
    assert emu.count("POST /v1.0/me/contactFolders/{folder_id}/childFolders") == 1
    # No name at all means the default name.
    assert graph.resolve_folder("", create=True).display_name == DEFAULT_FOLDER_NAME


def test_resolve_folder_create_race_uses_the_existing_folder(emu):
    graph = _client(emu)
    default = graph.resolve_folder("Contacts")
    # Another run creates it between our listing and our create.
    emu.new_folder("Racing")
    found = graph._create_folder("Racing", default)
    assert found.display_name == "Racing"
    assert [f["displayName"] for f in emu.folders()].count("Racing") == 1


def test_resolve_folder_ambiguous_and_not_found(emu):
    graph = _client(emu)
    emu.new_folder("Contacts")  # a subfolder named like the default folder
    with pytest.raises(GraphFolderError, match="ambiguous") as caught:
        graph.resolve_folder("contacts")
    assert "`folder`" in str(caught.value)
    with pytest.raises(GraphFolderError) as caught:
        graph.resolve_folder("Nowhere")
    message = str(caught.value)
    for name in ("'Contacts'", "'Pipeliner'", "'Family'", "`folder`", "`create_folder`"):
        assert name in message
    assert isinstance(caught.value, ValueError)


def test_shared_folder_of_another_mailbox_is_refused(emu):
    team = next(f for f in emu.folders(MEGAN_UPN) if f["displayName"] == "Team")
    assert team["shared_with"]  # shared with alex, who could read it through Graph
    provider = FakeTokens()  # alex
    as_megan = _client(emu, provider, mailbox=MEGAN_UPN)
    for ref in ("Team", team["id"]):
        with pytest.raises(GraphFolderError, match="not a personal folder of megan") as caught:
            as_megan.resolve_folder(ref)
        assert "shared, delegated and public folders are not supported" in str(caught.value)
    # Megan's folder id given to alex's own mailbox: not one of alex's folders.
    with pytest.raises(GraphFolderError, match="not supported") as caught:
        _client(emu, provider).resolve_folder(team["id"])
    for token in provider.issued:
        assert token not in str(caught.value)


def test_folder_ids_of_other_mailboxes(emu):
    megan_default = next(f for f in emu.folders(MEGAN_UPN) if f["displayName"] == "Contacts")
    team = next(f for f in emu.folders(MEGAN_UPN) if f["displayName"] == "Team")
    app = FakeTokens(mailbox_id=None, upn=None)  # app-only: reads every mailbox
    with pytest.raises(GraphFolderError):
        _client(emu, app, mailbox=ALEX_UPN).resolve_folder(team["id"])
    # Megan's own folders are personal for megan.
    as_megan = _client(emu, app, mailbox=MEGAN)
    assert as_megan.resolve_folder("team").id == team["id"]
    assert as_megan.resolve_folder(megan_default["id"]).display_name == "Contacts"


def test_readable_folder_outside_the_default_tree_is_refused(emu, monkeypatch):
    """Graph may serve a shared folder by id through /me; its parents are not ours."""
    graph = _client(emu)
    default = graph.resolve_folder("Contacts")
    foreign = {
        "shared": Folder("shared", "Team", "their-default"),
        "their-default": Folder("their-default", "Contacts", "their-root"),
    }
    real = graph._get_folder

    def fake(folder_id):
        if folder_id in foreign:
            return foreign[folder_id], 200, None
        if folder_id == "their-root":
            return None, 404, "ErrorItemNotFound"
        return real(folder_id)

    monkeypatch.setattr(graph, "_get_folder", fake)
    with pytest.raises(GraphFolderError, match="'Team' is not a personal folder of me"):
        graph.resolve_folder("shared")
    assert graph._folder_by_id(default.id, default) == default


def test_mailbox_that_does_not_exist(emu):
    with pytest.raises(GraphConfigError, match="mailbox"):
        _client(emu, FakeTokens(None, None), mailbox="nobody@contoso.example").resolve_folder("x")


# --------------------------------------------------------------------------- reading


def test_list_contacts_pages_with_top_and_next_link(emu):
    folder_id = emu.new_folder("Big")
    emu.generate(folder_id, 2500)
    graph = _client(emu)
    folder = graph.resolve_folder("Big")
    emu.control.reset_counters()
    contacts = list(graph.list_contacts(folder))
    assert len(contacts) == len(set(_ids(contacts))) == 2500
    listed = emu.requests_to("GET /v1.0/me/contactFolders/{folder_id}/contacts")
    assert len(listed) == 3 == emu.total()
    assert "$top=1000" in listed[0]["query"]
    assert "$expand=singleValueExtendedProperties($filter=id eq " in unquote(listed[0]["query"])
    assert "$skip=1000" in listed[1]["query"]
    small = _client(emu, page_size=999)
    emu.control.reset_counters()
    assert len(list(small.list_contacts(folder))) == 2500
    assert emu.total() == 3


def test_contacts_carry_expanded_properties_and_find(emu):
    graph = _client(emu)
    folder = graph.resolve_folder("Pipeliner")
    created = graph.create_contacts(folder, [_body(1), _body(2, email1="Shared@Example.com")])
    assert all(r.ok and r.status == 201 for r in created)
    by_id = {c["id"]: c for c in graph.list_contacts(folder)}
    first = by_id[created[0].id]
    assert pipeliner_stamp(first) == "pl-1"
    assert extended_property(first, OTHER_PHONE_PROPERTY_ID) == "+1 555 010001"
    assert from_graph(first)["email1"] == "person1@example.com"
    found = graph.find_by_stamp(folder, "pl-2")
    assert _ids(found) == [created[1].id]
    assert pipeliner_stamp(found[0]) == "pl-2"
    assert _ids(graph.find_by_email(folder, "shared@example.COM")) == [created[1].id]
    assert graph.find_by_email(folder, "o'brien@example.com") == []
    assert graph.find_by_stamp(folder, "nobody") == []
    got = graph.get_contacts(folder, [created[0].id, created[1].id, created[0].id])
    assert set(got) == {created[0].id, created[1].id}
    assert pipeliner_stamp(got[created[0].id]) == "pl-1"
    graph.delete_contacts(folder, [created[1].id])
    assert set(graph.get_contacts(folder, [created[0].id, created[1].id])) == {created[0].id}
    assert graph.get_contacts(folder, []) == {}


# --------------------------------------------------------------------------- delta


def test_delta_initial_then_incremental(emu):
    folder_id = emu.new_folder("Delta")
    emu.generate(folder_id, 450)
    stamped = emu.add_contact(
        folder_id,
        {
            "givenName": "Stamped",
            "singleValueExtendedProperties": [
                {"id": PIPELINER_ID_PROPERTY_ID, "value": "pl-x"},
                {"id": OTHER_PHONE_PROPERTY_ID, "value": "+44 1"},
            ],
        },
    )
    graph = _client(emu)
    folder = graph.resolve_folder("Delta")
    emu.control.reset_counters()
    pages = list(graph.iter_delta(folder, None))
    contacts = [c for p in pages for c in p.contacts]
    assert len(contacts) == len(set(_ids(contacts))) == 451
    assert not any(p.removed or p.full_resync for p in pages)
    assert [bool(p.delta_link) for p in pages] == [False] * (len(pages) - 1) + [True]
    seen = {c["id"]: c for c in contacts}[stamped["id"]]
    assert pipeliner_stamp(seen) == "pl-x"
    assert extended_property(seen, OTHER_PHONE_PROPERTY_ID) == "+44 1"
    # 451 ids through delta (200 per page), the contents through one listing.
    assert emu.count("GET /v1.0/me/contactFolders/{folder_id}/contacts/delta") == 3
    assert emu.total() == 4
    link = pages[-1].delta_link

    emu.control.reset_counters()
    quiet = list(graph.iter_delta(folder, link))
    assert [(p.contacts, p.removed) for p in quiet] == [([], [])]
    assert emu.total() == 1
    link = quiet[-1].delta_link

    some = _ids(contacts[:3])
    emu.patch_contact(some[0], {"jobTitle": "Buyer"})
    emu.patch_contact(
        stamped["id"],
        {"singleValueExtendedProperties": [{"id": OTHER_PHONE_PROPERTY_ID, "value": "+44 2"}]},
    )
    emu.delete_contact(some[1])
    moved_to = emu.new_folder("Elsewhere")
    emu.call("POST", f"/mailboxes/{ALEX_UPN}/contacts/{some[2]}/move", {"folder": moved_to})
    new = emu.add_contact(folder_id, {"givenName": "New", "surname": "Person"})
    emu.control.reset_counters()
    changed = list(graph.iter_delta(folder, link))
    assert emu.total() == 2  # one delta page, one $batch of GETs
    got = {c["id"]: c for p in changed for c in p.contacts}
    assert set(got) == {some[0], stamped["id"], new["id"]}
    assert got[some[0]]["jobTitle"] == "Buyer"
    assert extended_property(got[stamped["id"]], OTHER_PHONE_PROPERTY_ID) == "+44 2"
    assert pipeliner_stamp(got[stamped["id"]]) == "pl-x"
    assert sorted(r for p in changed for r in p.removed) == sorted(some[1:3])
    assert changed[-1].delta_link and not changed[-1].full_resync


def test_delta_expired_link_restarts_once_with_full_resync(emu):
    folder_id = emu.new_folder("Expiring")
    emu.generate(folder_id, 30)
    graph = _client(emu)
    folder = graph.resolve_folder("Expiring")
    link = list(graph.iter_delta(folder, None))[-1].delta_link
    emu.generate(folder_id, 5)
    emu.call("POST", "/expire-delta-tokens", {"mailbox": ALEX_UPN, "folder": folder_id})
    emu.control.reset_counters()
    pages = list(graph.iter_delta(folder, link))
    assert all(p.full_resync for p in pages)
    ids = [c["id"] for p in pages for c in p.contacts]
    assert sorted(ids) == sorted(c["id"] for c in emu.contacts(folder_id))
    assert len(ids) == 35
    statuses = emu.control.endpoint("GET /v1.0/me/contactFolders/{folder_id}/contacts/delta")
    assert statuses["statuses"] == {"410": 1, "200": 1}
    # The new link works.
    again = list(graph.iter_delta(folder, pages[-1].delta_link))
    assert [(p.contacts, p.removed, p.full_resync) for p in again] == [([], [], False)]


def _expire_after_delta_pages(emu: Emu, graph: GraphClient, folder_id: str, pages: int) -> None:
    """Expire the folder's delta state after each of the first ``pages`` delta pages served."""
    original, served = graph._request, []

    def request(method: str, url: str, **options: Any) -> Any:
        response = original(method, url, **options)
        if "/delta" in url and len(served) < pages:
            served.append(url)
            emu.call("POST", "/expire-delta-tokens", {"mailbox": ALEX_UPN, "folder": folder_id})
        return response

    graph._request = request  # type: ignore[method-assign]


def test_delta_skiptoken_expiring_in_a_first_round_starts_it_again(emu):
    """Graph keeps Outlook's state tokens in a bounded cache: a nextLink's skiptoken can expire
    in the middle of the first round (410 syncStateNotFound). The round starts again instead of
    failing the run, a bounded number of times."""
    folder_id = emu.new_folder("Paging")
    emu.generate(folder_id, 30)
    graph = _client(emu, delta_page_size=10)
    folder = graph.resolve_folder("Paging")
    _expire_after_delta_pages(emu, graph, folder_id, pages=1)
    emu.control.reset_counters()
    pages = list(graph.iter_delta(folder, None))
    ids = [c["id"] for p in pages for c in p.contacts]
    assert sorted(ids) == sorted(c["id"] for c in emu.contacts(folder_id))
    assert not any(p.full_resync for p in pages) and pages[-1].delta_link
    statuses = emu.control.endpoint("GET /v1.0/me/contactFolders/{folder_id}/contacts/delta")
    assert statuses["statuses"] == {"200": 4, "410": 1}  # 1 page, expired, then all 3 again
    again = list(graph.iter_delta(folder, pages[-1].delta_link))
    assert [(p.contacts, p.removed) for p in again] == [([], [])]

    always = _client(emu, delta_page_size=10)
    _expire_after_delta_pages(emu, always, folder_id, pages=1000)
    with pytest.raises(SyncStateExpired, match="expired 3 times in a row"):
        list(always.iter_delta(folder, None))


def test_delta_link_of_another_host_restarts(emu):
    graph = _client(emu)
    folder = graph.resolve_folder("Pipeliner")
    pages = list(graph.iter_delta(folder, "https://graph.example.org/v1.0/me/x?$deltatoken=1"))
    assert pages[-1].full_resync and len([c for p in pages for c in p.contacts]) == 5


def test_delta_replays_are_deduplicated(emu):
    folder_id = emu.new_folder("Replays")
    emu.generate(folder_id, 5)
    graph = _client(emu, delta_page_size=10)
    folder = graph.resolve_folder("Replays")
    link = list(graph.iter_delta(folder, None))[-1].delta_link
    emu.generate(folder_id, 60)
    emu.call("POST", "/delta", {"replay_rate": 1.0, "seed": 7})
    emu.control.reset_counters()
    pages = list(graph.iter_delta(folder, link))
    ids = [c["id"] for p in pages for c in p.contacts]
    assert len(ids) == len(set(ids)) == 60
    deltas = emu.count("GET /v1.0/me/contactFolders/{folder_id}/contacts/delta")
    assert deltas == 6
    assert emu.count(BATCH) == 6  # each page's changes in one $batch; replays cost nothing


# --------------------------------------------------------------------------- writing


def test_thousand_creates_in_fifty_batches(emu):
    folder_id = emu.new_folder("Bulk")
    graph = _client(emu)
    folder = graph.resolve_folder("Bulk")
    bodies = [_body(n) for n in range(1000)]
    emu.control.reset_counters()
    results = graph.create_contacts(folder, bodies)
    assert [r.index for r in results] == list(range(1000))
    assert all(r.ok and r.status == 201 and r.id for r in results)
    assert len({r.id for r in results}) == 1000
    assert emu.count(BATCH) == 50
    assert emu.total() <= 55
    assert emu.stats()["max_in_flight"] <= 4
    assert graph.stats.batches == 50
    stored = {c["id"]: c for c in emu.contacts(folder_id)}
    assert len(stored) == 1000
    listed = {c["id"]: c for c in graph.list_contacts(folder)}
    for n, result in enumerate(results):
        assert pipeliner_stamp(listed[result.id]) == f"pl-{n}"
        assert from_graph(listed[result.id])["other_phone"] == f"+1 555 01{n:04d}"
        assert result.body["givenName"] == f"Given{n}"


def test_batches_in_flight_stay_within_the_mailboxs_four_concurrent_requests(emu, monkeypatch):
    """Graph runs up to 4 requests of an unordered batch at once, each counting against the
    mailbox's 4 concurrent requests ("Outlook service limits for JSON batching"). One batch in
    flight, or dependsOn-chained batches, are never throttled for it; four unordered batches in
    flight (the old assumption) are."""
    folder_id = emu.new_folder("Parallel")
    emu.throttle(request_seconds=0.01, concurrency_retry_after=0.1)
    bodies = [_body(n) for n in range(100)]

    one = _client(emu)
    results = one.create_contacts(one.resolve_folder("Parallel"), bodies)
    assert all(r.ok for r in results) and one.stats.inner_throttled == 0
    assert emu.stats()["throttled_concurrency"] == 0 and emu.stats()["max_in_flight"] == 4

    chained = _client(emu, max_in_flight=4)
    results = chained.create_contacts(chained.resolve_folder("Parallel"), bodies)
    assert all(r.ok for r in results) and chained.stats.inner_throttled == 0
    assert chained.stats.batches == 5 and emu.stats()["throttled_concurrency"] == 0

    unordered = _client(emu, max_in_flight=4)
    monkeypatch.setattr(unordered, "_batches_in_flight", lambda: (4, False))
    # The mailbox's pacer would hold them back (4 slots, an unordered batch takes 4): one
    # without that limit, as the client was before it.
    monkeypatch.setattr(unordered, "_pacer", MailboxPacer(None, 600, 16))
    results = unordered.create_contacts(unordered.resolve_folder("Parallel"), bodies)
    assert all(r.ok for r in results)  # written in the end, but after being throttled
    assert unordered.stats.inner_throttled > 0 and emu.stats()["throttled_concurrency"] > 0
    assert len(emu.contacts(folder_id)) == 3 * len(bodies)


def test_a_failed_request_in_a_chained_batch_fails_alone(emu):
    """In a dependsOn chain, a request that fails makes the ones after it answer 424 (not run):
    those are sent again; only the failed one is reported."""
    graph = _client(emu, max_in_flight=2)
    folder = graph.resolve_folder("Pipeliner")
    too_many = {
        "displayName": "X",
        "emailAddresses": [{"address": f"{n}@x.example"} for n in range(4)],
    }
    bodies = [_body(1), too_many, _body(2), _body(3)]
    results = graph.create_contacts(folder, bodies)
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].status == 400 and graph.stats.batches == 2
    names = sorted(c.get("givenName") or "" for c in emu.contacts("Pipeliner"))
    assert names.count("Given2") == names.count("Given3") == 1


def test_low_throttle_budget_writes_everything_exactly_once(emu):
    folder_id = emu.new_folder("Throttled")
    graph = _client(emu)
    folder = graph.resolve_folder("Throttled")
    emu.throttle(requests=40, window_seconds=0.6)
    results = graph.create_contacts(folder, [_body(n) for n in range(300)])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    stats = emu.stats()
    assert stats["throttled_budget"] > 0
    assert graph.stats.inner_throttled >= stats["throttled_budget"] > 0
    assert graph.stats.inner_retries > 0
    stored = emu.contacts(folder_id)
    assert len(stored) == 300
    assert sorted(pipeliner_stamp(c) for c in stored) == sorted(f"pl-{n}" for n in range(300))
    assert stats["max_in_flight"] <= 4
    assert emu.control.counters()["total"]["max_in_flight"] <= 4


def test_concurrency_limit_of_the_mailbox_is_honoured(emu):
    """Other requests of the same app hold the mailbox's slots: our inner requests get 429
    with their Retry-After and are sent again when slots are free; none is lost or doubled."""
    folder_id = emu.new_folder("Crowded")
    graph = _client(emu)
    folder = graph.resolve_folder("Crowded")
    emu.throttle(concurrency=2, concurrency_retry_after=0.2)
    emu.control.latency(1.0, path_prefix="/v1.0/me/contactFolders/Contacts", count=2)
    other = _client(emu)
    other._pacer = MailboxPacer(None, 600, 4)  # another process of the app: nothing shared
    busy = [threading.Thread(target=other.resolve_folder, args=("Contacts",)) for _ in range(2)]
    for thread in busy:
        thread.start()
    time.sleep(0.2)
    results = graph.create_contacts(folder, [_body(n) for n in range(100)])
    for thread in busy:
        thread.join()
    assert all(r.ok for r in results)
    assert len(emu.contacts(folder_id)) == 100
    assert emu.stats()["throttled_concurrency"] > 0
    assert graph.stats.inner_throttled > 0
    assert emu.stats()["max_in_flight"] <= 2


def test_clients_of_one_mailbox_in_one_process_share_its_four_slots(emu):
    """Two clients of the mailbox in one process take their slots from one pacer
    (contactsync.outlook.pacing): their requests never exceed Graph's 4 concurrent ones together,
    so the emulator's documented model refuses none of them."""
    emu.new_folder("Shared")
    emu.throttle(request_seconds=0.02, concurrency_retry_after=0.1)
    first, second = _client(emu), _client(emu)
    assert first._pacer is second._pacer
    folder = first.resolve_folder("Shared")
    results: list = []
    writers = [
        threading.Thread(
            target=lambda c=c, k=k: results.extend(
                c.create_contacts(folder, [_body(100 * k + n) for n in range(40)])
            )
        )
        for k, c in enumerate((first, second))
    ]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert len(results) == 80 and all(r.ok for r in results)
    assert emu.stats()["throttled_concurrency"] == 0 and emu.stats()["max_in_flight"] <= 4


def test_inner_retry_after_is_honoured(emu):
    folder_id = emu.new_folder("Waiting")
    graph = _client(emu, max_in_flight=1)
    folder = graph.resolve_folder("Waiting")
    emu.throttle(requests=20, window_seconds=1.0)
    emu.control.reset_counters()
    started = time.monotonic()
    results = graph.create_contacts(folder, [_body(n) for n in range(40)])
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    batches = emu.requests_to(BATCH)
    assert len(batches) >= 3
    # The second batch was refused whole; the retry came when the window had room again.
    assert batches[-1]["started"] - batches[0]["started"] >= 0.95
    assert 0.95 <= elapsed < 3.0
    assert graph.stats.inner_throttled >= 20
    assert len(emu.contacts(folder_id)) == 40


def test_outer_429_on_batch_is_retried_after_retry_after(emu):
    folder_id = emu.new_folder("Outer")
    graph = _client(emu, max_in_flight=1)
    folder = graph.resolve_folder("Outer")
    emu.control.burst_429(count=2, retry_after=0.3, path_prefix="/v1.0/$batch")
    emu.control.reset_counters()
    results = graph.create_contacts(folder, [_body(n) for n in range(25)])
    assert all(r.ok for r in results)
    assert len(emu.contacts(folder_id)) == 25
    batches = emu.requests_to(BATCH)
    assert [b["status"] for b in batches] == [429, 429, 200, 200]
    assert batches[2]["started"] - batches[1]["started"] >= 0.28
    assert graph.stats.throttled == 2


def test_dropped_create_batch_is_reported_never_repeated(emu):
    folder_id = emu.new_folder("Dropped")
    graph = _client(emu, max_in_flight=1)
    folder = graph.resolve_folder("Dropped")
    emu.control.drop(count=1, path_prefix="/v1.0/$batch")
    results = graph.create_contacts(folder, [_body(n) for n in range(30)])
    failed = [r for r in results if not r.ok]
    assert [r.index for r in failed] == list(range(20))
    assert all("may or may not have been created" in r.error for r in failed)
    assert all(r.status == 0 and r.id is None for r in failed)
    assert all(r.ok for r in results[20:])
    assert len(emu.contacts(folder_id)) == 10
    # Deletes are repeatable: a dropped batch is simply sent again.
    emu.control.drop(count=1, path_prefix="/v1.0/$batch")
    gone = graph.delete_contacts(folder, [r.id for r in results[20:]])
    assert all(r.ok for r in gone)
    assert emu.contacts(folder_id) == []


def test_outer_503_on_a_create_batch_is_retried_other_5xx_are_in_doubt(emu):
    folder_id = emu.new_folder("Unavailable")
    graph = _client(emu, max_in_flight=1)
    folder = graph.resolve_folder("Unavailable")
    emu.control.fail_5xx(count=1, status=503, path_prefix="/v1.0/$batch")
    results = graph.create_contacts(folder, [_body(n) for n in range(5)])
    assert all(r.ok for r in results)
    emu.control.fail_5xx(count=1, status=502, path_prefix="/v1.0/$batch")
    doubtful = graph.create_contacts(folder, [_body(n) for n in range(5, 8)])
    assert not any(r.ok for r in doubtful)
    assert all("may or may not have been created" in r.error for r in doubtful)
    assert len(emu.contacts(folder_id)) == 5


def test_gives_up_when_throttled_too_long(emu):
    folder_id = emu.new_folder("Hopeless")
    impatient = HttpPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, max_retry_after=1)
    graph = _client(emu, policy=impatient)
    folder = graph.resolve_folder("Hopeless")
    emu.throttle(requests=2, window_seconds=30)
    results = graph.create_contacts(folder, [_body(n) for n in range(4)])
    # Graph runs the batch's requests in parallel: which two get the budget is not fixed.
    written = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert len(written) == len(refused) == 2
    assert all(r.status == 429 and "max_retry_after" in (r.error or "") for r in refused)
    with pytest.raises(GraphThrottled):
        graph.get_contacts(folder, [written[0].id])
    with pytest.raises(GraphThrottled):
        list(graph.list_contacts(folder))
    assert len(emu.contacts(folder_id)) == 2


def test_update_with_stale_change_key_answers_412(emu):
    graph = _client(emu)
    folder = graph.resolve_folder("Pipeliner")
    [created] = graph.create_contacts(folder, [_body(7)])
    current = graph.get_contacts(folder, [created.id])[created.id]
    old_key = current["changeKey"]
    patch = to_graph({"job_title": "Chief"}, current, ["job_title"], stamp="pl-7")
    validate_graph(patch)
    [ok] = graph.update_contacts(folder, [(created.id, patch, old_key)])
    assert ok.ok and ok.status == 200 and ok.id == created.id
    assert ok.body["jobTitle"] == "Chief" and ok.body["changeKey"] != old_key
    stale_patch = to_graph({"job_title": "Stale"}, current, ["job_title"], stamp="pl-7")
    results = graph.update_contacts(
        folder,
        [
            (created.id, stale_patch, old_key),
            (created.id, {"personalNotes": "no If-Match"}, None),
            ("", {"jobTitle": "x"}, None),
        ],
    )
    stale, blind, bad = results
    assert (stale.ok, stale.status, stale.id) == (False, 412, created.id)
    assert stale.error.startswith("ErrorIrresolvableConflict: ")
    assert blind.ok and blind.body["personalNotes"] == "no If-Match"
    assert (bad.ok, bad.status) == (False, 0)
    stored = graph.get_contacts(folder, [created.id])[created.id]
    assert stored["jobTitle"] == "Chief"
    assert pipeliner_stamp(stored) == "pl-7"


def test_delete_of_missing_contact_counts_as_done(emu):
    graph = _client(emu)
    folder = graph.resolve_folder("Pipeliner")
    [created] = graph.create_contacts(folder, [_body(9)])
    results = graph.delete_contacts(folder, [created.id, created.id, "  "])
    # Graph runs a batch's requests in parallel: either delete may come first.
    assert [r.ok for r in results] == [True, True, False] and results[2].status == 0
    assert sorted(r.status for r in results[:2]) == [204, 404]
    assert results[1].id == created.id
    again = graph.delete_contacts(folder, [created.id])
    assert again[0].ok and again[0].status == 404


def test_write_errors_are_per_item(emu):
    graph = _client(emu)
    folder = graph.resolve_folder("Pipeliner")
    too_many = {
        "displayName": "X",
        "emailAddresses": [{"address": f"{n}@x.example"} for n in range(4)],
    }
    results = graph.create_contacts(folder, [_body(1), too_many, {}, _body(2)])
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].status == 400 and results[1].error
    assert results[2].status == 0


# --------------------------------------------------------------------------- tokens


def test_expired_token_mid_run_refreshes_once(emu):
    provider = FakeTokens()
    graph = _client(emu, provider)
    folder = graph.resolve_folder("Pipeliner")
    tokens.REGISTRY.expire_all()
    results = graph.create_contacts(folder, [_body(n) for n in range(80)])  # 4 batches at once
    assert all(r.ok for r in results)
    assert provider.refreshes == 1
    assert graph.stats.token_refreshes == 1
    tokens.REGISTRY.expire_all()
    assert len(list(graph.list_contacts(folder))) == 85
    assert provider.refreshes == 2
    tokens.REGISTRY.expire_all()
    pages = list(graph.iter_delta(folder, None))
    assert provider.refreshes == 3 and pages[-1].delta_link


def test_token_refused_after_refresh_fails_clearly(emu):
    provider = FakeTokens(lifetime=-1.0)  # every refreshed token is already expired
    graph = _client(emu, provider)
    folder = graph.resolve_folder("Pipeliner")
    tokens.REGISTRY.expire_all()
    with pytest.raises(GraphAuthError, match="even after refreshing it once") as caught:
        list(graph.list_contacts(folder))
    assert caught.value.status == 401 and caught.value.code == "InvalidAuthenticationToken"
    with pytest.raises(GraphAuthError) as batch_error:
        graph.create_contacts(folder, [_body(1)])
    for message in (str(caught.value), str(batch_error.value)):
        for token in provider.issued:
            assert token not in message
    assert provider.refreshes == 2


def test_provider_failure_is_an_auth_error(emu):
    class Broken(FakeTokens):
        def token(self) -> str:
            raise RuntimeError("no cached account: run the device-code sign-in")

    graph = _client(emu, Broken())
    with pytest.raises(GraphAuthError, match="device-code"):
        graph.resolve_folder("Pipeliner")


def test_injected_http_client_gets_the_bearer_header(emu):
    settings = GraphSettings(
        graph_url=emu.sandbox.info["graph_url"], ca_bundle=str(emu.sandbox.ca_path), policy=FAST
    )
    provider = FakeTokens()
    with HttpClient(settings.api_url, FAST, verify=settings.ca_bundle) as http:
        graph = GraphClient(settings, provider, http=http)
        folder = graph.resolve_folder("Pipeliner")
        tokens.REGISTRY.expire_all()
        assert all(r.ok for r in graph.create_contacts(folder, [_body(1), _body(2)]))
        assert len(list(graph.list_contacts(folder))) == 7
        graph.close()  # not ours to close
        assert graph.stats.attempts == http.stats.attempts > 0
    assert provider.refreshes == 1


# --------------------------------------------------------------------------- moves (issue #12)


def test_locate_contacts_finds_a_moved_contact_and_its_folder(emu):
    """A contact is read by id in the whole mailbox: one filed into another personal folder is
    found there (its folder by its current name), a deleted one is absent, and so is one in a
    folder outside the personal contacts folders; folders are looked up once per client."""
    graph = _client(emu)
    folder = graph.resolve_folder("Pipeliner")
    created = graph.create_contacts(folder, [_body(1), _body(2), _body(3)])
    moved, deleted, stays = (c.id for c in created)
    deep = emu.new_folder("Filed", parent=emu.folders()[0]["id"])
    emu.call("POST", f"/mailboxes/{ALEX_UPN}/contacts/{moved}/move", {"folder": deep})
    emu.delete_contact(deleted)
    found = graph.locate_contacts([moved, deleted, stays, moved])
    assert set(found) == {moved, stays}
    assert found[moved].folder.display_name == "Filed" and found[moved].folder.id == deep
    assert found[stays].folder.id == folder.id
    assert pipeliner_stamp(found[moved].contact) == "pl-1"
    assert graph.locate_contacts([]) == {}
    assert graph.personal_folder(deep) == found[moved].folder
    assert (
        graph.personal_folder("AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAA=")
        is None
    )
