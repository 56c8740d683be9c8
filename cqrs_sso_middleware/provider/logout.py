"""The demo provider's single sign-on session and its logout side, shaped like Entra's.

Entra keeps its own session: a second Sign In in the same browser is let straight through
without a password until the person signs out *at Entra*. Its logout endpoint
(``/oauth2/v2.0/logout``) ends that session, loads each signed-in application's registered
front-channel logout URL in an iframe, and returns to ``post_logout_redirect_uri`` only
when that address is registered for the application. Back-channel logout (which Entra does
not send) is here for tests: :func:`logout_token` and ``NHSmailLikeProvider.send_backchannel_logout``.

Demo and tests only; shares no code with the middleware.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey

SSO_COOKIE = "demo_idp_session"
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class SingleSignOnSession:
    """One browser's session at the provider."""

    email: str
    sid: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    clients: set[str] = field(default_factory=set)
    started_at: float = field(default_factory=time.time)


def logout_token(
    key: RSAKey,
    issuer: str,
    client_id: str,
    *,
    sid: str | None = None,
    subject: str | None = None,
    now: float | None = None,
    header: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    """A Back-Channel Logout 1.0 §2.4 logout token; ``overrides`` forge it (None removes a claim)."""
    moment = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "iat": moment,
        "exp": moment + 120,
        "jti": secrets.token_urlsafe(16),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    if sid:
        claims["sid"] = sid
    if subject:
        claims["sub"] = subject
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    jose_header = header or {"alg": "RS256", "kid": key.kid, "typ": "logout+jwt"}
    return jwt.encode(jose_header, claims, key, algorithms=[str(jose_header["alg"])])


def signed_out_page(frontchannel_urls: list[str], continue_to: str | None, notice: str) -> str:
    """The provider's "you signed out" page: one hidden iframe per front-channel logout URL,
    then on to the application once the page — iframes included — has loaded (the window
    ``load`` event waits for them). No meta refresh: a timed refresh fails WCAG 2.2.1."""
    frames = "".join(
        f'<iframe src="{html.escape(url)}" title="Signing out of an application" hidden></iframe>'
        for url in frontchannel_urls
    )
    refresh = link = ""
    if continue_to:
        target = html.escape(continue_to)
        destination = json.dumps(continue_to).replace("<", "\\u003c")
        refresh = f"<script>addEventListener('load', () => location.replace({destination}));</script>"
        link = f'<p><a id="continue" href="{target}">Continue</a></p>'
    return (
        '<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Signed out</title>{refresh}</head><body>"
        f'<header>NHS</header><main><p class="demo" role="note">{html.escape(notice)}</p>'
        f"<h1>You have signed out of your NHSmail account</h1>{frames}{link}</main></body></html>"
    )


def frontchannel_url(base: str, sid: str, issuer: str | None = None) -> str:
    """The RP's front-channel logout URL with ``sid``. Entra sends ``sid`` alone, although
    Front-Channel Logout 1.0 §2 asks for ``iss`` too; ``issuer`` adds it, as the spec has it."""
    separator = "&" if "?" in base else "?"
    params = {"iss": issuer, "sid": sid} if issuer else {"sid": sid}
    return base + separator + urlencode(params)
