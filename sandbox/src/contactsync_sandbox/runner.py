"""Start every registered emulator on its own HTTPS port, all behind one local CA.

Default ports are fixed so that the Meltano `sandbox` environment and people's shells can
hard-code the URLs; tests use free ports (0) so that parallel runs never collide. New emulators
join by calling `register(name, factory, default_port)` from this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .echo import EchoEmulator
from .graph import GraphEmulator
from .identity import IdentityEmulator
from .pipeliner import PipelinerEmulator
from .server import LOOPBACK, Emulator, ServerThread, require_loopback
from .tls import DEFAULT_STATE_DIR, LocalCA, load_or_create_ca

#: The fixed port block of `contactsync-sandbox serve` (documented in sandbox/README.md).
DEFAULT_PORTS: Mapping[str, int] = {
    "pipeliner": 8701,  # Pipeliner API v100 emulator (issue #3)
    "graph": 8702,  # Microsoft Graph v1.0 emulator (issue #4)
    "identity": 8703,  # Microsoft identity platform emulator (issue #4)
    "echo": 8709,  # the framework's own test server
}
#: Keys `info()` always has; None until the emulator that fills them is registered.
REQUIRED_INFO_KEYS = ("pipeliner_url", "graph_url", "authority", "ca_path")
#: The part of a seed (`{"pipeliner": ..., "microsoft": ...}`) each emulator loads.
SEED_SECTIONS: Mapping[str, str] = {
    "pipeliner": "pipeliner",
    "graph": "microsoft",
    "identity": "microsoft",
}


@dataclass(frozen=True)
class EmulatorSpec:
    name: str
    factory: Callable[[], Emulator]
    default_port: int


REGISTRY: dict[str, EmulatorSpec] = {}


def register(name: str, factory: Callable[[], Emulator], default_port: int | None = None) -> None:
    """Make `Sandbox` start this emulator (default port from `DEFAULT_PORTS` unless given)."""
    port = default_port if default_port is not None else DEFAULT_PORTS.get(name)
    if port is None:
        raise ValueError(f"no default port for emulator {name!r}; add it to DEFAULT_PORTS")
    REGISTRY[name] = EmulatorSpec(name, factory, port)


register("echo", EchoEmulator)
register("pipeliner", PipelinerEmulator)
register("graph", GraphEmulator)
register("identity", IdentityEmulator)


class Sandbox:
    """All emulators, started together; a context manager.

    `free_ports=True` binds every server to a free port (tests); otherwise the fixed
    `DEFAULT_PORTS` (or `ports` overrides) are used and a taken port is an error. `seed` (a
    complete seed, see `fixture.load_seed_files`) replaces the default seed, also on reset.
    """

    def __init__(
        self,
        state_dir: Path | str = DEFAULT_STATE_DIR,
        *,
        free_ports: bool = False,
        host: str = LOOPBACK,
        emulators: Iterable[str] | None = None,
        ports: Mapping[str, int] | None = None,
        seed: Mapping[str, Any] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.seed = seed
        self.host = require_loopback(host)
        self.free_ports = free_ports
        names = list(REGISTRY) if emulators is None else list(emulators)
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise KeyError(f"unknown emulator(s) {unknown}; registered: {sorted(REGISTRY)}")
        self._names = names
        self._ports = dict(ports or {})
        self.ca: LocalCA | None = None
        self.emulators: dict[str, Emulator] = {}
        self.servers: dict[str, ServerThread] = {}

    def start(self) -> Sandbox:
        if self.servers:
            return self
        self.ca = load_or_create_ca(self.state_dir)
        context = self.ca.server_context(self.host)
        try:
            for name in self._names:
                spec = REGISTRY[name]
                port = 0 if self.free_ports else self._ports.get(name, spec.default_port)
                emulator = spec.factory()
                if self.seed is not None and name in SEED_SECTIONS:
                    emulator.use_seed(self.seed[SEED_SECTIONS[name]])
                server = ServerThread(
                    emulator, port=port, host=self.host, ssl_context=context, name=name
                )
                server.start()
                self.emulators[name], self.servers[name] = emulator, server
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
        self.emulators.clear()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def emulator(self, name: str) -> Emulator:
        return self.emulators[name]

    def url(self, name: str) -> str:
        return self.servers[name].url

    def info(self) -> dict[str, Any]:
        """What clients need: the service URLs, the CA to trust, and the control URLs."""
        if self.ca is None or not self.servers:
            raise RuntimeError("the sandbox is not started")
        info: dict[str, Any] = dict.fromkeys(REQUIRED_INFO_KEYS)
        info["ca_path"] = str(self.ca.ca_path)
        for name, emulator in self.emulators.items():
            info.update(emulator.info(self.url(name)))
        info["urls"] = {name: self.url(name) for name in self.servers}
        info["control_urls"] = {name: f"{self.url(name)}/_sandbox" for name in self.servers}
        return info

    def info_json(self) -> str:
        """`info()` as the single JSON line `contactsync-sandbox serve` prints first."""
        return json.dumps(self.info(), sort_keys=True)
