"""Building the responses the middleware answers itself: pages, redirects, JSON.

Every response carries ``Cache-Control: no-store`` (pages hold personal data and one-time
forms; RFC 9111 §5.2.2.5) and headers that stop it being framed or leaking the callback URL
in a ``Referer`` to another origin. Pages are rendered by an injected :class:`PageRenderer`, so the core stays
free of template I/O and tests can see which page was chosen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from .actions import Respond

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    # Not "no-referrer": with it, browsers send "Origin: null" on our own form POSTs (Fetch
    # standard, "append a request Origin header"), which the CSRF origin check must refuse.
    # "same-origin" still never sends a URL (such as the callback's) to another origin.
    ("Referrer-Policy", "same-origin"),
)


class PageRenderer(Protocol):
    def render(self, template: str, context: Mapping[str, Any]) -> str: ...

    def asset(self, name: str) -> bytes: ...


def provider_origin(issuer: str) -> str:
    parts = urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(form_targets: Sequence[str]) -> str:
    # form-action also governs the redirect that follows a form POST (Chromium enforces
    # it), so the provider's origin must be listed for the Sign In button to work.
    targets = " ".join(("'self'", *form_targets))
    return (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    )


# What a response that is not a page (JSON, a redirect, text) may do: nothing at all.
_NOTHING_ALLOWED = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def _respond(
    status: int,
    content_type: str,
    body: bytes,
    *,
    csp: str = _NOTHING_ALLOWED,
    extra: Sequence[tuple[str, str]] = (),
    set_cookies: Sequence[str] = (),
    security: Sequence[tuple[str, str]] = SECURITY_HEADERS,
) -> Respond:
    """Every response this package makes is built here, so none lacks the headers above."""
    headers = [
        ("Content-Type", content_type),
        ("Content-Security-Policy", csp),
        *security,
        *extra,
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    ]
    return Respond(status, tuple(headers), body)


def html_response(status: int, html: str, csp: str, set_cookies: Sequence[str] = ()) -> Respond:
    return _respond(
        status, "text/html; charset=utf-8", html.encode("utf-8"), csp=csp, set_cookies=set_cookies
    )


def frameable_html_response(html: str, frame_ancestor: str, set_cookies: Sequence[str] = ()) -> Respond:
    """A page that only ``frame_ancestor`` (the provider's origin) may frame: the
    front-channel logout iframe (Front-Channel Logout 1.0 §4). No ``X-Frame-Options``:
    ``ALLOW-FROM`` is obsolete, and CSP ``frame-ancestors`` supersedes it."""
    return _respond(
        200,
        "text/html; charset=utf-8",
        html.encode("utf-8"),
        csp=f"default-src 'none'; style-src 'self'; frame-ancestors {frame_ancestor}; base-uri 'none'",
        set_cookies=set_cookies,
        security=tuple(pair for pair in SECURITY_HEADERS if pair[0] != "X-Frame-Options"),
    )


def redirect(location: str, set_cookies: Sequence[str] = ()) -> Respond:
    """``303 See Other``: the browser follows with a GET, whatever the request method was."""
    return _respond(
        303,
        "text/plain; charset=utf-8",
        b"See Other\n",
        extra=(("Location", location),),
        set_cookies=set_cookies,
    )


def json_response(
    status: int,
    payload: Mapping[str, Any],
    extra_headers: Sequence[tuple[str, str]] = (),
    set_cookies: Sequence[str] = (),
) -> Respond:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _respond(status, "application/json", body, extra=extra_headers, set_cookies=set_cookies)


def text_response(status: int, body: bytes, content_type: str) -> Respond:
    """A non-HTML body such as the Prometheus exposition."""
    return _respond(status, content_type, body)


def allowed_response(
    extra_headers: Sequence[tuple[str, str]] = (), set_cookies: Sequence[str] = ()
) -> Respond:
    """Forward-auth's "allowed": 202 with an empty body.

    Empty on purpose: nginx reads only the head of an ``auth_request`` answer, and closes
    the connection to the sign-in service when a body follows, so a body would cost a new
    TCP connection for every page (oauth2-proxy's ``/oauth2/auth`` answers the same way).
    The Content-Type is dropped with the body.
    """
    response = _respond(202, "", b"", extra=extra_headers, set_cookies=set_cookies)
    return Respond(202, tuple(h for h in response.headers if h[0] != "Content-Type"), b"")


def static_response(body: bytes, content_type: str) -> Respond:
    """A packaged asset (the stylesheet): the same headers, but cacheable for an hour."""
    cacheable = (("Cache-Control", "public, max-age=3600"), *SECURITY_HEADERS[2:])
    return _respond(200, content_type, body, security=cacheable)


def internal_error() -> Respond:
    """Last resort for a bug in this package: a plain page, never a traceback."""
    body = (
        b"<!DOCTYPE html><html lang=en><title>Sign in is temporarily unavailable</title>"
        b"<h1>Sign in is temporarily unavailable</h1><p>Please try again later.</p></html>"
    )
    return _respond(500, "text/html; charset=utf-8", body)
