"""Seed files of a team's own (`serve --seed`, `--seed-dir`, `check`, `export`): short forms and
defaults, errors that name the file, row and field, merging, and the export round trip."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from contactsync_sandbox import cli
from contactsync_sandbox.fixture import (
    SeedError,
    build_seed,
    load_seed_files,
    seed_dir_files,
    write_seed,
)
from contactsync_sandbox.seed import default_seed

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SEED = ROOT / "examples" / "ci" / "tests" / "fixtures" / "seed.json"
ALEX = "alex@contoso.example"


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _rows(seed: dict[str, Any], key: str, by: str = "name") -> dict[str, dict[str, Any]]:
    return {row[by]: row for row in seed["pipeliner"][key]}


def test_the_example_seed_loads_with_names_resolved_to_made_up_ids():
    seed = load_seed_files([EXAMPLE_SEED])
    units, roles = _rows(seed, "units"), _rows(seed, "roles")
    users, accounts = _rows(seed, "users", "email"), _rows(seed, "accounts")
    alex = users[ALEX]
    assert alex["default_unit_id"] == units["Sales"]["id"]
    assert alex["unit_member_ids"] == [units["Sales"]["id"]]
    assert alex["master_right_id"] == roles["Sales Rep"]["id"]
    assert accounts["Fabrikam"]["owner_id"] == alex["id"]
    ada, _grace, alan = seed["pipeliner"]["contacts"]
    assert ada["owner_id"] == alex["id"]
    assert ada["account_relations"][0]["account_id"] == accounts["Fabrikam"]["id"]
    assert alan["owner_id"] == users["megan@contoso.example"]["id"]
    # Made-up ids are the same on every load (a replayed fixture keeps its ids).
    assert load_seed_files([EXAMPLE_SEED]) == seed
    boxes = {b["user_principal_name"]: b for b in seed["microsoft"]["mailboxes"]}
    assert boxes[ALEX]["display_name"] == "Alex Wilber"
    assert boxes[ALEX]["pipeliner_user_id"] == alex["id"]
    # The default seed's mailbox id for its users; nothing else is taken from it.
    assert boxes[ALEX]["id"] == "d0000000-0000-4000-8000-000000000001"
    assert seed["microsoft"]["tenant_id"] == "e0000000-0000-4000-8000-0000000000c1"
    assert "demo_contacts" not in seed["pipeliner"]


def test_the_readme_example_is_the_example_seed():
    readme = (ROOT / "sandbox" / "README.md").read_text()
    section = readme.split("## Your own data (seed files)", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    example = json.loads(EXAMPLE_SEED.read_text())
    example.pop("_comment")
    assert json.loads(block.group(1)) == example


def test_left_out_parts_come_from_the_default_seed():
    defaults = default_seed()
    empty = build_seed([("empty", {})])
    assert empty["pipeliner"]["space_id"] == defaults["pipeliner"]["space_id"]
    assert empty["pipeliner"]["users"] == defaults["pipeliner"]["users"]
    assert empty["pipeliner"]["accounts"] == defaults["pipeliner"]["accounts"]
    assert empty["pipeliner"]["contacts"] == []  # never the 300 demo contacts
    # Every Pipeliner user gets an empty mailbox, with the default seed's id.
    boxes = {b["user_principal_name"]: b for b in empty["microsoft"]["mailboxes"]}
    assert set(boxes) == {u["email"] for u in defaults["pipeliner"]["users"]}
    assert boxes[ALEX]["id"] == "d0000000-0000-4000-8000-000000000001"
    assert boxes[ALEX]["contacts_folder"] == {"contacts": []}

    # Own users: the default units and roles stay (users refer to them), accounts go (they
    # would refer to the default users).
    own_users = build_seed(
        [
            (
                "users",
                {
                    "pipeliner": {
                        "users": [
                            {
                                "email": "kim@x.example",
                                "default_unit_id": "Sales Europe",
                                "master_right_id": "Read Only",
                            }
                        ]
                    }
                },
            )
        ]
    )
    assert own_users["pipeliner"]["units"] == defaults["pipeliner"]["units"]
    assert own_users["pipeliner"]["accounts"] == []
    (kim,) = own_users["pipeliner"]["users"]
    assert kim["master_right_id"] == "b0000000-0000-4000-8000-000000000004"
    assert [b["user_principal_name"] for b in own_users["microsoft"]["mailboxes"]] == [
        "kim@x.example"
    ]
    assert own_users["microsoft"]["mailboxes"][0]["display_name"] == "kim@x.example"


def test_files_merge_lists_and_refuse_two_values_of_one_key(tmp_path):
    people = _write(
        tmp_path / "10-people.json",
        {"pipeliner": {"contacts": [{"owner_id": ALEX, "first_name": "One"}]}},
    )
    more = _write(
        tmp_path / "20-more.json",
        {
            "pipeliner": {"contacts": [{"owner_id": "megan@contoso.example", "first_name": "Two"}]},
            "microsoft": {"mailboxes": [{"user_principal_name": ALEX}]},
        },
    )
    _write(tmp_path / "notes.txt", "not a seed")
    assert seed_dir_files(tmp_path) == [people, more]
    seed = load_seed_files(seed_dir_files(tmp_path))
    assert [c["first_name"] for c in seed["pipeliner"]["contacts"]] == ["One", "Two"]
    assert [b["user_principal_name"] for b in seed["microsoft"]["mailboxes"]] == [ALEX]

    _write(tmp_path / "30-space.json", {"pipeliner": {"space_id": "other"}})
    _write(tmp_path / "40-space.json", {"pipeliner": {"space_id": "another"}})
    with pytest.raises(SeedError) as caught:
        load_seed_files(seed_dir_files(tmp_path))
    assert caught.value.problems == [
        f"{tmp_path / '40-space.json'}: pipeliner.space_id differs from its value in "
        f"{tmp_path / '30-space.json'} (set it in one file only)"
    ]


BAD_ROWS = {
    "unknown user": (
        {"pipeliner": {"contacts": [{"owner_id": "bob@contoso.example", "first_name": "X"}]}},
        "bad.json: pipeliner.contacts[0].owner_id: no user with the e-mail "
        "'bob@contoso.example' (known: alex@contoso.example, lynne@contoso.example",
    ),
    "unknown id": (
        {
            "pipeliner": {
                "accounts": [{"name": "A", "owner_id": "c0000000-0000-4000-8000-0000000000ff"}]
            }
        },
        "bad.json: pipeliner.accounts[0].owner_id: no user with the id "
        "'c0000000-0000-4000-8000-0000000000ff'",
    ),
    "ambiguous name": (
        {
            "pipeliner": {
                "units": [
                    {"name": "Sales"},
                    {"name": "sales", "id": "a0000000-0000-4000-8000-0000000000aa"},
                ],
                "users": [{"email": "k@x", "default_unit_id": "Sales", "master_right_id": "r"}],
                "roles": [{"name": "r"}],
            }
        },
        "bad.json: pipeliner.users[0].default_unit_id: 2 units are called 'Sales'; use the id",
    ),
    "a unit in a list": (
        {
            "pipeliner": {
                "units": [{"name": "U"}],
                "roles": [{"name": "R"}],
                "users": [
                    {
                        "email": "k@x",
                        "default_unit_id": "U",
                        "master_right_id": "R",
                        "unit_member_ids": ["U", "Nowhere"],
                    }
                ],
            }
        },
        "bad.json: pipeliner.users[0].unit_member_ids[1]: no unit with the name 'Nowhere'",
    ),
    "unknown field": (
        {
            "pipeliner": {
                "contacts": [
                    {"owner_id": ALEX, "first_name": "A"},
                    {"owner_id": ALEX, "frist_name": "Y"},
                ]
            }
        },
        "bad.json: pipeliner.contacts[1]: unknown field 'frist_name'",
    ),
    "wrong type": (
        {"pipeliner": {"contacts": [{"owner_id": ALEX, "first_name": "Y", "email1": 5}]}},
        "bad.json: pipeliner.contacts[0]: email1 must be str, got 5",
    ),
    "graph limit": (
        {
            "microsoft": {
                "mailboxes": [
                    {
                        "user_principal_name": ALEX,
                        "contacts_folder": {
                            "childFolders": [
                                {
                                    "displayName": "Pipeliner",
                                    "contacts": [
                                        {
                                            "givenName": "Z",
                                            "emailAddresses": [
                                                {"address": f"z{i}@x.example"} for i in range(4)
                                            ],
                                        }
                                    ],
                                }
                            ]
                        },
                    }
                ]
            }
        },
        "bad.json: microsoft.mailboxes[0] (alex@contoso.example), folder Pipeliner: contact #0: "
        "The multi value property EmailAddresses has 4 entries",
    ),
    "unknown section": ({"pipelinr": {}}, "bad.json: unknown key 'pipelinr'"),
    "not a list": ({"pipeliner": {"contacts": {}}}, "bad.json: pipeliner.contacts must be a list"),
    "syntax": ('{"pipeliner": {"contacts": [}', "bad.json: line 1, column 29: Expecting value"),
}


@pytest.mark.parametrize("name", BAD_ROWS)
def test_problems_name_the_file_row_and_field(tmp_path, name):
    data, expected = BAD_ROWS[name]
    path = _write(tmp_path / "bad.json", data)
    with pytest.raises(SeedError) as caught:
        load_seed_files([path])
    assert any(expected in p for p in caught.value.problems), caught.value.problems
    assert all(p.startswith(str(path)) for p in caught.value.problems)


def test_rows_are_named_in_their_own_file_and_every_section_is_checked(tmp_path):
    first = _write(
        tmp_path / "a.json", {"pipeliner": {"contacts": [{"owner_id": ALEX, "first_name": "A"}]}}
    )
    second = _write(
        tmp_path / "b.json",
        {
            "pipeliner": {"contacts": [{"owner_id": "nobody@x.example", "first_name": "B"}]},
            "microsoft": {
                "mailboxes": [
                    {
                        "user_principal_name": ALEX,
                        "contacts_folder": {"contacts": [{"colour": "red"}]},
                    }
                ]
            },
        },
    )
    with pytest.raises(SeedError) as caught:
        load_seed_files([first, second])
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{second}: pipeliner.contacts[0].owner_id: no user")
    assert problems[1].startswith(f"{second}: microsoft.mailboxes[0] (alex@contoso.example)")


def test_check_command_reports_problems_or_a_summary(tmp_path, capsys):
    bad = _write(tmp_path / "bad.json", BAD_ROWS["unknown user"][0])
    assert cli.main(["check", "--seed", str(bad)]) == 2
    assert "pipeliner.contacts[0].owner_id: no user" in capsys.readouterr().err
    assert cli.main(["check", "--seed", str(EXAMPLE_SEED)]) == 0
    assert capsys.readouterr().out == (
        "seed ok: 2 Pipeliner users, 3 Pipeliner contacts, 2 mailboxes, 2 Outlook contacts\n"
    )
    assert (
        cli.main(["serve", "--free-ports", "--state-dir", str(tmp_path), "--seed", str(bad)]) == 2
    )


@pytest.mark.sandbox_seed("../../examples/ci/tests/fixtures/seed.json")
def test_export_replays_the_data_it_captured(seeded_sandbox, tmp_path):
    # A scenario: the seed, then people at work on both sides.
    ada = next(c for c in seeded_sandbox.pipeliner_contacts() if c["first_name"] == "Ada")
    seeded_sandbox.pipeliner.edit(ALEX, ada["id"], phone1="+1 555 0142")
    seeded_sandbox.outlook(ALEX).create("Pipeliner", givenName="Joan", surname="Clarke")
    captured = seeded_sandbox.export()
    assert captured["pipeliner"]["space_id"] == "5a5a5a5a-0000-4000-8000-0000000000c1"
    write_seed(captured, out_file=None, out_dir=tmp_path / "scenario")
    assert sorted(p.name for p in (tmp_path / "scenario").iterdir()) == [
        "microsoft.json",
        "pipeliner.json",
    ]

    seeded_sandbox.reset()  # the session sandbox started from the default seed: all gone
    assert seeded_sandbox.export() != captured
    replayed = seeded_sandbox.seed(tmp_path / "scenario")
    assert seeded_sandbox.export() == captured
    assert replayed["pipeliner"] == captured["pipeliner"]
    phones = {c["first_name"]: c.get("phone1") for c in seeded_sandbox.pipeliner_contacts()}
    assert phones["Ada"] == "+1 555 0142"
    names = {c["givenName"] for c in seeded_sandbox.outlook_contacts(ALEX, "Pipeliner")}
    assert names == {"Grace", "Linus", "Joan"}
