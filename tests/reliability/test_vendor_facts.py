"""What the vendors say their services do, where our emulators once shared a wrong assumption
with our client (issue 13), through the real plugin processes: Pipeliner's job title of a contact
linked to an account, its validation level in a space with required fields, and Graph's empty
array slots, kept or dropped."""

from __future__ import annotations

from typing import Any

import pytest

from contactsync.outlook.projection import from_graph
from tests.reliability.conftest import contact, person
from tests.support.pipeline import Sync
from tests.support.plugins import ACCOUNTS


def _by_email(contacts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for c in contacts:
        if c.get("email1"):
            by[c["email1"]] = c
        for entry in c.get("emailAddresses") or ():
            if entry.get("address"):
                by.setdefault(entry["address"], c)
    return by


def test_the_job_title_of_a_linked_contact_is_its_account_position(sync: Sync) -> None:
    """Pipeliner shows a linked contact's job title from its primary account relation; the
    Quick Account Position (`position`) is hidden. Reading or writing `position` (the old
    assumption) shows Outlook the hidden value and puts Outlook's edits where nobody sees them.

    The space requires a custom field the sync never writes, as real spaces do: our writes
    validate only what they change (validation-level 2); with the default level (0) every one
    of them would be refused."""
    relation = {"account_id": ACCOUNTS["Contoso Ltd"], "is_primary": True, "position": "CTO"}
    sync.pipeliner.seed(
        [
            contact(1, position="Quick title", account_relations=[relation]),
            contact(2, position="Buyer", quick_account_name="Loose Ltd"),
        ],
        settings={"contact_required_fields": ["cf_region"]},
    )
    sync.run_ok()
    outlook = _by_email(sync.outlook_contacts())
    assert outlook["p1@rel.example"]["jobTitle"] == "CTO"
    assert outlook["p2@rel.example"]["jobTitle"] == "Buyer"

    pipeliner = _by_email(sync.pipeliner.contacts())
    linked, loose = pipeliner["p1@rel.example"]["id"], pipeliner["p2@rel.example"]["id"]
    # As a user in Pipeliner (whose form asks for the required field).
    sync.pipeliner.edit("alex", linked, account_position="CEO", cf_region="North")
    sync.outlook.edit(outlook["p2@rel.example"]["id"], jobTitle="Lead buyer")
    sync.outlook.create(
        sync.folder,
        givenName="Nia",
        surname="New",
        companyName="Fabrikam",
        jobTitle="Owner",
        emailAddresses=[{"address": "nia@rel.example", "name": "Nia"}],
    )
    sync.run_ok()
    assert _by_email(sync.outlook_contacts())["p1@rel.example"]["jobTitle"] == "CEO"
    raw = {c["id"]: sync.pipeliner.raw(c["id"]) for c in sync.pipeliner.contacts()}
    assert raw[loose]["position"] == "Lead buyer"
    [new] = [c for c in raw.values() if c.get("email1") == "nia@rel.example"]
    [new_relation] = new["account_relations"]
    assert new_relation["account_id"] == ACCOUNTS["Fabrikam"] and new_relation["is_primary"]
    assert new_relation["position"] == "Owner"  # linked at once: the job title is the relation's

    sync.outlook.edit(outlook["p1@rel.example"]["id"], jobTitle="Chair")
    sync.run_ok()
    after = sync.pipeliner.raw(linked)
    assert after["account_relations"][0]["position"] == "Chair"
    assert after["position"] == "Quick title"  # the hidden field is left alone
    assert_quiet(sync)


def assert_quiet(sync: Sync) -> None:
    """One more run writes nothing on either side."""
    revisions = {c["id"]: c["revision"] for c in sync.pipeliner.contacts()}
    keys = {c["id"]: c["changeKey"] for c in sync.outlook_contacts()}
    sync.run_ok()
    assert {c["id"]: c["revision"] for c in sync.pipeliner.contacts()} == revisions
    assert {c["id"]: c["changeKey"] for c in sync.outlook_contacts()} == keys


@pytest.mark.parametrize("compact", [False, True], ids=["empty-entries-kept", "dropped"])
def test_empty_list_slots_move_nothing_whether_graph_keeps_them_or_not(
    sync: Sync, compact: bool
) -> None:
    """We keep a Pipeliner slot's place in an Outlook list with an empty entry ("email2" stays
    second). Graph documents nothing about such entries; an Outlook client re-saving the list
    drops them. Either way no Pipeliner slot moves and nothing is written that nobody changed."""
    sync.outlook.storage(compact_empty_entries=compact)
    try:
        sync.pipeliner.seed([contact(1, email1="", email2="p1@rel.example", phone1="+1 1")])
        sync.run_ok()
        pid = sync.pipeliner.contacts()[0]["id"]
        [copy] = sync.outlook_contacts()
        addresses = [e["address"] for e in copy["emailAddresses"]]
        assert addresses == (["p1@rel.example"] if compact else ["", "p1@rel.example"])

        # In Outlook: the list re-saved without the empty entry, a job title, a second business
        # phone; in Pipeliner: the business phone cleared.
        sync.outlook.edit(
            copy["id"],
            emailAddresses=[{"address": "p1@rel.example", "name": "p1@rel.example"}],
            businessPhones=["+1 1", "+1 2"],
            jobTitle="Re-saved",
        )
        sync.pipeliner.edit("alex", pid, phone1="")
        sync.run_ok()
        after = sync.pipeliner.raw(pid)
        assert (after["email1"], after["email2"], after["phone1"]) == ("", "p1@rel.example", "")
        assert after["position"] == "Re-saved"
        [copy] = sync.outlook_contacts()
        assert copy["businessPhones"] == (["+1 2"] if compact else ["", "+1 2"])
        assert from_graph(copy)["business_phone"] is None
        assert_quiet(sync)
        assert sync.pipeliner.raw(pid)["email2"] == "p1@rel.example"
    finally:
        sync.outlook.storage(compact_empty_entries=False)


def test_a_two_way_sync_converges_when_every_service_closes_each_connection(sync: Sync) -> None:
    """Whether Graph, Pipeliner and the identity provider keep a connection open between
    requests is on no vendor page: the sandbox keeps them open by default (RFC 9112 §9.3), and
    here closes each after its answer, werkzeug's way, so every request (token refresh
    included) starts a new connection and TLS handshake."""
    names = ("pipeliner", "graph", "identity")
    for name in names:
        sync.sandbox.control(name).keep_alive(False)
    try:
        sync.pipeliner.seed([contact(n) for n in (1, 2, 3)])
        sync.outlook.new_folder(sync.folder)
        sync.outlook.create(sync.folder, **person(1))
        sync.sandbox.control("identity")._call("POST", "/identity/expire-access-tokens")
        sync.run_ok()
        outlook = _by_email(sync.outlook_contacts())
        sync.outlook.edit(outlook["p2@rel.example"]["id"], jobTitle="Edited in Outlook")
        sync.run_ok()
        pipeliner = _by_email(sync.pipeliner.contacts())
        assert len(outlook) == 4 and len(pipeliner) == 4  # three copied, one brought back
        assert sync.pipeliner.raw(pipeliner["p2@rel.example"]["id"])["position"] == (
            "Edited in Outlook"
        )
        assert_quiet(sync)
    finally:
        for name in names:
            sync.sandbox.control(name).keep_alive(True)
