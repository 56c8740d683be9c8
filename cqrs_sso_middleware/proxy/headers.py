"""Header hygiene for the reverse proxy: pure functions over raw ASGI header lists.

What goes upstream is decided by :class:`UpstreamHeaders`. What comes back: the upstream's
headers without hop-by-hop headers, with a ``Location`` that points at the upstream's own
origin rewritten to the public origin.

``X-Forwarded-*`` sent by the client are believed only when the client's address is in
``trusted_proxies`` (like werkzeug's ``ProxyFix``: it is a security issue to trust values
that came from the client rather than a proxy). Default: trust none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

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


# Headers a router, framework or IIS module reads as "the URL really asked for" or "where I
# am mounted" (IIS URL Rewrite, Symfony before CVE-2018-14773, Laminas before ZF2018-01,
# Spring's ForwardedHeaderFilter). The access check judged the request path; a client copy
# of one of these would make the upstream serve another path. None is ever forwarded.
URL_REWRITING_HEADERS = frozenset(
    {
        b"x-original-url",
        b"x-rewrite-url",
        b"x-original-uri",
        b"x-forwarded-uri",
        b"x-forwarded-prefix",
        b"x-forwarded-path",
        b"x-forwarded-port",
        b"x-forwarded-server",
    }
)
# What a client's header becomes on the way upstream, by its lower-case name.
_DROP, _HOST, _CONNECTION, _COOKIE, _CLIENT_ADDRESS = range(5)
# The forwarding headers this proxy rebuilds; a trusted proxy's values are carried over.
_FORWARDED_FOR, _FORWARDED_PROTO, _FORWARDED_HOST, _REAL_IP = range(10, 14)


class _Seen:
    """What one pass over the client's headers found that decides what is added."""

    __slots__ = ("forwarded", "host", "named", "trusted")

    def __init__(self, trusted: bool) -> None:
        self.trusted = trusted
        self.host = b""
        self.named: set[bytes] = set()  # headers the Connection header names (hop-by-hop)
        self.forwarded: dict[int, bytes] = {}

    def forwarding(self, client: str | None, scheme: str) -> RawHeaders:
        peer = (client or "unknown").encode("latin-1")
        chain = self.forwarded.get(_FORWARDED_FOR)
        return [
            (b"x-forwarded-for", chain + b", " + peer if chain else peer),
            (b"x-forwarded-proto", self.forwarded.get(_FORWARDED_PROTO) or scheme.encode("latin-1")),
            (b"x-forwarded-host", self.forwarded.get(_FORWARDED_HOST) or self.host),
            (b"x-real-ip", self.forwarded.get(_REAL_IP) or peer),
        ]


class UpstreamHeaders:
    """The request headers for the upstream, built in one pass over the client's.

    Removed: hop-by-hop headers (RFC 9110 §7.6.1) and those the ``Connection`` header
    names; ``Content-Length`` (the upstream client frames the body); ``Forwarded`` and the
    URL-rewriting headers; every identity header and every client-address header (the
    latter kept from ``trusted_proxies`` only); and our own cookies (``is_own_cookie``).
    A header spelled with underscores (``X_Forwarded_User``) that names one of these is
    removed too: WSGI servers and CGI read it as the hyphenated header.
    Added: ``Host`` of the upstream, ``X-Forwarded-For/-Proto/-Host`` and ``X-Real-IP``
    (a trusted proxy's values carried over, else this proxy's own view), then the user's
    identity headers.
    """

    def __init__(
        self, upstream_host: bytes, identity_names: Iterable[bytes], is_own_cookie: Callable[[str], bool]
    ) -> None:
        self.upstream_host = upstream_host
        self.is_own_cookie = is_own_cookie
        rules: dict[bytes, int] = dict.fromkeys(
            HOP_BY_HOP | URL_REWRITING_HEADERS | {b"content-length", b"forwarded"}, _DROP
        )
        rules.update(dict.fromkeys(identity_names, _DROP))
        rules.update(dict.fromkeys(CLIENT_ADDRESS_HEADERS, _CLIENT_ADDRESS))
        rules.update(
            {
                b"host": _HOST,
                b"connection": _CONNECTION,
                b"cookie": _COOKIE,
                b"x-forwarded-for": _FORWARDED_FOR,
                b"x-forwarded-proto": _FORWARDED_PROTO,
                b"x-forwarded-host": _FORWARDED_HOST,
                b"x-real-ip": _REAL_IP,
            }
        )
        self._rules = rules

    def __call__(
        self,
        incoming: Sequence[tuple[bytes, bytes]],
        *,
        client: str | None,
        scheme: str,
        trusted: bool,
        identity: RawHeaders,
    ) -> RawHeaders:
        rules = self._rules
        state = _Seen(trusted)
        kept: RawHeaders = [(b"host", self.upstream_host)]
        for name, value in incoming:
            lowered = name.lower()
            if b"_" in lowered:
                if lowered.replace(b"_", b"-") not in rules:
                    kept.append((name, value))
                continue  # another spelling of a header managed here: a spoof
            rule = rules.get(lowered)
            if rule is None:
                kept.append((name, value))  # nearly every header: kept as it is
            else:
                self._managed(rule, name, value, kept, state)
        if state.named:
            kept = [(k, v) for k, v in kept if k == b"host" or k.lower() not in state.named]
        return kept + state.forwarding(client, scheme) + identity

    def _managed(self, rule: int, name: bytes, value: bytes, kept: RawHeaders, state: _Seen) -> None:
        """A header this proxy manages: dropped, cleaned, or remembered for what it adds."""
        if rule == _COOKIE:
            value = self._without_our_cookies(value)
            if value:
                kept.append((name, value))
        elif rule == _HOST:
            state.host = state.host or value
        elif rule == _CONNECTION:
            state.named.update(t.strip().lower() for t in value.split(b",") if t.strip())
        elif state.trusted and rule >= _FORWARDED_FOR:
            state.forwarded.setdefault(rule, value)  # a trusted proxy's view, carried over
        elif state.trusted and rule == _CLIENT_ADDRESS:
            kept.append((name, value))

    def _without_our_cookies(self, value: bytes) -> bytes:
        kept = []
        for pair in value.decode("latin-1").split(";"):
            cookie_name = pair.split("=", 1)[0].strip()
            if cookie_name and not self.is_own_cookie(cookie_name):
                kept.append(pair.strip())
        return "; ".join(kept).encode("latin-1")
