"""Reading the ``Cookie`` header and writing ``Set-Cookie`` (RFC 6265), without a framework.

Cookie names get the ``__Host-`` prefix when the public origin is https
(draft-ietf-httpbis-rfc6265bis §4.1.3.2): the browser then refuses the cookie unless it is
``Secure``, has ``Path=/`` and no ``Domain``, so a sibling sub-domain cannot plant ("toss")
a session or login-attempt cookie on us.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MAX_COOKIE_HEADER_LENGTH = 16 * 1024


def parse_cookie_header(header: str | None) -> dict[str, list[str]]:
    """Every value of every cookie, in the order the browser sent them.

    Duplicated names are kept (a browser sends the most specific path first), so callers can
    decide; malformed pairs are skipped; an absurdly long header is ignored entirely.
    """
    cookies: dict[str, list[str]] = {}
    if not header or len(header) > MAX_COOKIE_HEADER_LENGTH:
        return cookies
    for pair in header.split(";"):
        name, sep, value = pair.partition("=")
        if not sep:
            continue
        name = name.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name:
            cookies.setdefault(name, []).append(value)
    return cookies


def cookie_values(header: str | None, name: str) -> list[str]:
    """The values of one cookie only: the per-request fast path for the session cookie.

    Scans with ``str.find`` instead of splitting the whole header, and accepts a match only
    at a pair boundary (start of header, or after ``;`` and optional spaces), so a cookie
    named ``xcqrs_sso`` or a value containing ``cqrs_sso=`` never counts.
    """
    if not header or len(header) > MAX_COOKIE_HEADER_LENGTH:
        return []
    prefix = name + "="
    values: list[str] = []
    position = header.find(prefix)
    while position >= 0:
        before = header[:position].rstrip(" \t")
        value_start = position + len(prefix)
        if not before or before.endswith(";"):
            value_end = header.find(";", value_start)
            value = header[value_start : value_end if value_end >= 0 else None].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
        position = header.find(prefix, value_start)
    return values


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """How this deployment's cookies are named and flagged."""

    secure: bool
    same_site: Literal["Lax", "Strict"] = "Lax"

    def name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    def set_cookie(self, name: str, value: str, max_age: int | None = None) -> str:
        """A ``Set-Cookie`` header value. ``max_age=None`` makes a browser-session cookie."""
        parts = [f"{name}={value}", "Path=/", "HttpOnly", f"SameSite={self.same_site}"]
        if self.secure:
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return "; ".join(parts)

    def delete_cookie(self, name: str) -> str:
        return self.set_cookie(name, "", max_age=0) + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


@dataclass(frozen=True, slots=True)
class CookieNames:
    """Every cookie of one deployment is named from one base (``cookie_name``): the session,
    the CSRF cookie, the sign-in page's notice, a sign-in's result, the provider sign-out
    mark and one cookie per open login attempt.

    ``is_ours`` is the one test of "is this cookie ours?" — the proxy strips ours from the
    upstream request by it, so a cookie added later can never be forwarded by oversight.
    """

    base: str
    secure: bool

    @property
    def _stem(self) -> str:
        return f"__Host-{self.base}" if self.secure else self.base

    @property
    def session(self) -> str:
        return self._stem

    @property
    def csrf(self) -> str:
        return f"{self._stem}_csrf"

    @property
    def notice(self) -> str:
        """Why the last session ended (``idle``, ``max``, ``ended``), for the sign-in page."""
        return f"{self._stem}_notice"

    @property
    def result(self) -> str:
        """How a sign-in that gave no session ended, for ``/sign_in_result`` (encrypted)."""
        return f"{self._stem}_result"

    @property
    def provider_signed_out(self) -> str:
        """Set when sign-out went on to NHSmail, so ``/signed_out`` only then says so."""
        return f"{self._stem}_provider_signed_out"

    @property
    def attempt_prefix(self) -> str:
        return f"{self._stem}-attempt-"

    def is_ours(self, name: str) -> bool:
        """Any name that starts with our base, with or without a ``__Host-``/``__Secure-``
        prefix (a client may send either spelling; neither is the upstream's business)."""
        return name.removeprefix("__Host-").removeprefix("__Secure-").startswith(self.base)
