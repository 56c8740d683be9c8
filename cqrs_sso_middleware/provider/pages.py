"""The provider's own pages: its login form, shaped like NHSmail's ("Sign in with your
NHSmail account", "Email Address", "Password", "Sign in"), and its messages.

Demo and tests only; shares no code with the middleware.
"""

from __future__ import annotations

import html

WRONG_CREDENTIALS = "Incorrect user ID or password. Type the correct user ID and password, and try again."
DEMO_NOTICE = "Demonstration identity provider for testing only. This is not NHSmail."

_STYLE = (
    "*{box-sizing:border-box}body{font-family:Arial,sans-serif;background:#f0f4f5;color:#212b32;margin:0}"
    "header{background:#005eb8;color:#fff;padding:1rem;font-weight:700}"
    "main{max-width:28rem;margin:2rem auto;background:#fff;padding:1.5rem;border:1px solid #d8dde0}"
    "label{display:block;font-weight:700;margin-top:1rem}"
    "input{font:inherit;width:100%;padding:.4rem;border:2px solid #4c6272;margin-top:.25rem}"
    "button{font:inherit;margin-top:1.25rem;padding:.5rem 1.25rem;background:#005eb8;color:#fff;border:0}"
    "button.secondary{background:#fff;color:#005eb8;border:2px solid #005eb8;margin-left:.5rem}"
    "input:focus,button:focus{outline:4px solid #ffeb3b;outline-offset:0}"
    ".error{border-left:6px solid #d5281b;padding-left:.75rem;color:#212b32}"
    ".demo{background:#ffeb3b;padding:.5rem;font-size:.9rem}"
)


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header>NHS</header><main><p class="demo" role="note">{DEMO_NOTICE}</p>{body}</main></body></html>'
    )


_CARRIED = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)


def login_page(params: dict[str, str], error: str, service: str = "NHSmail account") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
        for name in _CARRIED
        if name in params
    )
    login = html.escape(params.get("login", ""))
    alert = f'<p class="error" role="alert" id="error">{html.escape(error)}</p>' if error else ""
    described = ' aria-describedby="error" aria-invalid="true"' if error else ""
    body = (
        f"<h1>Sign in with your {html.escape(service)}</h1>"
        f'{alert}<form method="post">{hidden}'
        f'<label for="login">Email Address</label>'
        f'<input id="login" name="login" type="email" autocomplete="username"'
        f' value="{login}"{described} required>'
        f'<label for="passwd">Password</label>'
        f'<input id="passwd" name="passwd" type="password" autocomplete="current-password"{described}>'
        '<button type="submit" name="action" value="sign_in">Sign in</button>'
        '<button type="submit" name="action" value="cancel" class="secondary" formnovalidate>Cancel</button>'
        "</form>"
    )
    return page(f"Sign in with your {service}", body)
