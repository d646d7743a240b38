"""contactsync.pipeliner.scope: relation of a user to a Pipeliner contact, deletion right, sync
settings."""

from __future__ import annotations

import itertools

import pytest

from contactsync.pipeliner.scope import (
    AccessLevel,
    ContactSharing,
    Relation,
    ScopeSettingError,
    ShareMode,
    SharingRole,
    SyncOption,
    SyncScope,
    SyncType,
    SyncUser,
    UnitReach,
    UnitTree,
    UserRole,
    can_delete,
    can_edit,
    relation,
)

ME = "c0000000-0000-0000-0000-00000000000a"
SOMEONE = "c0000000-0000-0000-0000-00000000000b"

# grandparent → parent → current (the user's unit) → child → grandchild; sibling sits under
# parent beside current; unrelated is another root.
GRANDPARENT, PARENT, CURRENT, CHILD, GRANDCHILD = "u-gp", "u-parent", "u-cur", "u-child", "u-gc"
SIBLING, UNRELATED = "u-sibling", "u-unrelated"
TREE = UnitTree(
    {
        GRANDPARENT: None,
        PARENT: GRANDPARENT,
        CURRENT: PARENT,
        CHILD: CURRENT,
        GRANDCHILD: CHILD,
        SIBLING: PARENT,
        UNRELATED: None,
    }
)

OWN, E, V, N = Relation.OWNER, Relation.EDITOR, Relation.VIEWER, Relation.NONE
W, ED = SharingRole.WATCHER, SharingRole.EDITOR


def make_user(
    level=AccessLevel.EDITOR,
    direction=UnitReach.CURRENT,
    *,
    access=True,
    see_private=False,
    delete=False,
    units=(CURRENT,),
    managed=(),
):
    role = UserRole(
        access_contacts=access,
        level=level,
        direction=direction,
        can_delete=delete,
        see_private=see_private,
    )
    return SyncUser(
        id=ME,
        role=role,
        unit_ids=frozenset(units),
        managed_unit_ids=frozenset(managed),
        units=TREE,
    )


def make_contact(
    owner=SOMEONE,
    unit=CURRENT,
    mode=ShareMode.STANDARD,
    *,
    clients=(),
    units=(),
    protected=False,
):
    return ContactSharing(
        owner_id=owner,
        unit_id=unit,
        share_mode=mode,
        sharing_clients=tuple(clients),
        sharing_units=tuple(units),
        is_delete_protected=protected,
    )


# ---------------------------------------------------------------------------------------------
# Relation


def test_relation_rank_orders_owner_editor_viewer_none():
    assert [r.rank for r in (OWN, E, V, N)] == sorted(
        [r.rank for r in (OWN, E, V, N)], reverse=True
    )
    assert len({r.rank for r in Relation}) == 4
    assert Relation.strongest([V, E, N]) is E
    assert Relation.strongest([V, OWN, E]) is OWN
    assert Relation.strongest([]) is N


@pytest.mark.parametrize(
    ("mode", "unit", "level", "direction", "expected"),
    [
        # The role sees the user's own unit (direction Current, level Editor): visibility alone
        # is never "editor" (issue #11).
        (ShareMode.STANDARD, CURRENT, AccessLevel.EDITOR, UnitReach.CURRENT, V),
        (ShareMode.PRIVATE, CURRENT, AccessLevel.EDITOR, UnitReach.CURRENT, N),
        (ShareMode.ALL_VIEW, CURRENT, AccessLevel.EDITOR, UnitReach.CURRENT, V),
        (ShareMode.ALL_EDIT, CURRENT, AccessLevel.EDITOR, UnitReach.CURRENT, E),
        (ShareMode.STANDARD, UNRELATED, AccessLevel.EDITOR, UnitReach.CURRENT, N),
        (ShareMode.PRIVATE, UNRELATED, AccessLevel.EDITOR, UnitReach.CURRENT, N),
        (ShareMode.ALL_VIEW, UNRELATED, AccessLevel.EDITOR, UnitReach.CURRENT, V),
        (ShareMode.ALL_EDIT, UNRELATED, AccessLevel.EDITOR, UnitReach.CURRENT, E),
        # Read-only role in the same unit.
        (ShareMode.STANDARD, CURRENT, AccessLevel.READONLY, UnitReach.CURRENT, V),
        (ShareMode.ALL_EDIT, CURRENT, AccessLevel.READONLY, UnitReach.CURRENT, V),
        # UnitReach Owned: only the share mode grants anything.
        (ShareMode.STANDARD, CURRENT, AccessLevel.ALL, UnitReach.OWNED, N),
        (ShareMode.ALL_VIEW, CURRENT, AccessLevel.ALL, UnitReach.OWNED, V),
        (ShareMode.ALL_EDIT, CURRENT, AccessLevel.ALL, UnitReach.OWNED, E),
        (ShareMode.ALL_EDIT, None, AccessLevel.ALL, UnitReach.OWNED, E),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_share_mode_for_non_owner(mode, unit, level, direction, expected):
    user = make_user(level, direction)
    assert relation(make_contact(unit=unit, mode=mode), user) is expected


@pytest.mark.parametrize("mode", list(ShareMode), ids=lambda m: m.name)
@pytest.mark.parametrize(
    "level", [AccessLevel.READONLY, AccessLevel.EDITOR, AccessLevel.ALL], ids=lambda v: v.name
)
def test_owner_is_owner_under_every_share_mode_and_level(mode, level):
    # Owned direction and a contact in an unrelated unit: ownership alone must make it OWNER.
    user = make_user(level, UnitReach.OWNED)
    assert relation(make_contact(owner=ME, unit=UNRELATED, mode=mode), user) is OWN


@pytest.mark.parametrize(
    ("clients", "mode", "expected"),
    [
        pytest.param([(ME, ED)], ShareMode.STANDARD, E, id="client-editor"),
        pytest.param([(ME, W)], ShareMode.STANDARD, V, id="client-watcher"),
        pytest.param([(SOMEONE, ED)], ShareMode.STANDARD, N, id="other-client-editor"),
        pytest.param([(ME, ED)], ShareMode.PRIVATE, E, id="client-editor-private"),
        pytest.param([(ME, W)], ShareMode.PRIVATE, V, id="client-watcher-private"),
        pytest.param([(ME, W)], ShareMode.ALL_EDIT, E, id="watcher-but-all-edit"),
        pytest.param([(ME, ED)], ShareMode.ALL_VIEW, E, id="editor-beats-all-view"),
        pytest.param([(ME, W), (ME, ED)], ShareMode.STANDARD, E, id="strongest-of-two-rows"),
    ],
)
def test_client_sharing(clients, mode, expected):
    user = make_user(AccessLevel.EDITOR, UnitReach.OWNED)
    assert relation(make_contact(unit=UNRELATED, mode=mode, clients=clients), user) is expected


@pytest.mark.parametrize(
    ("shared_unit", "role", "expected"),
    [
        pytest.param(CURRENT, ED, E, id="editor-my-unit"),
        pytest.param(CURRENT, W, V, id="watcher-my-unit"),
        pytest.param(PARENT, ED, N, id="editor-parent-unit-not-mine"),
        pytest.param(CHILD, ED, N, id="editor-child-unit-not-mine"),
        pytest.param(SIBLING, ED, N, id="editor-sibling-unit"),
        pytest.param(UNRELATED, ED, N, id="editor-unrelated-unit"),
    ],
)
def test_unit_sharing_needs_membership(shared_unit, role, expected):
    # UnitReach Owned so that only the unit share can grant anything.
    user = make_user(AccessLevel.EDITOR, UnitReach.OWNED, units=(CURRENT,))
    contact = make_contact(unit=UNRELATED, units=[(shared_unit, role)])
    assert relation(contact, user) is expected


def test_unit_sharing_counts_every_membership():
    user = make_user(AccessLevel.EDITOR, UnitReach.OWNED, units=(CURRENT, SIBLING))
    assert relation(make_contact(unit=UNRELATED, units=[(SIBLING, ED)]), user) is E


@pytest.mark.parametrize(
    ("level", "managed", "clients", "mode", "expected"),
    [
        pytest.param(AccessLevel.NO_ACCESS, (), (), ShareMode.STANDARD, N, id="no-access"),
        pytest.param(AccessLevel.READONLY, (), (), ShareMode.STANDARD, V, id="readonly"),
        pytest.param(AccessLevel.EDITOR, (), (), ShareMode.STANDARD, V, id="editor"),
        pytest.param(AccessLevel.ALL, (), (), ShareMode.STANDARD, V, id="all"),
        pytest.param(
            AccessLevel.EDITOR_OR_UNIT_MANAGER, (CURRENT,), (), ShareMode.STANDARD, V,
            id="eoum-manager-of-contact-unit",
        ),
        pytest.param(
            AccessLevel.EDITOR_OR_UNIT_MANAGER, (GRANDPARENT,), (), ShareMode.STANDARD, V,
            id="eoum-manager-of-ancestor",
        ),
        pytest.param(
            AccessLevel.EDITOR_OR_UNIT_MANAGER, (), (), ShareMode.STANDARD, V,
            id="eoum-not-manager",
        ),
        pytest.param(
            AccessLevel.EDITOR_OR_UNIT_MANAGER, (CHILD,), (), ShareMode.STANDARD, V,
            id="eoum-manager-of-subunit-only",
        ),
        pytest.param(
            AccessLevel.EDITOR_OR_UNIT_MANAGER, (), [(ME, ED)], ShareMode.STANDARD, E,
            id="eoum-not-manager-but-shared-editor",
        ),
        pytest.param(
            AccessLevel.READONLY, (), [(ME, ED)], ShareMode.STANDARD, V,
            id="readonly-caps-explicit-editor",
        ),
        pytest.param(
            AccessLevel.READONLY, (CURRENT,), (), ShareMode.ALL_EDIT, V,
            id="readonly-caps-all-edit",
        ),
    ],
)  # fmt: skip
def test_access_level(level, managed, clients, mode, expected):
    user = make_user(level, UnitReach.CURRENT, managed=managed)
    contact = make_contact(unit=CURRENT, mode=mode, clients=clients)
    assert relation(contact, user) is expected


_VISIBLE = {
    UnitReach.OWNED: set(),
    UnitReach.CURRENT: {CURRENT},
    UnitReach.CURRENT_AND_PARENT: {CURRENT, PARENT, GRANDPARENT},
    UnitReach.CURRENT_AND_SUBUNIT: {CURRENT, CHILD, GRANDCHILD},
    UnitReach.CURRENT_AND_PARENT_AND_SUBUNIT: {CURRENT, PARENT, GRANDPARENT, CHILD, GRANDCHILD},
    UnitReach.ALL: {GRANDPARENT, PARENT, CURRENT, CHILD, GRANDCHILD, SIBLING, UNRELATED, None},
}
_UNITS = [GRANDPARENT, PARENT, CURRENT, CHILD, GRANDCHILD, SIBLING, UNRELATED, None]


@pytest.mark.parametrize(
    ("direction", "unit"),
    list(itertools.product(UnitReach, _UNITS)),
    ids=[f"{d.name}-{u}" for d, u in itertools.product(UnitReach, _UNITS)],
)
def test_direction(direction, unit):
    user = make_user(AccessLevel.EDITOR, direction)
    expected = V if unit in _VISIBLE[direction] else N
    assert relation(make_contact(unit=unit), user) is expected
    # Level All edits whatever the direction shows, still without being "editor".
    assert can_edit(make_contact(unit=unit), make_user(AccessLevel.ALL, direction)) is (
        unit in _VISIBLE[direction]
    )


def test_direction_table_is_not_trivial():
    # Guards the table above: each direction must differ from its neighbours somewhere.
    sets = [frozenset(v) for v in _VISIBLE.values()]
    assert len(set(sets)) == len(sets)


@pytest.mark.parametrize(
    ("see_private", "direction", "owner", "clients", "expected"),
    [
        pytest.param(True, UnitReach.CURRENT, SOMEONE, (), V, id="see-private-same-unit"),
        pytest.param(False, UnitReach.CURRENT, SOMEONE, (), N, id="no-see-private-same-unit"),
        pytest.param(False, UnitReach.ALL, SOMEONE, (), N, id="no-see-private-direction-all"),
        pytest.param(True, UnitReach.OWNED, SOMEONE, (), N, id="see-private-but-owned-only"),
        pytest.param(False, UnitReach.CURRENT, ME, (), OWN, id="owner-of-private"),
        pytest.param(False, UnitReach.CURRENT, SOMEONE, [(ME, W)], V, id="shared-private"),
    ],
)
def test_private(see_private, direction, owner, clients, expected):
    user = make_user(AccessLevel.EDITOR, direction, see_private=see_private)
    contact = make_contact(owner=owner, unit=CURRENT, mode=ShareMode.PRIVATE, clients=clients)
    assert relation(contact, user) is expected


@pytest.mark.parametrize(
    ("access", "level"),
    [(False, AccessLevel.ALL), (True, AccessLevel.NO_ACCESS), (False, AccessLevel.NO_ACCESS)],
    ids=["module-off", "level-no-access", "both"],
)
@pytest.mark.parametrize(
    "contact",
    [
        make_contact(owner=ME),
        make_contact(clients=[(ME, ED)]),
        make_contact(units=[(CURRENT, ED)]),
        make_contact(unit=UNRELATED, mode=ShareMode.ALL_EDIT),
        make_contact(unit=CURRENT),
    ],
    ids=["owned", "client-editor", "unit-editor", "all-edit", "same-unit"],
)
def test_no_contact_access_means_none_even_for_owner(access, level, contact):
    user = make_user(level, UnitReach.ALL, access=access, see_private=True)
    assert relation(contact, user) is N


def test_enums_coerced_from_plain_values():
    # Callers building these by hand with raw API ints must get the same answers.
    contact = ContactSharing(SOMEONE, CURRENT, 1, (("x", 2),), (), False)  # type: ignore[arg-type]
    assert contact.share_mode is ShareMode.PRIVATE
    assert contact.sharing_clients == (("x", SharingRole.EDITOR),)
    role = UserRole(True, 1, 2)  # type: ignore[arg-type]
    assert (role.level, role.direction) == (AccessLevel.READONLY, UnitReach.CURRENT)
    user = SyncUser(ME, role, unit_ids={CURRENT}, units=TREE)  # type: ignore[arg-type]
    assert relation(contact, user) is N  # private and no see_private
    assert relation(make_contact(unit=CURRENT), user) is V


# ---------------------------------------------------------------------------------------------
# can_delete

_DELETABLE = {(True, False, OWN)}  # only the owner deletes


@pytest.mark.parametrize(
    ("flag", "protected", "rel"),
    list(itertools.product([True, False], [True, False], list(Relation))),
    ids=[
        f"{'delete' if f else 'nodelete'}-{'protected' if p else 'free'}-{r}"
        for f, p, r in itertools.product([True, False], [True, False], list(Relation))
    ],
)
def test_can_delete(flag, protected, rel):
    user = make_user(AccessLevel.ALL, UnitReach.ALL, delete=flag)
    contact = make_contact(protected=protected)
    assert can_delete(contact, user, rel) is ((flag, protected, rel) in _DELETABLE)


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        pytest.param(make_contact(owner=ME, unit=UNRELATED), True, id="owner"),
        pytest.param(make_contact(unit=UNRELATED, clients=[(ME, ED)]), False, id="editor"),
        pytest.param(make_contact(unit=UNRELATED, clients=[(ME, W)]), False, id="watcher"),
        pytest.param(make_contact(unit=UNRELATED), False, id="invisible"),
        pytest.param(make_contact(owner=ME, protected=True), False, id="protected"),
    ],
)
def test_can_delete_computes_relation_when_not_given(contact, expected):
    user = make_user(AccessLevel.EDITOR, UnitReach.OWNED, delete=True)
    assert can_delete(contact, user) is expected


def test_can_delete_without_contact_access_is_false():
    user = make_user(AccessLevel.ALL, UnitReach.ALL, access=False, delete=True)
    assert can_delete(make_contact(owner=ME), user) is False


# ---------------------------------------------------------------------------------------------
# SyncScope

YOURS_1 = SyncScope(SyncType.ONE_WAY_YOUR_CONTACTS, SyncOption.OWNER)
YOURS_1E = SyncScope(SyncType.ONE_WAY_YOUR_CONTACTS, SyncOption.OWNER_OR_EDITOR)
YOURS_2 = SyncScope(SyncType.TWO_WAY_YOUR_CONTACTS, SyncOption.OWNER)
YOURS_2E = SyncScope(SyncType.TWO_WAY_YOUR_CONTACTS, SyncOption.OWNER_OR_EDITOR)
ALL_1 = SyncScope(SyncType.ONE_WAY_ALL_CONTACTS)


@pytest.mark.parametrize(
    ("sync_type", "option", "expected"),
    [
        ("one_way_your_contacts", "owner", YOURS_1),
        ("one_way_your_contacts", "owner_or_editor", YOURS_1E),
        ("one_way_your_contacts", None, YOURS_1),
        ("one_way_your_contacts", "", YOURS_1),
        ("two_way_your_contacts", "owner", YOURS_2),
        ("two_way_your_contacts", " owner_or_editor ", YOURS_2E),
        ("two_way_your_contacts", None, YOURS_2),
        ("one_way_all_contacts", None, ALL_1),
        ("one_way_all_contacts", "", ALL_1),
    ],
    ids=lambda v: repr(v) if not isinstance(v, SyncScope) else "",
)
def test_parse_valid(sync_type, option, expected):
    scope = SyncScope.parse(sync_type, option)
    assert scope == expected
    assert isinstance(scope.sync_type, SyncType)
    assert scope.option is None or isinstance(scope.option, SyncOption)


@pytest.mark.parametrize(
    ("sync_type", "option", "must_contain"),
    [
        pytest.param(
            "two_way_all_contacts", None,
            ["sync_type", "'two_way_all_contacts'", *SyncType],
            id="bad-type",
        ),
        pytest.param("", "owner", ["sync_type", "''", *SyncType], id="empty-type"),
        pytest.param(
            "one_way_your_contacts", "editor",
            ["sync_option", "'editor'", *SyncOption],
            id="bad-option",
        ),
        pytest.param(
            "two_way_your_contacts", "OWNER",
            ["sync_option", "'OWNER'", *SyncOption],
            id="option-wrong-case",
        ),
        pytest.param(
            "one_way_all_contacts", "owner",
            ["sync_option does not apply to one_way_all_contacts", "remove it"],
            id="option-on-all-contacts",
        ),
        pytest.param(
            "one_way_all_contacts", "nonsense",
            ["sync_option does not apply to one_way_all_contacts", "remove it"],
            id="bad-option-on-all-contacts",
        ),
    ],
)  # fmt: skip
def test_parse_errors(sync_type, option, must_contain):
    with pytest.raises(ScopeSettingError) as err:
        SyncScope.parse(sync_type, option)
    assert isinstance(err.value, ValueError)
    for text in must_contain:
        assert str(text) in str(err.value)


def test_direct_construction_is_validated_too():
    with pytest.raises(ScopeSettingError, match="sync_option is required"):
        SyncScope(SyncType.TWO_WAY_YOUR_CONTACTS)
    with pytest.raises(ScopeSettingError, match="does not apply"):
        SyncScope(SyncType.ONE_WAY_ALL_CONTACTS, SyncOption.OWNER)


_INCLUDES = {
    YOURS_1: {OWN},
    YOURS_2: {OWN},
    YOURS_1E: {OWN, E},
    YOURS_2E: {OWN, E},
    ALL_1: {OWN, E, V},
}


@pytest.mark.parametrize(
    ("scope", "rel"),
    list(itertools.product(_INCLUDES, Relation)),
    ids=[f"{s.sync_type}-{s.option}-{r}" for s, r in itertools.product(_INCLUDES, Relation)],
)
def test_includes(scope, rel):
    assert scope.includes(rel) is (rel in _INCLUDES[scope])


def test_two_way():
    assert [s.two_way for s in (YOURS_1, YOURS_1E, YOURS_2, YOURS_2E, ALL_1)] == [
        False,
        False,
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        pytest.param(YOURS_1E, YOURS_1, True, id="owner->owner_or_editor"),
        pytest.param(YOURS_1, YOURS_1E, False, id="owner_or_editor->owner"),
        pytest.param(ALL_1, YOURS_1, True, id="your-owner->all"),
        pytest.param(ALL_1, YOURS_2E, True, id="your-owner_or_editor->all"),
        pytest.param(YOURS_2E, ALL_1, False, id="all->your-owner_or_editor"),
        pytest.param(YOURS_1, YOURS_1, False, id="unchanged"),
        pytest.param(YOURS_2, YOURS_1, False, id="one-way->two-way-same-option"),
        pytest.param(YOURS_2E, YOURS_1, True, id="one-way-owner->two-way-owner_or_editor"),
    ],
)
def test_is_wider_than(new, old, expected):
    assert new.is_wider_than(old) is expected


def test_admits_combines_relation_and_scope():
    user = make_user(AccessLevel.EDITOR, UnitReach.CURRENT)
    owned, edited, unit_mate, viewed = (
        make_contact(owner=ME, unit=UNRELATED),
        make_contact(unit=UNRELATED, clients=[(ME, ED)]),
        make_contact(unit=CURRENT),
        make_contact(unit=UNRELATED, mode=ShareMode.ALL_VIEW),
    )
    hidden = make_contact(unit=UNRELATED)
    contacts = (owned, edited, unit_mate, viewed, hidden)
    assert [YOURS_1.admits(c, user) for c in contacts] == [True, False, False, False, False]
    assert [YOURS_2E.admits(c, user) for c in contacts] == [True, True, False, False, False]
    assert [ALL_1.admits(c, user) for c in contacts] == [True, True, True, True, False]


# ---------------------------------------------------------------------------------------------
# UnitTree


def test_unit_tree_walks():
    assert TREE.ancestors(GRANDCHILD) == {CHILD, CURRENT, PARENT, GRANDPARENT}
    assert TREE.ancestors(GRANDPARENT) == frozenset()
    assert TREE.descendants(PARENT) == {CURRENT, CHILD, GRANDCHILD, SIBLING}
    assert TREE.descendants(GRANDCHILD) == frozenset()
    assert TREE.ancestors("unknown") == frozenset()
    assert TREE.descendants("unknown") == frozenset()


def test_unit_tree_survives_a_cycle():
    tree = UnitTree({"a": "b", "b": "c", "c": "a"})
    assert tree.ancestors("a") == {"b", "c"}
    assert tree.descendants("a") == {"b", "c"}


def test_unit_tree_is_immutable_and_hashable():
    source = {"a": None, "b": "a"}
    tree = UnitTree(source)
    source["c"] = "b"
    assert tree.descendants("a") == {"b"}
    assert hash(tree) == hash(UnitTree({"b": "a", "a": None}))
    assert tree == UnitTree({"b": "a", "a": None})


# ---------------------------------------------------------------------------------------------
# from_api parsers, with Pipeliner-shaped payloads

BASE = "https://eu-central.api.pipelinersales.com/api/v100/rest/spaces/sp1/entities"
CONTACT_ID = "5a1d0000-0000-0000-0000-000000000001"


def _client_share(client_id, role, *, deleted=False, rel_id="r1"):
    return {
        "id": rel_id,
        "is_delete_protected": False,
        "is_deleted": deleted,
        "modified": "2024-05-01T10:00:00",
        "created": "2024-05-01T10:00:00",
        "client": f"{BASE}/Clients/{client_id}",
        "contact": f"{BASE}/Contacts/{CONTACT_ID}",
        "client_id": client_id,
        "contact_id": CONTACT_ID,
        "role": role,
        "revision": 7,
    }


def _unit_share(unit_id, role, *, deleted=False, rel_id="s1"):
    return {
        "id": rel_id,
        "is_delete_protected": False,
        "is_deleted": deleted,
        "unit": f"{BASE}/SalesUnits/{unit_id}",
        "contact": f"{BASE}/Contacts/{CONTACT_ID}",
        "unit_id": unit_id,
        "contact_id": CONTACT_ID,
        "role": role,
    }


def api_contact(**overrides):
    contact = {
        "id": CONTACT_ID,
        "is_delete_protected": False,
        "is_deleted": False,
        "modified": "2024-05-02T08:30:00",
        "owner": f"{BASE}/Clients/{SOMEONE}",
        "owner_id": SOMEONE,
        "unit": f"{BASE}/SalesUnits/{UNRELATED}",
        "unit_id": UNRELATED,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "formatted_name": "Ada Lovelace",
        "share_mode": 0,
        "sharing_clients": [],
        "sharing_units": [],
        "is_favorite": False,
        "revision": 12,
    }
    contact.update(overrides)
    return contact


def test_contact_from_api_reads_expanded_relations():
    contact = ContactSharing.from_api(
        api_contact(
            share_mode=2,
            is_delete_protected=True,
            sharing_clients=[_client_share(ME, 2), _client_share(SOMEONE, 1, rel_id="r2")],
            sharing_units=[_unit_share(CURRENT, 1)],
        )
    )
    assert contact == ContactSharing(
        owner_id=SOMEONE,
        unit_id=UNRELATED,
        share_mode=ShareMode.ALL_VIEW,
        sharing_clients=((ME, SharingRole.EDITOR), (SOMEONE, SharingRole.WATCHER)),
        sharing_units=((CURRENT, SharingRole.WATCHER),),
        is_delete_protected=True,
    )
    assert relation(contact, make_user(AccessLevel.EDITOR, UnitReach.OWNED)) is E


def test_contact_from_api_ignores_deleted_sharing_relations():
    raw = api_contact(
        sharing_clients=[_client_share(ME, 2, deleted=True)],
        sharing_units=[_unit_share(CURRENT, 2, deleted=True), _unit_share(SIBLING, 1)],
    )
    contact = ContactSharing.from_api(raw)
    assert contact.sharing_clients == ()
    assert contact.sharing_units == ((SIBLING, SharingRole.WATCHER),)
    assert relation(contact, make_user(AccessLevel.EDITOR, UnitReach.OWNED)) is N


def test_contact_from_api_defaults():
    raw = api_contact()
    for key in ("share_mode", "sharing_clients", "sharing_units", "is_delete_protected"):
        del raw[key]
    raw["unit_id"] = None
    contact = ContactSharing.from_api(raw)
    assert contact.share_mode is ShareMode.STANDARD
    assert (contact.sharing_clients, contact.sharing_units) == ((), ())
    assert contact.unit_id is None
    # An incomplete read must never allow a delete.
    assert contact.is_delete_protected is True


def test_contact_from_api_sharing_row_without_role_is_watcher():
    row = _client_share(ME, 2)
    del row["role"]
    contact = ContactSharing.from_api(api_contact(sharing_clients=[row]))
    assert contact.sharing_clients == ((ME, SharingRole.WATCHER),)


@pytest.mark.parametrize("key", ["sharing_clients", "sharing_units"])
def test_contact_from_api_rejects_unexpanded_relations(key):
    raw = api_contact(**{key: [f"{BASE}/ContactSharingClientRelations/r1"]})
    with pytest.raises(ValueError, match=r"expand=sharing_clients,sharing_units") as err:
        ContactSharing.from_api(raw)
    assert key in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        pytest.param({"share_mode": 7}, "share_mode: unexpected value 7", id="bad-share-mode"),
        pytest.param({"owner_id": None}, "no owner_id", id="no-owner"),
        pytest.param(
            {"sharing_clients": [_client_share(ME, 3)]}, "sharing_clients.role", id="bad-role"
        ),
        pytest.param(
            {"sharing_units": [{"role": 2, "is_deleted": False}]}, "has no unit_id", id="no-unit"
        ),
    ],
)
def test_contact_from_api_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        ContactSharing.from_api(api_contact(**overrides))


MASTER_RIGHT = {
    "id": "mr-sales",
    "name": "Sales rep",
    "is_delete_protected": False,
    "is_deleted": False,
    "access_contacts": True,
    "access_entity_contact": 3,
    "access_entity_contact_copy": True,
    "access_entity_contact_delete": True,
    "access_entity_contact_direction": 4,
    "access_entity_contact_private": True,
    "access_entity_contact_tag_create": False,
    "access_entity_contact_types": 1,
    "access_entity_account_delete": False,
}


def test_role_from_api():
    assert UserRole.from_api(MASTER_RIGHT) == UserRole(
        access_contacts=True,
        level=AccessLevel.EDITOR_OR_UNIT_MANAGER,
        direction=UnitReach.CURRENT_AND_SUBUNIT,
        can_delete=True,
        see_private=True,
    )


def test_role_from_api_absent_fields_are_restrictive():
    role = UserRole.from_api({"id": "mr", "name": "bare", "access_entity_contact_delete": None})
    assert role == UserRole(False, AccessLevel.NO_ACCESS, UnitReach.OWNED, False, False)
    assert role.has_contact_access is False


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"access_entity_contact": 9}, "access_entity_contact: unexpected value 9"),
        ({"access_entity_contact_direction": 0}, "access_entity_contact_direction"),
        ({"access_entity_contact_delete": "yes"}, "access_entity_contact_delete"),
    ],
)
def test_role_from_api_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        UserRole.from_api({**MASTER_RIGHT, **overrides})


SALES_UNITS = [
    {"id": GRANDPARENT, "name": "Company", "parent_id": None, "is_delete_protected": True},
    {"id": PARENT, "name": "EMEA", "parent_id": GRANDPARENT, "parent": f"{BASE}/SalesUnits/x"},
    {"id": CURRENT, "name": "DACH", "parent_id": PARENT},
    {"id": CHILD, "name": "Vienna", "parent_id": CURRENT},
    {"id": GRANDCHILD, "name": "Vienna-1", "parent_id": CHILD},
    {"id": SIBLING, "name": "Nordics", "parent_id": PARENT},
    {"id": UNRELATED, "name": "Partners", "parent_id": ""},
]


def api_client(**overrides):
    client = {
        "id": ME,
        "is_delete_protected": False,
        "email": "me@example.com",
        "default_unit_id": CURRENT,
        "default_unit": f"{BASE}/SalesUnits/{CURRENT}",
        "master_right_id": "mr-sales",
        "master_right": f"{BASE}/MasterRights/mr-sales",
        "formatted_name": "Me",
        "unit_membership": [f"{BASE}/SalesUnitClientRelations/m1"],
        # Pipeliner lists managed units expanded to their whole subtree.
        "unit_manager_ids": [CURRENT, CHILD, GRANDCHILD],
        "unit_member_ids": [SIBLING],
    }
    client.update(overrides)
    return client


def test_unit_tree_from_api_treats_empty_parent_as_root():
    tree = UnitTree.from_api(SALES_UNITS)
    assert tree.parents[UNRELATED] is None
    assert tree.parents[GRANDPARENT] is None
    assert tree == TREE


def test_user_from_api_with_id_lists():
    user = SyncUser.from_api(api_client(), MASTER_RIGHT, SALES_UNITS)
    assert user.id == ME
    assert user.role == UserRole.from_api(MASTER_RIGHT)
    # The managed subtree's root is a membership; its expanded descendants are not.
    assert user.unit_ids == {SIBLING, CURRENT}
    assert user.managed_unit_ids == {CURRENT, CHILD, GRANDCHILD}
    assert user.units == TREE


def test_user_from_api_direction_current_does_not_reach_managed_subunits():
    role = {**MASTER_RIGHT, "access_entity_contact_direction": 2}
    user = SyncUser.from_api(api_client(), role, SALES_UNITS)
    assert relation(make_contact(unit=CURRENT), user) is V  # visible, never "editor"
    assert can_edit(make_contact(unit=CURRENT), user)  # manager of it: EOUM may edit
    assert relation(make_contact(unit=SIBLING), user) is V  # member, not manager
    assert not can_edit(make_contact(unit=SIBLING), user)
    assert relation(make_contact(unit=CHILD), user) is N  # Current only


def test_user_from_api_with_expanded_membership():
    rows = [
        {"id": "m1", "client_id": ME, "unit_id": CURRENT, "unit_role": 2, "is_deleted": False},
        {"id": "m2", "client_id": ME, "unit_id": SIBLING, "unit_role": 1, "is_deleted": False},
        {"id": "m3", "client_id": ME, "unit_id": UNRELATED, "unit_role": 2, "is_deleted": True},
    ]
    client = api_client(unit_membership=rows, unit_manager_ids=[], unit_member_ids=[])
    user = SyncUser.from_api(client, MASTER_RIGHT, SALES_UNITS)
    assert user.unit_ids == {CURRENT, SIBLING}
    assert user.managed_unit_ids == {CURRENT, CHILD, GRANDCHILD}


def test_user_from_api_end_to_end_with_unit_share():
    user = SyncUser.from_api(api_client(), MASTER_RIGHT, SALES_UNITS)
    contact = ContactSharing.from_api(
        api_contact(unit_id=UNRELATED, sharing_units=[_unit_share(SIBLING, 2)])
    )
    assert relation(contact, user) is E
    assert can_edit(contact, user) is True
    assert can_delete(contact, user) is False  # an editor never deletes
    owned = ContactSharing.from_api(api_contact(owner_id=ME, unit_id=UNRELATED))
    assert can_delete(owned, user) is True
    protected = ContactSharing.from_api(
        api_contact(owner_id=ME, is_delete_protected=True, unit_id=UNRELATED)
    )
    assert can_delete(protected, user) is False


def test_user_from_api_rejects_someone_elses_role():
    with pytest.raises(ValueError, match="master_right_id"):
        SyncUser.from_api(api_client(master_right_id="mr-admin"), MASTER_RIGHT, SALES_UNITS)


def test_user_from_api_needs_client_id():
    with pytest.raises(ValueError, match="no id"):
        SyncUser.from_api(api_client(id=None), MASTER_RIGHT, SALES_UNITS)
