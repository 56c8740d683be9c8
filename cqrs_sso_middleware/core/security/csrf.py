"""CSRF protection for the two state-changing POSTs: sign-in start and sign-out.

Signed double-submit: a random value sits in an HttpOnly ``SameSite=Lax`` cookie, and the
form carries ``HMAC(secret, value)``. A cross-site page can make a browser send the cookie
but can neither read it nor compute the HMAC. As defence in depth, a request whose
``Origin`` names another origin, or whose ``Sec-Fetch-Site`` says ``cross-site``, is refused
whatever its token (OWASP CSRF cheat sheet, "Verifying origin with standard headers").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from ..context import RequestContext
from ..forms import parse_form
from ..protocol import HeaderLookup, ReadForm
from .cookies import CookieNames, CookiePolicy

FIELD_NAME = "csrf_token"


def new_csrf_cookie_value() -> str:
    return secrets.token_urlsafe(32)


def _mac(key: str, cookie_value: str) -> str:
    digest = hmac.new(key.encode(), b"cqrs-sso.csrf:" + cookie_value.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def csrf_token(secret_keys: Sequence[str], cookie_value: str) -> str:
    return _mac(secret_keys[0], cookie_value)


def csrf_token_valid(secret_keys: Sequence[str], cookie_value: str | None, token: str | None) -> bool:
    if not cookie_value or not token:
        return False
    supplied = token.encode("ascii", "replace")
    # Every key is tried so a page rendered before a key rotation still submits.
    return any(hmac.compare_digest(_mac(key, cookie_value).encode(), supplied) for key in secret_keys)


def cross_origin(headers: HeaderLookup, own_origin: str) -> bool:
    origin = headers.get("origin")
    if origin is not None and origin != own_origin:
        return True
    return headers.get("sec-fetch-site") == "cross-site"


class CsrfGuard:
    """The signed double-submit token of one deployment, for its pages and its POSTs."""

    def __init__(
        self, secret_keys: Sequence[str], own_origin: str, names: CookieNames, policy: CookiePolicy
    ) -> None:
        self.secret_keys = secret_keys
        self.own_origin = own_origin
        self.cookie = names.csrf
        self.policy = policy

    def from_own_origin(self, headers: HeaderLookup) -> bool:
        origin = headers.get("origin")
        if origin is not None:
            return origin == self.own_origin and headers.get("sec-fetch-site") in (None, "same-origin")
        return headers.get("sec-fetch-site") == "same-origin"

    def token(self, ctx: RequestContext) -> str:
        """The token for a form on this page; sets the CSRF cookie when the browser has none."""
        value = ctx.cookies.get(self.cookie, [""])[0]
        if not value:
            value = new_csrf_cookie_value()
            ctx.set_cookies.append(self.policy.set_cookie(self.cookie, value))
        return csrf_token(self.secret_keys, value)

    def checked_form(
        self, ctx: RequestContext, endpoint: str, *, same_origin_is_enough: bool = False
    ) -> Generator[ReadForm, Any, Mapping[str, str] | None]:
        """The posted form when its token is genuine and it came from our own origin; else
        ``None`` (audited as ``csrf_rejected``).

        ``same_origin_is_enough``: a form without our token is accepted when the browser
        itself says it was posted from our own origin — ``Origin`` equal to ours, or
        ``Sec-Fetch-Site: same-origin``. Browsers set both and no page can forge them
        (Fetch standard, forbidden request headers), so a protected app's own page can
        have a plain Sign out button. Requests that say neither still need the token."""
        body = yield ReadForm()
        form = parse_form(body, ctx.request.headers.get("content-type")) if isinstance(body, bytes) else None
        cookie_value = ctx.cookies.get(self.cookie, [""])[0]
        if form is not None and same_origin_is_enough and self.from_own_origin(ctx.request.headers):
            return form
        if (
            form is None
            or cross_origin(ctx.request.headers, self.own_origin)
            or not csrf_token_valid(self.secret_keys, cookie_value, form.get(FIELD_NAME))
        ):
            ctx.audit("csrf_rejected", endpoint=endpoint)
            return None
        return form
