"""singer-sdk glue shared by the contactsync plugins.

The names are imported on first use: the taps and the mapper need only ``plugin``, and the
target module brings the engine and the ledger (SQLAlchemy, about half a CPU second to import)
that a tap's start-up has no use for (issue #15).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contactsync_singer.target import ContactsSink, LegTarget

__all__ = ["ContactsSink", "LegTarget"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from contactsync_singer import target

        return getattr(target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
