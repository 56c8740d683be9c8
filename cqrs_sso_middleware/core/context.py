"""What a route handler is given: one request, read once, and what the answer accumulates.

The router builds a :class:`RequestContext` per request: the time, the request with its
normalised path, the session (loaded once by the router for routes that need one), the
cookies parsed once, one list of ``Set-Cookie`` headers and one list of audit events. A
handler reads it, records what it decides (``keep`` a session, ``audit`` an event, add a
cookie) and returns an outcome; the router puts the cookies and events on that outcome and
writes the kept session, once.
"""

from __future__ import annotations

from collections.abc import Mapping

from .identity import User
from .protocol import AuditEvent, IncomingRequest
from .security.cookies import parse_cookie_header
from .sessions.session import Session


def wants_json(request: IncomingRequest) -> bool:
    """API and XHR callers (and websockets) get JSON: only browser navigations get pages
    and redirects."""
    if request.method not in ("GET", "HEAD") or request.is_websocket:
        return True
    headers = request.headers
    if headers.get("x-requested-with"):
        return True
    fetch_mode = headers.get("sec-fetch-mode")
    if fetch_mode is not None and fetch_mode != "navigate":
        return True
    accept = headers.get("accept") or ""
    return "application/json" in accept and "text/html" not in accept


class RequestContext:
    __slots__ = ("_api", "_cookies", "ended", "events", "kept", "now", "request", "session", "set_cookies")

    def __init__(self, request: IncomingRequest, now: float, api: bool | None = None) -> None:
        self.request = request
        self.now = now
        self._api = api
        self.session: Session | None = None
        # Why a session this request carried has ended ("idle", "max", "ended"), if it has.
        self.ended: str | None = None
        self.set_cookies: list[str] = []
        self.events: list[AuditEvent] = []
        self.kept: tuple[Session, bool] | None = None
        self._cookies: dict[str, list[str]] | None = None

    @property
    def api(self) -> bool:
        """Whether the answer must be JSON (``wants_json``, unless the route always is)."""
        if self._api is None:
            self._api = wants_json(self.request)
        return self._api

    @api.setter
    def api(self, value: bool) -> None:
        self._api = value

    @property
    def cookies(self) -> Mapping[str, list[str]]:
        """Every cookie of the request, parsed on first use and only once."""
        if self._cookies is None:
            self._cookies = parse_cookie_header(self.request.headers.get("cookie"))
        return self._cookies

    @property
    def user(self) -> User | None:
        return self.session.user if self.session is not None else None

    def audit(self, name: str, **fields: object) -> None:
        self.events.append(AuditEvent(name, fields))

    def keep(self, session: Session, new: bool = False) -> None:
        """Write ``session`` where it lives when the answer is ready (the router does, once):
        a new cookie for the cookie store, a store write (and, when ``new``, the id cookie)
        for a server-side store."""
        self.kept = (session, new)
        self.session = session
