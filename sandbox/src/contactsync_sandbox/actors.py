"""People using Pipeliner and Outlook, played through the sandbox's control API.

A test makes edits as users make them (a Pipeliner user editing a contact in the app bumps its
`modified`, `revision` and `modified_by_user`; a mailbox owner editing in Outlook gets a new
change key that delta sees), then reads what the sync did. Records are plain dicts in the seed
format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .client import SandboxControl
from .pipeliner.entities import UUID_RE
from .seed import default_seed


class PipelinerActor:
    """Pipeliner's users at work, and a reader of its contacts.

    A user is named by id, e-mail, or the part of the e-mail before `@` (`"alex"`).
    """

    def __init__(self, control: SandboxControl, users: Mapping[str, str] | None = None) -> None:
        self.control = control
        self._users: dict[str, str] | None = dict(users) if users is not None else None

    def user_id(self, user: str) -> str:
        if UUID_RE.match(user):
            return user
        for attempt in range(2):
            if self._users is None or attempt:
                self._users = self._load_users()
            found = self._users.get(user.lower())
            if found:
                return found
        raise KeyError(f"no Pipeliner user {user!r} in the sandbox")

    def _load_users(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for row in self.control.state().get("users", []):
            email = str(row.get("email", "")).lower()
            names[email] = row["id"]
            names.setdefault(email.split("@")[0], row["id"])
        return names

    def seed(self, contacts: Sequence[Mapping[str, Any]] = (), **extra: Any) -> None:
        """The default seed's identities and accounts, and exactly these contacts."""
        pipeliner = default_seed()["pipeliner"]
        seed = {k: v for k, v in pipeliner.items() if k != "demo_contacts"}
        self.control.seed({**seed, "contacts": list(contacts), **extra})
        self.control.reset_counters()
        self.control.clear_faults()
        self._users = None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self.control._call(method, f"/pipeliner{path}", json=body)

    def create(self, user: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/users/{self.user_id(user)}/contacts", fields)

    def edit(self, user: str, contact_id: str, **fields: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/users/{self.user_id(user)}/contacts/{contact_id}", fields)

    def delete(self, user: str, contact_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/users/{self.user_id(user)}/contacts/{contact_id}")

    def share(self, user: str, contact_id: str, **target: Any) -> dict[str, Any]:
        return self._call(
            "POST", f"/users/{self.user_id(user)}/contacts/{contact_id}/share", target
        )

    def unshare(self, user: str, contact_id: str, **target: Any) -> dict[str, Any]:
        return self._call(
            "POST", f"/users/{self.user_id(user)}/contacts/{contact_id}/unshare", target
        )

    def raw(self, contact_id: str) -> dict[str, Any]:
        return self._call("GET", f"/contacts/{contact_id}")

    # -- an administrator ------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """The Pipeliner REST API with the space's application keys, as an admin script would."""
        state = self.control.state()
        key = state["application_keys"][0]
        base = self.control.control_url.removesuffix("/_sandbox")
        response = self.control.session.request(
            method,
            f"{base}/api/v100/rest/spaces/{state['space_id']}/entities{path}",
            json=body,
            auth=(key["api_username"], key["api_password"]),
            timeout=self.control.timeout,
        )
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()["data"]

    def move_user(self, user: str, unit: str) -> dict[str, Any]:
        """Make ``unit`` the user's only unit (Administration → Users: unit membership), through
        the REST API (``PATCH Clients/{id}``)."""
        body = {"unit_membership": [{"id": unit}], "default_unit_id": unit}
        return self.api("PATCH", f"/Clients/{self.user_id(user)}", body)

    def edit_role(self, role_id: str, **rights: Any) -> dict[str, Any]:
        """Change a role's rights (the admin module; the REST API has no route for it)."""
        return self._call("PATCH", f"/roles/{role_id}", rights)

    def move_unit(self, unit: str, parent: str | None) -> dict[str, Any]:
        """Put a sales unit under another one in the unit tree (the admin module)."""
        return self._call("PATCH", f"/units/{unit}", {"parent_id": parent})

    def settings(self, **switches: Any) -> dict[str, Any]:
        """The emulator's switches for what the vendor does not document."""
        return self._call("POST", "/settings", switches)

    def contacts(self, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        rows = self.control.state().get("contacts", [])
        return [c for c in rows if include_deleted or not c.get("is_deleted")]

    def requests(self, method: str, route_suffix: str) -> int:
        """How many requests hit the route ending with ``route_suffix``."""
        endpoints = self.control.counters().get("endpoints", {})
        return sum(
            v["requests"]
            for k, v in endpoints.items()
            if k.startswith(method + " ") and k.endswith(route_suffix)
        )


class OutlookActor:
    """The owner of one mailbox (UPN or id) working in Outlook."""

    def __init__(self, control: SandboxControl, upn: str = "alex@contoso.example") -> None:
        self.control = control
        self.upn = upn

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self.control._call(method, f"/graph{path}", json=body)

    def new_folder(self, name: str, parent: str = "Contacts") -> dict[str, Any]:
        return self._call(
            "POST", f"/mailboxes/{self.upn}/folders", {"displayName": name, "parent": parent}
        )

    def create(self, folder: str, **props: Any) -> dict[str, Any]:
        return self._call("POST", f"/mailboxes/{self.upn}/folders/{folder}/contacts", props)

    def edit(self, contact_id: str, **props: Any) -> dict[str, Any]:
        return self._call("PATCH", f"/mailboxes/{self.upn}/contacts/{contact_id}", props)

    def delete(self, contact_id: str) -> None:
        url = f"{self.control.control_url}/graph/mailboxes/{self.upn}/contacts/{contact_id}"
        response = self.control.session.delete(url, timeout=self.control.timeout)
        if response.status_code != 204:  # no body to decode
            raise RuntimeError(f"DELETE {url} -> {response.status_code}: {response.text}")

    def move(self, contact_id: str, folder: str) -> dict[str, Any]:
        """The Outlook client's move: the owner files the contact into another folder (drag and
        drop, "Move to folder"). Graph has no move action for contacts (contact.md lists none;
        messages and mail folders have one), but Outlook's object model does (ContactItem.Move,
        MicrosoftDocs/VBA-Docs). The contact keeps its id and gets a new change key; delta
        reports it removed from the old folder and new in the other (contact-delta.md)."""
        return self._call(
            "POST", f"/mailboxes/{self.upn}/contacts/{contact_id}/move", {"folder": folder}
        )

    def graph(self, method: str, path: str, body: Any = None) -> Any:
        """Microsoft Graph as the owner's own app calls it (``/me/...``, a delegated token)."""
        token = self._call("POST", "/tokens", {"mailbox": self.upn})["access_token"]
        base = self.control.control_url.removesuffix("/_sandbox")
        response = self.control.session.request(
            method,
            f"{base}/v1.0/me{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=self.control.timeout,
        )
        if not response.ok:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def folder_id(self, name: str) -> str:
        return next(f["id"] for f in self.folders() if f["displayName"] == name)

    def rename_folder(self, name: str, new_name: str) -> dict[str, Any]:
        """Rename a folder as Outlook does, through Graph: ``PATCH /me/contactFolders/{id}``
        (contactfolder-update.md)."""
        return self.graph(
            "PATCH", f"/contactFolders/{self.folder_id(name)}", {"displayName": new_name}
        )

    def delete_folder(self, name: str) -> None:
        """Delete a folder as Outlook does, through Graph: ``DELETE /me/contactFolders/{id}``
        (contactfolder-delete.md); its contacts go with it."""
        self.graph("DELETE", f"/contactFolders/{self.folder_id(name)}")

    def contacts(self, folder: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/mailboxes/{self.upn}/folders/{folder}/contacts")["contacts"]

    def folders(self) -> list[dict[str, Any]]:
        return self._call("GET", f"/mailboxes/{self.upn}/folders")["folders"]

    def storage(self, **options: Any) -> dict[str, Any]:
        """Where Graph's docs are silent: ``string_limits``, ``compact_empty_entries``."""
        return self._call("POST", "/storage", options)

    def expire_delta_tokens(self) -> None:
        self._call("POST", "/expire-delta-tokens", {"mailbox": self.upn})

    def throttle(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "/throttle", settings)

    def throttled(self) -> int:
        """429s answered for budget or concurrency so far, inner $batch requests included."""
        stats = self._call("GET", "/stats")["mailboxes"].values()
        return sum(m["throttled_budget"] + m["throttled_concurrency"] for m in stats)

    def expire_access_tokens(self) -> None:
        self._call("POST", "/expire-tokens", {})

    def requests(self, method: str = "", contains: str = "") -> int:
        """Requests whose endpoint key starts with ``method`` and contains ``contains``."""
        endpoints = self.control.counters().get("endpoints", {})
        return sum(
            v["requests"]
            for k, v in endpoints.items()
            if k.startswith(method) and contains in k and "(no route)" not in k
        )
