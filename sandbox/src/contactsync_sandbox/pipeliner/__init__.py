"""The Pipeliner CRM API v100 emulator (issue #3): see sandbox/README.md, section `pipeliner`."""

from .demo import demo_contacts
from .emulator import PipelinerEmulator

__all__ = ["PipelinerEmulator", "demo_contacts"]
