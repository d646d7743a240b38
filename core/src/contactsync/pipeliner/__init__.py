"""Pipeliner CRM, the CRM side: its API client, its projection of the field table, its records,
its rights model (``scope``) and its destination."""

from contactsync.sync.link import Side, name_side

name_side(Side.CRM, "pipeliner", "Pipeliner")
