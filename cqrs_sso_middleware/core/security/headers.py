"""Headers that carry an identity, and the request id: one rule each, for every driver.

**Identity headers.** Between a proxy and an app, headers such as ``X-Forwarded-User``
say who is signed in. A client must never be able to send them, so every driver removes
each of them from every request before anything else — in every spelling: WSGI servers
and CGI read ``X_Forwarded_User`` as ``X-Forwarded-User`` (both become
``HTTP_X_FORWARDED_USER``), so names are compared with ``_`` read as ``-`` and case
folded. The deployer's own names (``user_header``, ``email_header``, ``account_header``,
and every ``claim_headers`` name) are identity headers too.

Identity values are sent as headers by one rule (``header_values.header_value``): printable
ASCII as it is, anything else as an RFC 8187 ``ext-value``.

**Request id.** An incoming ``X-Request-ID`` (a load balancer's) is kept when it is plain —
``[A-Za-z0-9._:-]{1,64}`` — so one request can be followed through every log; anything
else could forge or split a log line, and is replaced.
"""

from __future__ import annotations

import re

from ..claim_headers import ClaimHeaders
from ..identity import User
from .header_values import header_value

# Always removed, whatever the configuration says.
STANDARD_IDENTITY_HEADERS = (
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-cqrs-account",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "remote-user",
    "x-remote-user",
)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def valid_request_id(value: str | bytes | None) -> bool:
    """Whether an incoming ``X-Request-ID`` may be kept and logged as it is."""
    if not value:
        return False
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return _REQUEST_ID.fullmatch(text) is not None


def _canonical(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class IdentityHeaders:
    """The identity headers of one deployment, in the forms each driver needs, and the ones
    the proxy and forward-auth send on for the signed-in user."""

    def __init__(
        self, user_header: str, email_header: str, account_header: str, claims: ClaimHeaders | None = None
    ) -> None:
        self._injected = tuple(
            n.lower().encode("latin-1") for n in (user_header, email_header, account_header)
        )
        self.claims = claims or ClaimHeaders({})
        configured = (user_header, email_header, account_header, *self.claims.names)
        names = dict.fromkeys([*STANDARD_IDENTITY_HEADERS, *(_canonical(n) for n in configured)])
        self.names: tuple[str, ...] = tuple(names)
        self.raw_names = frozenset(name.encode("latin-1") for name in self.names)
        # PEP 3333: a header's environ key; both spellings of a name land on the same key.
        self.environ_keys = tuple("HTTP_" + name.upper().replace("-", "_") for name in self.names)

    def is_identity(self, raw_name: bytes) -> bool:
        """For ASGI's lower-case byte names: is this one of ours, in any spelling?"""
        return raw_name.lower().replace(b"_", b"-") in self.raw_names

    def for_user(self, user: User | None) -> list[tuple[bytes, bytes]]:
        """The identity headers an upstream is given for ``user`` (none without one)."""
        if user is None:
            return []
        user_header, email_header, account_header = self._injected
        email = header_value(user.email).encode("ascii")
        return [
            (user_header, email),
            (email_header, email),
            (account_header, header_value(user.account.account_id).encode("ascii")),
            *(
                (name.lower().encode("latin-1"), value.encode("ascii"))
                for name, value in self.claims.values(user)
            ),
        ]
