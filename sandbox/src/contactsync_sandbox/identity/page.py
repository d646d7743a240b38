"""The `/devicelogin` page: enter the code, pick the account, Accept (or Cancel).

It stands in for microsoft.com/devicelogin so that a person running the demo can finish a
device-code sign-in in a browser; tests use the control API instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0}input,select{font-size:1.1rem;padding:.3rem}"
    "button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.6rem}"
)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}"
        "<p><small>contactsync sandbox identity provider: a test double, not Microsoft."
        "</small></p></body></html>"
    )


def form_page(
    users: Iterable[tuple[str, str]],
    app_name: str | None,
    code: str = "",
    error: str | None = None,
) -> str:
    """`users` are (upn, display name) pairs."""
    options = "".join(
        f"<option value='{escape(upn, quote=True)}'>{escape(name)} ({escape(upn)})</option>"
        for upn, name in users
    )
    app = f" to <b>{escape(app_name)}</b>" if app_name else ""
    problem = f"<p role='alert' style='color:#a00'>{escape(error)}</p>" if error else ""
    body = (
        f"{problem}<form method='post'>"
        "<label>Code <input name='code' autocomplete='off' required "
        f"value='{escape(code, quote=True)}'></label>"
        f"<label>Pick an account <select name='upn'>{options}</select></label>"
        f"<p>Sign in{app} and let it read and write your contacts "
        "(Contacts.ReadWrite) and keep access (offline_access)?</p>"
        "<button name='action' value='accept'>Accept</button>"
        "<button name='action' value='cancel'>Cancel</button></form>"
    )
    return _page("Enter code", body)


def done_page(accepted: bool, upn: str | None, app_name: str | None) -> str:
    if accepted:
        text = (
            f"You have signed in to {escape(app_name or 'the application')} as "
            f"{escape(upn or '')} on your device. You may now close this window."
        )
        return _page("Signed in", f"<p>{text}</p>")
    return _page("Sign-in cancelled", "<p>The device will be told that you declined.</p>")
