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


def content_security_policy(form_targets: Sequence[str]) -> str:
    # form-action also governs the redirect that follows a form POST (Chromium enforces
    # it), so the provider's origin must be listed for the Sign In button to work.
    targets = " ".join(("'self'", *form_targets))
    return (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'"
    )


def html_response(status: int, html: str, csp: str, set_cookies: Sequence[str] = ()) -> Respond:
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", csp),
        *SECURITY_HEADERS,
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    ]
    return Respond(status, tuple(headers), html.encode("utf-8"))


def frameable_html_response(html: str, frame_ancestor: str, set_cookies: Sequence[str] = ()) -> Respond:
    """A page that only ``frame_ancestor`` (the provider's origin) may frame: the
    front-channel logout iframe (Front-Channel Logout 1.0 §4). No ``X-Frame-Options``:
    ``ALLOW-FROM`` is obsolete, and CSP ``frame-ancestors`` supersedes it."""
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        (
            "Content-Security-Policy",
            f"default-src 'none'; style-src 'self'; frame-ancestors {frame_ancestor}; base-uri 'none'",
        ),
        *(pair for pair in SECURITY_HEADERS if pair[0] != "X-Frame-Options"),
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    ]
    return Respond(200, tuple(headers), html.encode("utf-8"))


def redirect(location: str, set_cookies: Sequence[str] = ()) -> Respond:
    """``303 See Other``: the browser follows with a GET, whatever the request method was."""
    headers = [
        ("Location", location),
        ("Content-Type", "text/plain; charset=utf-8"),
        *SECURITY_HEADERS,
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    ]
    return Respond(303, tuple(headers), b"See Other\n")


def json_response(
    status: int,
    payload: Mapping[str, Any],
    extra_headers: Sequence[tuple[str, str]] = (),
    set_cookies: Sequence[str] = (),
) -> Respond:
    headers = [
        ("Content-Type", "application/json"),
        *SECURITY_HEADERS,
        *extra_headers,
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    ]
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return Respond(status, tuple(headers), body)


def allowed_response(
    extra_headers: Sequence[tuple[str, str]] = (), set_cookies: Sequence[str] = ()
) -> Respond:
    """Forward-auth's "allowed": 202 with an empty body.

    Empty on purpose: nginx reads only the head of an ``auth_request`` answer, and closes
    the connection to the sign-in service when a body follows, so a body would cost a new
    TCP connection for every page (oauth2-proxy's ``/oauth2/auth`` answers the same way).
    """
    headers = (
        *SECURITY_HEADERS,
        *extra_headers,
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    )
    return Respond(202, headers, b"")


def static_response(body: bytes, content_type: str) -> Respond:
    headers = (
        ("Content-Type", content_type),
        ("Cache-Control", "public, max-age=3600"),
        ("X-Content-Type-Options", "nosniff"),
    )
    return Respond(200, headers, body)


def internal_error() -> Respond:
    """Last resort for a bug in this package: a plain page, never a traceback."""
    body = (
        b"<!DOCTYPE html><html lang=en><title>Sign in is temporarily unavailable</title>"
        b"<h1>Sign in is temporarily unavailable</h1><p>Please try again later.</p></html>"
    )
    return Respond(500, (("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS), body)
