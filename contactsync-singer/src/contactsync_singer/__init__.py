"""singer-sdk glue shared by the contactsync targets."""

from contactsync_singer.target import ContactsSink, LegTarget

__all__ = ["ContactsSink", "LegTarget"]
