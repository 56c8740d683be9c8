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
from collections.abc import Sequence

from .actions import HeaderLookup

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
