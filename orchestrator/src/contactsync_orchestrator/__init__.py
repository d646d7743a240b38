"""Dagster code location of contactsync: one partition per user (see definitions.py)."""

from contactsync_orchestrator.definitions import defs

__all__ = ["defs"]
