"""Header hygiene for the reverse proxy: pure functions over raw ASGI header lists.

What goes upstream: the client's headers without hop-by-hop headers (RFC 9110 §7.6.1),
without our own cookies, without any identity header the client sent (the middleware
already removed those) and without ``Content-Length`` (the upstream client frames the
body), plus ``X-Forwarded-For/-Proto/-Host``, ``X-Real-IP`` and the signed-in user's
identity headers. What comes back: the upstream's headers without hop-by-hop headers, with
a ``Location`` that points at the upstream's own origin rewritten to the public origin.

``X-Forwarded-*`` sent by the client are believed only when the client's address is in
``trusted_proxies`` (like werkzeug's ``ProxyFix``: it is a security issue to trust values
that came from the client rather than a proxy). Default: trust none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.identity import User

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1, plus Proxy-Connection and Keep-Alive that old clients still send.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"})
# Headers that some upstream, CDN or framework takes as "the client's address". From anyone
# but a trusted proxy they are the client's own claim, so they are dropped: an upstream
# that rate-limits or audits by them would otherwise be spoofed with one header.
CLIENT_ADDRESS_HEADERS = frozenset(
    {
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"cf-connecting-ip",
        b"x-cluster-client-ip",
        b"fastly-client-ip",
        b"x-originating-ip",
        b"client-ip",
    }
)


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, specs: Iterable[str]) -> TrustedProxies:
        return cls(tuple(ipaddress.ip_network(spec, strict=False) for spec in specs))

    def trusts(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def identity_headers(
    user: User | None, user_header: str, email_header: str, account_header: str
) -> RawHeaders:
    if user is None:
        return []
    return [
        (user_header.lower().encode(), user.email.encode("utf-8")),
        (email_header.lower().encode(), user.email.encode("utf-8")),
        (account_header.lower().encode(), user.account.account_id.encode("utf-8")),
    ]


def rewrite_location(value: bytes, upstream_origin: str, public_origin: str) -> bytes:
    """An upstream redirect to its own origin becomes a redirect to the public origin."""
    text = value.decode("latin-1")
    parts = urlsplit(text)
    if (
        parts.scheme
        and parts.netloc
        and f"{parts.scheme}://{parts.netloc}".lower() == upstream_origin.lower()
    ):
        return (public_origin + text[len(upstream_origin) :]).encode("latin-1")
    return value


def downstream_headers(
    headers: Sequence[tuple[bytes, bytes]], upstream_origin: str, public_origin: str
) -> RawHeaders:
    """The upstream's response headers for the client, names lower-cased (ASGI's form)."""
    named = _connection_tokens(headers)
    result = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in named or lowered == b"date":
            continue  # the serving uvicorn adds a fresh Date; two would be ambiguous
        if lowered == b"location":
            value = rewrite_location(value, upstream_origin, public_origin)
        result.append((lowered, value))
    return result


def upstream_headers(
    incoming: Sequence[tuple[bytes, bytes]],
    *,
    client: str | None,
    scheme: str,
    trusted: bool,
    upstream_host: bytes,
    own_cookie_names: frozenset[str],
    own_cookie_prefixes: tuple[str, ...],
    identity_names: frozenset[bytes],
    identity: RawHeaders,
) -> RawHeaders:
    """The request headers for the upstream, in one pass over the client's (this runs for
    every proxied request; the rules are those of the functions above)."""
    host = b""
    named: set[bytes] | None = None
    chain = proto = forwarded_host = real_ip = None
    kept: RawHeaders = [(b"host", upstream_host)]
    for name, value in incoming:
        lowered = name.lower()
        if lowered in _NOT_UPSTREAM:
            if lowered == b"host":
                host = host or value
            elif lowered == b"connection":
                named = (named or set()) | {t.strip().lower() for t in value.split(b",") if t.strip()}
            elif trusted:  # a trusted proxy's view of the client is re-emitted below
                if lowered == b"x-forwarded-for":
                    chain = chain or value
                elif lowered == b"x-forwarded-proto":
                    proto = proto or value
                elif lowered == b"x-forwarded-host":
                    forwarded_host = forwarded_host or value
                elif lowered == b"x-real-ip":
                    real_ip = real_ip or value
            continue
        if b"_" in lowered:
            lowered = lowered.replace(b"_", b"-")  # some servers read X_Forwarded_User as X-Forwarded-User
            if not trusted and lowered in _NOT_UPSTREAM and lowered not in HOP_BY_HOP:
                continue  # X_Forwarded_For & co. from a client: a spoof in another spelling
        if lowered in identity_names or (not trusted and lowered in CLIENT_ADDRESS_HEADERS):
            continue
        if lowered == b"cookie":
            value = _without_our_cookies(value, own_cookie_names, own_cookie_prefixes)
            if not value:
                continue
        kept.append((name, value))
    if named:
        kept = [(k, v) for k, v in kept if k.lower() not in named or k == b"host"]
    peer = (client or "unknown").encode("latin-1")
    kept += [
        (b"x-forwarded-for", chain + b", " + peer if chain else peer),
        (b"x-forwarded-proto", proto or scheme.encode("latin-1")),
        (b"x-forwarded-host", forwarded_host or host),
        (b"x-real-ip", real_ip or peer),
    ]
    kept += identity
    return kept


# What never goes upstream as the client sent it: hop-by-hop headers, Host (the upstream's
# own is sent), the forwarding headers and X-Real-IP (rebuilt by this proxy), and
# Content-Length (framing is written by the upstream client, proxy/upstream.py).
_NOT_UPSTREAM = HOP_BY_HOP | _FORWARDED | {b"host", b"x-real-ip", b"content-length"}


def _without_our_cookies(value: bytes, names: frozenset[str], prefixes: tuple[str, ...]) -> bytes:
    kept = []
    for pair in value.decode("latin-1").split(";"):
        cookie_name = pair.split("=", 1)[0].strip()
        if cookie_name and cookie_name not in names and not cookie_name.startswith(prefixes):
            kept.append(pair.strip())
    return "; ".join(kept).encode("latin-1")
