"""contactsync_sandbox: local HTTPS emulators of the services contactsync talks to.

The framework (TLS from a local CA, the `/_sandbox/` control API, faults, counters, the
runner, the CLI and the pytest fixture) lives here; each emulator is an `Emulator` subclass
registered in `contactsync_sandbox.runner`. See sandbox/README.md.
"""

__version__ = "0.1.0"
