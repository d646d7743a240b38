"""Deterministic demo contacts (the emulator's default data) and fast synthetic bulk contacts.

`demo_contacts(count=300, seed=42)` returns contact seeds (the format `POST /_sandbox/seed`
takes under `contacts`) spread over the seeded users, with the variety a sync has to get right:
several owners; editors and watchers through user and unit sharing; share modes 0–3; primary
accounts (some with a second, non-primary account) or only a `quick_account_name`; linked
contacts whose job title at their account differs from their hidden Quick Account Position (as
in a real space: Pipeliner shows the account relation's position); phones and
e-mails in various slots, including `phone3` (fax), `email4` and `email5`, which the sync must
never touch; unicode names; multi-line comments; a few delete-protected, archived and
soft-deleted contacts. The same (count, seed, identities) always gives the same data.

`synthetic_rows()` is the fast path behind `POST /_sandbox/pipeliner/generate` (50,000 contacts
in about a second): minimal, plain rows for benchmarks.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .timefmt import format_us, parse_us

DEMO_CONTACT_ID_PREFIX = "10000000-0000-4000-8000-"
ACCOUNT_RELATION_ID_PREFIX = "30000000-0000-4000-8000-"
SHARING_CLIENT_ID_PREFIX = "40000000-0000-4000-8000-"
SHARING_UNIT_ID_PREFIX = "70000000-0000-4000-8000-"
_DEMO_START_US = parse_us("2025-01-06T08:00:00Z")
_DEMO_END_US = parse_us("2025-11-28T18:00:00Z")
_DAY_US = 86_400 * 1_000_000

FIRST_NAMES = (
    "Adele", "Ana", "Bianca", "Björn", "Chloé", "Dmitri", "Élodie", "Émile", "Fatima",
    "François", "Greta", "Hannah", "Hiroshi", "Inès", "Ivan", "Jürgen", "José", "Kai",
    "Katarzyna", "Lars", "Léa", "Łukasz", "Magnus", "Malika", "Mateo", "Mei", "Nadia", "Noah",
    "Olga", "Oscar", "Paweł", "Priya", "Rafael", "Renée", "Sakura", "Siobhán", "Søren", "Tomás",
    "Umar", "Valentina", "Wei", "Xavier", "Yara", "Zoë", "Zeynep", "Ørjan", "Ахмед", "Παύλος",
)  # fmt: skip
LAST_NAMES = (
    "Anderson", "Bäcker", "Brown", "Cohen", "Dvořák", "Eriksson", "Fernández", "García",
    "Hansen", "Hoffmann", "Ivanova", "Jensen", "Kowalski", "Larsen", "Lefèvre", "Müller",
    "Nakamura", "Nowak", "O'Brien", "Østergaard", "Papadopoulos", "Quiñones", "Rossi",
    "Schröder", "Silva", "Tanaka", "Taylor", "Urbanová", "van der Berg", "Wójcik", "Yılmaz",
    "Zhang", "Ångström", "García-Márquez", "Nguyễn", "李", "Иванов",
)  # fmt: skip
TITLES = ("Mr.", "Ms.", "Dr.", "Prof.", "Mx.")
POSITIONS = (
    "CEO", "CTO", "CFO", "Head of Sales", "Account Manager", "Buyer", "Procurement Lead",
    "Office Manager", "IT Director", "Marketing Manager", "Engineer", "Consultant",
    "Geschäftsführerin", "Directeur commercial", "Jefa de compras",
)  # fmt: skip
QUICK_COMPANIES = (
    "Blue Yonder Airlines", "Coho Winery", "Fourth Coffee", "Graphic Design Institute",
    "Humongous Insurance", "Lucerne Publishing", "Margie's Travel", "Proseware, Inc.",
    "School of Fine Art", "Trey Research", "Wingtip Toys", "Woodgrove Bank", "Bäckerei Müller",
    "Société Générale des Eaux", "contoso ltd",
)  # fmt: skip
CITIES = (
    ("1 Microsoft Way", "Redmond", "WA", "98052", "United States"),
    ("Friedrichstraße 123", "Berlin", "", "10117", "Germany"),
    ("12 rue de Rivoli", "Paris", "", "75001", "France"),
    ("Calle de Alcalá 45", "Madrid", "", "28014", "Spain"),
    ("Nørregade 7", "København", "", "1165", "Denmark"),
    ("ul. Marszałkowska 10", "Warszawa", "", "00-590", "Poland"),
    ("221B Baker Street", "London", "", "NW1 6XE", "United Kingdom"),
    ("2-1 Marunouchi", "Tokyo", "Tokyo", "100-0005", "Japan"),
    ("Av. Paulista 1000", "São Paulo", "SP", "01310-100", "Brazil"),
    ("100 King St W", "Toronto", "ON", "M5X 1A9", "Canada"),
)  # fmt: skip
FREE_MAIL = ("mail.example", "post.example", "inbox.example", "web.example")
COMMENTS = (
    "Met at the trade fair.\nFollow up in Q3.",
    "Prefers e-mail over phone.",
    "Décideur final — budget validé.",
    "Asked for a demo of the new module 🚀",
    "Call before 10:00 CET.\r\nSecond line of the note.",
    "Key contact for the renewal.",
)
#: Owner weights for the default users (Alex, Megan, Nestor, Lynne); others get weight 1.
_DEFAULT_OWNER_WEIGHTS = {
    "c0000000-0000-4000-8000-000000000001": 40,
    "c0000000-0000-4000-8000-000000000002": 25,
    "c0000000-0000-4000-8000-000000000003": 20,
    "c0000000-0000-4000-8000-000000000004": 15,
}


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _domain(name: str) -> str:
    return (_ascii(name.split()[0]) or "company") + ".example"


def _phone(rng: random.Random) -> str:
    country = rng.choice(("+1", "+44", "+49", "+33", "+34", "+45", "+48", "+81"))
    return (
        f"{country} {rng.randrange(100, 999)} {rng.randrange(1000, 9999)} {rng.randrange(10, 99)}"
    )


def _account_position(quick: str, number: int) -> str:
    """The job title at the primary account: for every third linked contact another one than
    the Quick Account Position (drawn without the random stream, so the rest stays as it was)."""
    if number % 3:
        return quick
    return POSITIONS[(POSITIONS.index(quick) + 1) % len(POSITIONS)] if quick else POSITIONS[0]


def demo_contacts(
    count: int = 300,
    seed: int = 42,
    *,
    users: Sequence[Mapping[str, Any]] | None = None,
    accounts: Sequence[Mapping[str, Any]] | None = None,
    units: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`count` demo contact seeds; identities default to the default seed's."""
    if users is None or accounts is None or units is None:
        from ..seed import default_seed

        defaults = default_seed()["pipeliner"]
        users = defaults["users"] if users is None else users
        accounts = defaults.get("accounts", []) if accounts is None else accounts
        units = defaults["units"] if units is None else units
    if not users:
        raise ValueError("demo contacts need at least one user")
    rng = random.Random(seed)
    owners = [u for u in users if not u.get("is_deleted")]
    weights = [_DEFAULT_OWNER_WEIGHTS.get(u["id"], 1) for u in owners]
    live_accounts = [a for a in accounts if not a.get("is_deleted")]
    unit_ids = [u["id"] for u in units if u.get("parent_id")] or [u["id"] for u in units]
    contacts: list[dict[str, Any]] = []
    relation_no = {"account": 0, "client": 0, "unit": 0}

    def next_id(kind: str, prefix: str) -> str:
        relation_no[kind] += 1
        return f"{prefix}{relation_no[kind]:012x}"

    for number in range(1, count + 1):
        owner = rng.choices(owners, weights)[0]
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        contact: dict[str, Any] = {
            "id": f"{DEMO_CONTACT_ID_PREFIX}{number:012x}",
            "owner_id": owner["id"],
            "unit_id": owner["default_unit_id"],
            "first_name": first,
            "last_name": last,
            "gender": rng.choice((0, 0, 1, 2, 3)),
            "share_mode": rng.choices((0, 1, 2, 3), (60, 15, 15, 10))[0],
        }
        if rng.random() < 0.04:  # a few with only one name part
            contact["first_name" if rng.random() < 0.5 else "last_name"] = ""
        if rng.random() < 0.2:
            contact["title"] = rng.choice(TITLES)
        if rng.random() < 0.1:
            contact["middle_name"] = rng.choice(FIRST_NAMES)
        if rng.random() < 0.8:
            contact["position"] = rng.choice(POSITIONS)
        company = None
        roll = rng.random()
        if live_accounts and roll < 0.4:
            account = rng.choice(live_accounts)
            company = account["name"]
            relations = [
                {
                    "id": next_id("account", ACCOUNT_RELATION_ID_PREFIX),
                    "account_id": account["id"],
                    "is_primary": True,
                    "position": _account_position(contact.get("position", ""), number),
                }
            ]
            others = [a for a in live_accounts if a["id"] != account["id"]]
            if others and rng.random() < 0.25:
                relations.append(
                    {
                        "id": next_id("account", ACCOUNT_RELATION_ID_PREFIX),
                        "account_id": rng.choice(others)["id"],
                        "is_primary": False,
                        "relationship": rng.choice((1, 2, 3)),
                    }
                )
            contact["account_relations"] = relations
        elif roll < 0.75:
            company = rng.choice(QUICK_COMPANIES)
            contact["quick_account_name"] = company
        local = f"{_ascii(first)}.{_ascii(last)}".strip(".") or f"contact{number}"
        domain = _domain(company) if company else rng.choice(FREE_MAIL)
        for slot, chance in (("email1", 0.85), ("email2", 0.25), ("email3", 0.1)):
            if rng.random() < chance:
                contact[slot] = f"{local}{'' if slot == 'email1' else slot[-1]}@{domain}"
        for slot, chance in (("email4", 0.05), ("email5", 0.04)):
            if rng.random() < chance:
                contact[slot] = f"{local}.{slot}@{rng.choice(FREE_MAIL)}"
        for slot, chance in (
            ("phone1", 0.65),
            ("phone2", 0.25),
            ("phone3", 0.07),
            ("phone4", 0.5),
            ("phone5", 0.2),
        ):
            if rng.random() < chance:
                contact[slot] = _phone(rng)
        if rng.random() < 0.5:
            street, city, state, zip_code, country = rng.choice(CITIES)
            contact.update(address=street, city=city, zip_code=zip_code, country=country)
            if state:
                contact["state_province"] = state
        if rng.random() < 0.2:
            contact["comments"] = rng.choice(COMMENTS)
        others = [u for u in owners if u["id"] != owner["id"]]
        if others and rng.random() < 0.25:
            shared = rng.sample(others, k=min(len(others), rng.choice((1, 1, 2))))
            contact["sharing_clients"] = [
                {
                    "id": next_id("client", SHARING_CLIENT_ID_PREFIX),
                    "client_id": user["id"],
                    "role": rng.choices((1, 2), (40, 60))[0],
                }
                for user in shared
            ]
        if unit_ids and rng.random() < 0.12:
            contact["sharing_units"] = [
                {
                    "id": next_id("unit", SHARING_UNIT_ID_PREFIX),
                    "unit_id": rng.choice(unit_ids),
                    "role": rng.choice((1, 2)),
                }
            ]
        if rng.random() < 0.03:
            contact["is_delete_protected"] = True
        if rng.random() < 0.02:
            contact["is_deleted"] = True
        elif rng.random() < 0.01:
            contact["is_archived"] = True
        created = _DEMO_START_US + rng.randrange(300 * _DAY_US)
        modified = min(created + rng.randrange(40 * _DAY_US), _DEMO_END_US)
        contact["created"] = format_us(created, "naive") + "Z"
        contact["modified"] = format_us(modified, "naive") + "Z"
        contact["modified_by_user"] = contact["modified"]
        contacts.append(contact)
    return contacts


FIRST_ASCII = tuple(sorted({_ascii(n).title() for n in FIRST_NAMES if _ascii(n)}))
LAST_ASCII = tuple(sorted({_ascii(n).title() for n in LAST_NAMES if _ascii(n)}))


def synthetic_rows(
    count: int,
    *,
    seed: int,
    owner_id: str,
    unit_id: str,
    contact_type_id: str,
    taken: Mapping[str, Any],
    stamps: Iterator[tuple[int, int]],
) -> list[dict[str, Any]]:
    """`count` plain contact rows (internal form) for benchmarks; ids avoid `taken`.

    `stamps` yields (timestamp µs, revision) per row, strictly increasing.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    getrandbits, choice, randrange = rng.getrandbits, rng.choice, rng.randrange
    for number in range(count):
        rid = str(uuid.UUID(int=getrandbits(128), version=4))
        while rid in taken or rid in seen:
            rid = str(uuid.UUID(int=getrandbits(128), version=4))
        seen.add(rid)
        first, last, company = choice(FIRST_ASCII), choice(LAST_ASCII), choice(QUICK_COMPANIES)
        moment, revision = next(stamps)
        rows.append(
            {
                "id": rid,
                "owner_id": owner_id,
                "unit_id": unit_id,
                "contact_type_id": contact_type_id,
                "first_name": first,
                "last_name": last,
                "email1": f"{first.lower()}.{last.lower()}.{seed}.{number}@bulk.example",
                "phone1": f"+1 555 {randrange(1000000, 9999999)}",
                "position": choice(POSITIONS),
                "quick_account_name": company,
                "created": moment,
                "modified": moment,
                "revision": revision,
            }
        )
    return rows
