"""The URI the proxy in front was asked for, believed from exactly one header.

Forward-auth (nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``forwardAuth``)
decides on the request the proxy in front received, and learns its URI from a header that
proxy sets: the nginx example sets ``X-Original-URI``; Caddy and Traefik set
``X-Forwarded-Uri``. None of them removes the *other* header when a client sends it, so
reading "whichever is present" lets a client choose the path every rule is decided on:
behind Caddy, ``GET /admin/x`` with ``X-Original-URI: /public/x`` was judged as the public
path and reached the app without a session.

So one header is believed, ``forward_auth_uri_header`` (default ``X-Original-URI``, what
the nginx example sets; ``X-Forwarded-Uri`` behind Caddy and Traefik). A request that also
carries another of these headers with a different value — or carries only the other one —
is ambiguous: it is refused (400, audit ``ambiguous_original_uri``) rather than guessed at.
The proxy in front sets the configured header on every request it asks about, so an honest
request is never ambiguous; the examples also remove the other header.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import HeaderLookup
from .paths import PathRefused, normalise_target
from .redirects import safe_return_path

# Every header some proxy in front uses to name the original URI.
ORIGINAL_URI_HEADERS = ("x-original-uri", "x-forwarded-uri")


@dataclass(frozen=True, slots=True)
class AmbiguousOriginalUri:
    """Two headers that name the original URI disagree; ``header`` is the believed one."""

    header: str


class OriginalUri:
    """Reads the original URI from ``header`` (``forward_auth_uri_header``), and only it."""

    def __init__(self, header: str = "X-Original-URI") -> None:
        self.header = header.lower()
        self._others = tuple(name for name in ORIGINAL_URI_HEADERS if name != self.header)

    def raw(self, headers: HeaderLookup) -> str | AmbiguousOriginalUri | None:
        """The header's value as sent (``None`` when no proxy in front named one)."""
        value = headers.get(self.header)
        for other in self._others:
            seen = headers.get(other)
            if seen is not None and seen != value:
                return AmbiguousOriginalUri(self.header)
        return value or None

    def target(self, headers: HeaderLookup) -> str | PathRefused | AmbiguousOriginalUri | None:
        """The original ``path?query``, its path normalised like any request path."""
        value = self.raw(headers)
        return normalise_target(value) if isinstance(value, str) else value

    def return_path(self, headers: HeaderLookup, prefix: str) -> str | None:
        """The original URI as a sign-in's return path, when it is a safe one (an ambiguous
        pair names none: the person goes to the default page instead)."""
        value = self.raw(headers)
        return safe_return_path(value, reserved_prefix=prefix) if isinstance(value, str) else None
