"""contactsync-mapper: the field table and the scope filter between the contact plugins.

The pure record mappings live in :mod:`contactsync.mapping` (no Singer import); the
singer-sdk plugin is :class:`contactsync_mapper.mapper.ContactsyncMapper`.
"""

from contactsync.mapping import (
    Direction,
    RecordError,
    outlook_schema,
    outlook_to_pipeliner,
    pipeliner_schema,
    pipeliner_to_outlook,
)

__all__ = [
    "Direction",
    "RecordError",
    "outlook_schema",
    "outlook_to_pipeliner",
    "pipeliner_schema",
    "pipeliner_to_outlook",
]
