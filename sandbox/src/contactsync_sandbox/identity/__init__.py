"""The Microsoft identity platform emulator (issue #4): see sandbox/README.md, `identity`."""

from .emulator import IdentityEmulator

__all__ = ["IdentityEmulator"]
