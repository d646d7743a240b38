"""singer-sdk glue shared by the contactsync plugins."""

from contactsync_singer.target import ContactsSink, LegTarget

__all__ = ["ContactsSink", "LegTarget"]
