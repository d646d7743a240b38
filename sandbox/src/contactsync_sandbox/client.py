"""`SandboxControl`: drive one emulator's `/_sandbox/` control API from tests and scripts.

Uses its own requests Session with `trust_env=False`: `REQUESTS_CA_BUNDLE` (set in some
environments) would otherwise override `verify=` and proxy variables could route loopback
traffic elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests


def sandbox_session(ca_path: str | Path) -> requests.Session:
    """A Session that trusts the sandbox CA only and ignores proxy/CA environment variables."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_path)
    return session


class SandboxControl:
    """Client of one emulator's control API, e.g. `SandboxControl(info["urls"]["echo"], ca)`."""

    def __init__(self, base_url: str, ca_path: str | Path, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.control_url = f"{self.base_url}/_sandbox"
        self.timeout = timeout
        self.session = sandbox_session(ca_path)

    def state(self) -> Any:
        return self._call("GET", "/state")

    def seed(self, data: Any) -> Any:
        """Replace the emulator's whole state; returns the new state."""
        return self._call("POST", "/seed", json=data)

    def reset(self) -> Any:
        """Default seed, no faults, zero counters; returns the state."""
        return self._call("POST", "/reset")

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "/counters")

    def endpoint(self, key: str) -> dict[str, Any]:
        """Counters of one endpoint (`"GET /echo/items"`), zeros if it was never called."""
        zero = {"requests": 0, "statuses": {}, "in_flight": 0, "max_in_flight": 0}
        return self.counters()["endpoints"].get(key, zero)

    def reset_counters(self) -> dict[str, Any]:
        return self._call("POST", "/counters/reset")

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/requests")["requests"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def add_fault(self, kind: str, **params: Any) -> dict[str, Any]:
        body = {"kind": kind, **{k: v for k, v in params.items() if v is not None}}
        return self._call("POST", "/faults", json=body)

    def burst_429(
        self,
        count: int,
        retry_after: float | None,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        return self.add_fault(
            "429", count=count, retry_after=retry_after, path_prefix=path_prefix, method=method
        )

    def fail_5xx(
        self,
        count: int,
        status: int = 503,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        return self.add_fault(
            "5xx", count=count, status=status, path_prefix=path_prefix, method=method
        )

    def latency(
        self,
        seconds: float,
        path_prefix: str | None = None,
        method: str | None = None,
        count: int | None = None,
    ) -> dict[str, Any]:
        return self.add_fault(
            "latency", seconds=seconds, path_prefix=path_prefix, method=method, count=count
        )

    def drop(
        self,
        count: int,
        path_prefix: str | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        return self.add_fault("drop", count=count, path_prefix=path_prefix, method=method)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def keep_alive(self, on: bool) -> None:
        """Keep connections open between requests (the default), or close each one."""
        self._call("PUT", "/connections", json={"keep_alive": on})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(
            method, self.control_url + path, timeout=self.timeout, **kwargs
        )
        if response.status_code >= 400:
            raise SandboxControlError(
                f"{method} {self.control_url}{path} -> {response.status_code}: {response.text}"
            )
        return response.json()

    def close(self) -> None:
        self.session.close()


class SandboxControlError(RuntimeError):
    """The control API refused a request (the message carries its JSON error)."""
