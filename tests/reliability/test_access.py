"""Rights and scope over time (issue #11), through real tap | mapper | target processes.

* The periodic full read heals what an incremental read cannot see, under each reading of what
  Pipeliner does not document (emulator switches): a delete that does not move ``modified``, a
  sharing change that does not, deleted contacts purged before the next read.
* Properties: one_way_all_contacts follows unit moves, role changes and unit-tree changes (0
  leaked, 0 missing after the next run), and a two-way sync never writes a Pipeliner contact the
  user may not edit at that moment. The oracle is tests/support/access_oracle.py, written from
  docs/access-rules.md, not from ``contactsync.pipeliner.scope``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync.outlook.projection import pipeliner_stamp
from tests.reliability.conftest import AMERICAS, EUROPE, Sync, contact
from tests.support import access_oracle
from tests.support.plugins import USERS

ALEX = "alex@contoso.example"
CONTOSO = "a0000000-0000-4000-8000-000000000003"
ROLES = {  # the default seed's roles
    "rep": "b0000000-0000-4000-8000-000000000001",
    "rep-no-delete": "b0000000-0000-4000-8000-000000000002",
    "manager": "b0000000-0000-4000-8000-000000000003",
    "read-only": "b0000000-0000-4000-8000-000000000004",
}
SETTLED = {
    "sharing_bumps_contact": True,
    "delete_bumps_modified": True,
    "purge_deleted_after": None,
}


def _copies(sync: Sync) -> set[str]:
    return {pipeliner_stamp(c) or "?" for c in sync.outlook_contacts()}


def _ids(sync: Sync) -> dict[str, str]:
    rows = sync.pipeliner.contacts(include_deleted=True)
    return {c["email1"]: c["id"] for c in rows}


# --- the periodic full read ---------------------------------------------------------------------

MISSED = {
    "delete_bumps_modified=false": ({"delete_bumps_modified": False}, "delete"),
    "sharing_bumps_contact=false": ({"sharing_bumps_contact": False}, "unshare"),
    "purge_deleted_after=60": ({"purge_deleted_after": 60}, "delete+purge"),
}


@pytest.mark.parametrize("switch", list(MISSED))
def test_a_missed_change_heals_within_one_full_read(sync: Sync, switch: str) -> None:
    switches, change = MISSED[switch]
    sync.sync_type, sync.sync_option = "one_way_your_contacts", "owner_or_editor"
    sync.pipeliner.seed([contact(n) for n in range(1, 5)] + [contact(5, "nestor")])
    ids = _ids(sync)
    sync.pipeliner.share("nestor", ids["p5@rel.example"], client_id=USERS["alex"], role=2)
    # The last contact changed is re-read by every incremental run (its `modified` is the
    # bookmark): make it one the test leaves alone.
    sync.pipeliner.edit("alex", ids["p4@rel.example"], city="Bookmark")
    sync.outlook.new_folder(sync.folder)
    try:
        sync.run_ok()
        assert _copies(sync) == set(ids.values())
        sync.pipeliner.settings(**switches)
        if change == "unshare":
            gone = ids["p5@rel.example"]
            sync.pipeliner.unshare("nestor", gone, client_id=USERS["alex"])
        else:
            gone = ids["p1@rel.example"]
            sync.pipeliner.delete("alex", gone)
            if change == "delete+purge":
                sync.pipeliner.control._call(
                    "POST", "/pipeliner/clock", json={"advance_seconds": 120}
                )

        sync.extra["tap-pipeliner-contacts"] = {"full_read_interval": 3600}
        sync.run_ok()
        assert gone in _copies(sync), "the incremental read saw it: the switch did not matter"

        sync.extra["tap-pipeliner-contacts"] = {"full_read_interval": 0}  # the reconcile is due
        [leg] = sync.run_ok()
        assert _copies(sync) == set(ids.values()) - {gone}
        assert "reading every contact in Pipeliner" in leg.logs["tap-pipeliner-contacts"]
        counts = leg.report["counts"]
        assert counts["out_of_scope" if change == "unshare" else "deleted"] == 1
        if change == "unshare":  # leaving the scope never touches Pipeliner
            assert not sync.pipeliner.raw(gone).get("is_deleted")
    finally:
        sync.pipeliner.settings(**SETTLED)


# --- one_way_all_contacts over time (property) ---------------------------------------------------

PEOPLE = ("alex", "megan", "lynne", "nestor")
ADMIN_CHANGES = st.one_of(
    st.tuples(st.just("move_user"), st.sampled_from((EUROPE, AMERICAS))),
    st.tuples(st.just("role"), st.sampled_from(tuple(ROLES))),
    st.tuples(st.just("direction"), st.integers(1, 6)),
    st.tuples(st.just("level"), st.sampled_from((1, 2, 3, 4))),
    st.tuples(st.just("tree"), st.sampled_from(("europe-under-americas", "flat"))),
)
SHARING = st.fixed_dictionaries(
    {
        "owner": st.sampled_from(PEOPLE),
        "unit": st.sampled_from((EUROPE, AMERICAS)),
        "share_mode": st.sampled_from((0, 1, 2, 3)),
        "client": st.sampled_from((None, "alex", "megan")),
        "role": st.sampled_from((1, 2)),
        "unit_share": st.sampled_from((None, EUROPE, AMERICAS)),
    }
)


def _seed_sharing(sync: Sync, contacts: list[dict[str, Any]]) -> None:
    sync.pipeliner.seed(
        [
            contact(n, c["owner"], unit_id=c["unit"], share_mode=c["share_mode"])
            for n, c in enumerate(contacts, start=1)
        ]
    )
    ids = _ids(sync)
    for n, c in enumerate(contacts, start=1):
        cid = ids[f"p{n}@rel.example"]
        if c["client"] and c["client"] != c["owner"]:
            sync.pipeliner.share(c["owner"], cid, client_id=USERS[c["client"]], role=c["role"])
        if c["unit_share"]:
            sync.pipeliner.share(c["owner"], cid, unit_id=c["unit_share"], role=c["role"])


def _apply(sync: Sync, change: tuple[str, Any]) -> None:
    """One administrator's change to Alex's rights, as it is made in Pipeliner."""
    kind, value = change
    actor = sync.pipeliner
    role = next(u for u in actor.control.state()["users"] if u["email"] == ALEX)["master_right_id"]
    if kind == "move_user":
        actor.move_user("alex", value)
    elif kind == "role":
        actor.api("PATCH", f"/Clients/{USERS['alex']}", {"master_right_id": ROLES[value]})
    elif kind == "direction":
        actor.edit_role(role, access_entity_contact_direction=value)
    elif kind == "level":
        actor.edit_role(role, access_entity_contact=value)
    elif value == "europe-under-americas":
        actor.move_unit(EUROPE, AMERICAS)
    else:
        actor.move_unit(EUROPE, CONTOSO)


SEEN: list[dict[str, int]] = []


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    contacts=st.lists(SHARING, min_size=4, max_size=8),
    changes=st.lists(ADMIN_CHANGES, min_size=1, max_size=2),
)
def test_one_way_all_follows_every_change_of_the_users_rights(
    contacts: list[dict[str, Any]],
    changes: list[tuple[str, Any]],
    clean_sandbox: Any,
    token_cache: Path,
    tmp_path_factory: Any,
) -> None:
    sync = Sync(
        clean_sandbox,
        token_cache,
        tmp_path_factory.mktemp("all"),
        sync_type="one_way_all_contacts",
    )
    _seed_sharing(sync, contacts)
    sync.outlook.new_folder(sync.folder)
    sync.extra["tap-pipeliner-contacts"] = {"full_read_interval": 86400}  # no periodic read
    # Alex starts in Sales Europe: the first change always moves him, the others are drawn.
    for step in [None, ("move_user", AMERICAS), *changes]:
        if step is not None:
            _apply(sync, step)
        sync.run_ok()
        expected = access_oracle.visible(sync.pipeliner.control.state(), ALEX)
        copies = _copies(sync)
        SEEN.append({"leaked": len(copies - expected), "missing": len(expected - copies)})
        assert copies == expected, (step, sorted(copies - expected), sorted(expected - copies))


# --- two-way: no write without the right at that moment (property) --------------------------------

RIGHTS_CHANGES = st.one_of(
    st.tuples(st.just("share"), st.integers(0, 7), st.sampled_from((1, 2))),
    st.tuples(st.just("unshare"), st.integers(0, 7)),
    st.tuples(st.just("owner"), st.integers(0, 7), st.sampled_from(PEOPLE)),
    st.tuples(st.just("archive"), st.integers(0, 7)),
    st.tuples(st.just("admin"), ADMIN_CHANGES),
)


def _rights_change(sync: Sync, change: tuple[Any, ...], ids: list[str]) -> None:
    """A change to Alex's rights; on a contact that is in his folder when there is one."""
    kind, *args = change
    if kind == "admin":
        _apply(sync, args[0])
        return
    synced = sorted(_copies(sync) & set(ids))
    if kind == "unshare":  # of what Alex has through a share, when he has something so
        state = {c["id"]: c for c in sync.pipeliner.contacts()}
        synced = [i for i in synced if state[i]["owner_id"] != USERS["alex"]]
    targets = synced or ids
    cid = targets[args[0] % len(targets)]
    row = sync.pipeliner.raw(cid)
    owner = next(p for p in PEOPLE if USERS[p] == row["owner_id"])
    if kind == "share" and owner != "alex":
        sync.pipeliner.share(owner, cid, client_id=USERS["alex"], role=args[1])
    elif kind == "unshare" and owner != "alex":
        for share in row.get("sharing_clients") or ():
            if share["client_id"] == USERS["alex"]:
                sync.pipeliner.unshare(owner, cid, client_id=USERS["alex"])
        for share in row.get("sharing_units") or ():
            sync.pipeliner.unshare(owner, cid, unit_id=share["unit_id"])
    elif kind == "owner":
        sync.pipeliner._call(
            "POST", f"/users/{row['owner_id']}/contacts/{cid}/owner", {"owner_id": USERS[args[1]]}
        )
    elif kind == "archive":
        sync.pipeliner.edit(owner, cid, is_archived=not row.get("is_archived"))


def _alex_edits_his_folder(sync: Sync, n: int, delete: int) -> None:
    """Alex edits every copy in his folder, and deletes one."""
    copies = sorted(sync.outlook_contacts(), key=lambda c: c["id"])
    for index, copy in enumerate(copies):
        if index == delete % max(len(copies), 1):
            sync.outlook.delete(copy["id"])
        else:
            sync.outlook.edit(copy["id"], jobTitle=f"Edited {n}")


#: Always in the two-way property: what Alex holds only through a share, to see it taken away.
SHARED_WITH_ALEX = [
    {"owner": "nestor", "unit": EUROPE, "share_mode": 0, "client": "alex", "role": 2,
     "unit_share": None},
    {"owner": "megan", "unit": AMERICAS, "share_mode": 0, "client": "alex", "role": 2,
     "unit_share": None},
    {"owner": "lynne", "unit": AMERICAS, "share_mode": 0, "client": None, "role": 2,
     "unit_share": EUROPE},
]  # fmt: skip


WRITES: list[dict[str, int]] = []


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    contacts=st.lists(SHARING, min_size=2, max_size=5),
    sharing_bumps=st.booleans(),
    rounds=st.lists(
        st.tuples(st.lists(RIGHTS_CHANGES, min_size=1, max_size=3), st.integers(0, 7)),
        min_size=2,
        max_size=2,
    ),
)
def test_two_way_never_writes_pipeliner_without_the_right_at_that_moment(
    contacts: list[dict[str, Any]],
    sharing_bumps: bool,
    rounds: list[tuple[list[tuple[Any, ...]], int]],
    clean_sandbox: Any,
    token_cache: Path,
    tmp_path_factory: Any,
) -> None:
    sync = Sync(
        clean_sandbox,
        token_cache,
        tmp_path_factory.mktemp("rights"),
        sync_option="owner_or_editor",
    )
    _seed_sharing(sync, SHARED_WITH_ALEX + contacts)
    sync.pipeliner.settings(sharing_bumps_contact=sharing_bumps)  # both readings of the vendor
    ids = sorted(_ids(sync).values())
    sync.outlook.new_folder(sync.folder)
    sync.extra["tap-pipeliner-contacts"] = {"full_read_interval": 86400}  # no periodic read
    try:
        sync.run_ok()
        for n, (changes, delete) in enumerate(rounds):
            for change in changes:
                _rights_change(sync, change, ids)
            _alex_edits_his_folder(sync, n, delete)
            state = sync.pipeliner.control.state()
            alex = access_oracle.person(state, ALEX)
            allowed = {c["id"] for c in state["contacts"] if access_oracle.may_edit(c, alex)}
            deletable = {
                c["id"]
                for c in state["contacts"]
                if c["id"] in allowed
                and c["owner_id"] == USERS["alex"]
                and alex.role.get("access_entity_contact_delete")
                and not c.get("is_delete_protected")
            }
            before = {c["id"]: c for c in state["contacts"]}
            sync.run_ok()
            after = {c["id"]: c for c in sync.pipeliner.control.state()["contacts"]}
            written = {cid for cid, c in after.items() if cid in before and c != before[cid]}
            deleted = {cid for cid in written if after[cid].get("is_deleted")}
            created = {cid for cid in after if cid not in before}
            WRITES.append({"written": len(written), "not_allowed": len(set(before) - allowed)})
            assert written <= allowed, sorted(written - allowed)
            assert deleted <= deletable, sorted(deleted - deletable)
            assert all(after[cid]["owner_id"] == USERS["alex"] for cid in created)
    finally:
        sync.pipeliner.settings(**SETTLED)
