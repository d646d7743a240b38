"""The Microsoft Graph v1.0 emulator (issue #4): see sandbox/README.md, section `graph`."""

from .emulator import GraphEmulator

__all__ = ["GraphEmulator"]
