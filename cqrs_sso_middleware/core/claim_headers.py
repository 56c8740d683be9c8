"""``claim_headers``: claims an upstream is given as headers, by the proxy and forward-auth.

A deployer maps header names to what they carry: an ID token claim, ``roles``, or a CQRS
account field. Names that frame, route or authenticate a request are refused at load
(``RESERVED_HEADER_NAMES``); values with control characters are never sent, and values
outside printable ASCII are sent as RFC 8187 ext-values (``security.header_values``).
Client copies of every configured name are removed like any identity header
(``security.headers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .identity import User, has_control_characters
from .security.header_values import header_value

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
# Names a claim may never be sent under: message framing and hop-by-hop headers (RFC 9110
# §7.6.1, RFC 9112 §6), cookies, the host and the forwarding and rewriting headers the
# proxy sets or removes itself, credentials, and the request id and trace context. A
# claim in Content-Length or Transfer-Encoding would let a token's contents frame the
# upstream request.
RESERVED_HEADER_NAMES = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "te",
        "trailer",
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "authorization",
        "cookie",
        "set-cookie",
        "host",
        "expect",
        "content-type",
        "content-encoding",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-path",
        "x-forwarded-uri",
        "x-original-uri",
        "x-original-url",
        "x-rewrite-url",
        "x-real-ip",
        "x-request-id",
        "traceparent",
        "tracestate",
    }
)
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class ClaimHeaders:
    """``claim_headers``: header name → what it carries. ``roles`` is the person's roles
    (all three sources); ``account.id``, ``account.email``, ``account.roles`` and
    ``account.<attribute>`` are the CQRS account's; any other name is an ID token claim.
    A list is joined with commas; a value with a control character is never sent, and one
    outside printable ASCII is sent as an RFC 8187 ext-value (``security.header_values``)."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        self.names = tuple(self.mapping)

    @staticmethod
    def problems(mapping: Mapping[str, object]) -> list[str]:
        found = []
        for header, claim in mapping.items():
            if not _HEADER_NAME.fullmatch(header):
                found.append(f"claim_headers: {header!r} is not a header name (letters, digits and -)")
            elif header.lower() in RESERVED_HEADER_NAMES or header.lower().startswith(("sec-", "proxy-")):
                found.append(
                    f"claim_headers: {header} cannot carry a claim (it frames, routes or authenticates)"
                )
            if not isinstance(claim, str) or not _CLAIM_NAME.fullmatch(claim):
                found.append(f"claim_headers: {header} names {claim!r}, not a claim or account.* field")
        return found

    def values(self, user: User, *, every: bool = False) -> list[tuple[str, str]]:
        """The headers for ``user``. ``every``: also the ones without a value, empty (a
        forward-auth answer: Caddy 2.6's ``copy_headers`` sends its literal placeholder
        upstream for a header the answer lacks)."""
        pairs = []
        for header, source in self.mapping.items():
            text = _text(_value(user, source))
            if text and not has_control_characters(text):
                pairs.append((header, header_value(text)))
            elif every:
                pairs.append((header, ""))
        return pairs


def _value(user: User, source: str) -> Any:
    account = user.account
    if source == "roles":
        return sorted(user.roles)
    if source == "account.id":
        return account.account_id
    if source == "account.email":
        return account.email
    if source == "account.roles":
        return list(account.roles)
    if source.startswith("account."):
        return account.attributes.get(source[len("account.") :])
    return user.identity.claims.get(source)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value if isinstance(item, str | int | float))
    return ""
