"""What earlier ledger schemas called things, for :meth:`Ledger._migrate` to bring them up to date.

Schema 3 names the two sides by role (the CRM and the address book) where schema 2 and earlier
named the services: this module is the one place in the sync kernel that still spells those
names, as data the migration reads (tests/unit/test_kernel_boundary.py allows it, and only it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Schema 3: columns renamed, by table (old name -> new name).
RENAMED_COLUMNS: Final[Mapping[str, Mapping[str, str]]] = {
    "contactsync_links": {
        "pipeliner_id": "crm_id",
        "outlook_id": "book_id",
        "pipeliner_version": "crm_version",
        "outlook_version": "book_version",
    },
    "contactsync_conflicts": {"pipeliner_id": "crm_id"},
}

#: Schema 3: stored values renamed, by (table, column) (old value -> new value).
RENAMED_VALUES: Final[Mapping[tuple[str, str], Mapping[str, str]]] = {
    ("contactsync_links", "state"): {"restore_outlook": "restore_book"},
    ("contactsync_failures", "side"): {"pipeliner": "crm", "outlook": "book"},
    ("contactsync_conflicts", "kept_side"): {"pipeliner": "crm", "outlook": "book"},
}

#: Schema 2 stored a delete held for the mass-delete guard as a failure with this reason; schema 3
#: moves such rows to ``contactsync_held_deletes``.
HELD_DELETE_REASON: Final = "delete held until the end of the run for the mass-delete guard"
