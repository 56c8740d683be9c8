"""htmx requests that meet an ended session: navigate the page, do not swap a fragment.

htmx (``HX-Request: true``) fetches part of a page and swaps it into the page. When the
session has ended, the 401 it gets is not swapped, so nothing happens on screen; a
redirect would be followed by the browser and the sign-in page swapped into a ``<div>``.
``HX-Redirect`` makes htmx load a whole new page instead (it reads the header before the
status, in htmx 1 and 2). The sign-in page is sent back to the page the person is on
(``HX-Current-URL``), not to the fragment's URL, which is no page of its own; a boosted
link (``HX-Boosted``) asked for a whole page, so it goes back to that one.

Every ``HX-*`` header is the client's own words: the current URL counts only when it is
on this service's origin and a safe return path (``redirects.safe_return_path``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol import IncomingRequest
from .redirects import ReturnPaths


@dataclass(frozen=True, slots=True)
class HtmxNavigation:
    """Where an htmx request whose session ended sends the page (``base_url``: our origin)."""

    base_url: str
    paths: ReturnPaths

    def return_path(self, request: IncomingRequest, requested: str) -> str | None:
        """The sign-in page's return path for an htmx request, ``None`` for any other.
        ``requested``: the page the request itself names (its path, or behind a proxy in
        front the original URI), the return path of a boosted GET."""
        headers = request.headers
        if headers.get("hx-request") != "true":
            return None
        if headers.get("hx-boosted") == "true" and request.method in ("GET", "HEAD"):
            return requested
        return self.current_page(headers.get("hx-current-url") or "")

    def current_page(self, url: str) -> str:
        origin = self.base_url.lower()
        if url[: len(origin)].lower() != origin or url[len(origin) : len(origin) + 1] not in ("/", "?", ""):
            return self.paths.default  # another origin, or a longer host name that starts alike
        return self.paths.or_default(url[len(origin) :] or "/")
