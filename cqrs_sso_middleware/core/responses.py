"""The bytes of every answer the package makes itself: pages, redirects, JSON, assets.

Every response carries ``Cache-Control: no-store`` (pages hold personal data and one-time
forms; RFC 9111 §5.2.2.5) and headers that stop it being framed or leaking the callback URL
in a ``Referer`` to another origin. Pages are rendered by an injected :class:`PageRenderer`
(Jinja2, in ``pages/``), so this module stays free of template loading and the routes
only describe pages (``protocol.Page``): forward-auth never renders one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol
from urllib.parse import urlsplit

from .protocol import Answer, Empty, JsonReply, Page, Redirect, Respond, Static

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
    typed: bool = True,
) -> Respond:
    """Every response this package makes is built here, so none lacks the headers above."""
    headers = [
        *((("Content-Type", content_type),) if typed else ()),
        ("Content-Security-Policy", csp),
        *security,
        *extra,
        *(("Set-Cookie", cookie) for cookie in set_cookies),
    ]
    return Respond(status, tuple(headers), body)


class ResponseWriter:
    """Turns the core's answers into status, headers and body: pages rendered, JSON encoded,
    and the security headers on every one of them."""

    def __init__(self, pages: PageRenderer, csp: str, page_defaults: Mapping[str, Any]) -> None:
        self.pages = pages
        self.csp = csp
        self.page_defaults = dict(page_defaults)

    def respond(self, answer: Answer) -> Respond:
        match answer:
            case Page():
                return self._page(answer)
            case JsonReply():
                body = json.dumps(answer.body, separators=(",", ":"), sort_keys=True).encode("utf-8")
                return _respond(
                    answer.status,
                    "application/json",
                    body,
                    extra=answer.headers,
                    set_cookies=answer.set_cookies,
                )
            case Redirect():
                return redirect(answer.location, answer.set_cookies)
            case Empty():
                return _respond(
                    answer.status, "", b"", extra=answer.headers, set_cookies=answer.set_cookies, typed=False
                )
            case Static():
                return static_response(self.pages.asset(answer.asset), answer.content_type)
            case _:
                unknown_answer(answer)

    def _page(self, page: Page) -> Respond:
        html = self.pages.render(page.template, {**self.page_defaults, "status": page.status, **page.context})
        if page.frame_ancestor is None:
            return _respond(
                page.status,
                "text/html; charset=utf-8",
                html.encode("utf-8"),
                csp=self.csp,
                extra=page.headers,
                set_cookies=page.set_cookies,
            )
        # Front-Channel Logout 1.0 §4: only the provider may frame this page. No
        # X-Frame-Options: ALLOW-FROM is obsolete, and CSP frame-ancestors supersedes it.
        return _respond(
            page.status,
            "text/html; charset=utf-8",
            html.encode("utf-8"),
            csp=f"default-src 'none'; style-src 'self'; frame-ancestors {page.frame_ancestor}; "
            "base-uri 'none'",
            set_cookies=page.set_cookies,
            security=tuple(pair for pair in SECURITY_HEADERS if pair[0] != "X-Frame-Options"),
        )

    def html(self, status: int, template: str, context: Mapping[str, Any]) -> Respond:
        """A page outside the core's routes (the proxy's 502 and 504)."""
        return self._page(Page(template, status, context))


def unknown_answer(answer: Any) -> NoReturn:
    raise TypeError(f"no response for {answer!r}")


def redirect(location: str, set_cookies: Sequence[str] = ()) -> Respond:
    """``303 See Other``: the browser follows with a GET, whatever the request method was."""
    return _respond(
        303,
        "text/plain; charset=utf-8",
        b"See Other\n",
        extra=(("Location", location),),
        set_cookies=set_cookies,
    )


def json_response(status: int, payload: Mapping[str, Any]) -> Respond:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _respond(status, "application/json", body)


def text_response(status: int, body: bytes, content_type: str) -> Respond:
    """A non-HTML body such as the Prometheus exposition."""
    return _respond(status, content_type, body)


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
