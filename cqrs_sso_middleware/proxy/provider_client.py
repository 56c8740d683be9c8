"""The proxy's calls to the identity provider (metadata, signing keys, token) over the
proxy's own HTTP/1.1 client instead of httpx.

Why: the token request sits inside every sign-in's callback. Measured on the project
machine, an httpx ``AsyncClient`` request costs about 0.7 ms against 0.18 ms for
``UpstreamPool`` (``benchmarks/proxy.py`` times the sign-in round trip against Apache +
mod_auth_openidc). The embedded drivers keep httpx; only ``cqrs-sso proxy`` uses this.

What stays the same as with httpx: TLS is verified with the context httpx itself would use
(``httpx.create_ssl_context()``: certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), the same
time-out (``http_timeout_seconds``) bounds connecting and each wait for the provider,
redirects are not followed, replies are capped at ``MAX_PROVIDER_REPLY_BYTES``. A provider
that must be reached through an outbound proxy (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``,
honouring ``NO_PROXY``) goes through httpx, which speaks ``CONNECT``; this client does not.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlencode, urlsplit

import httpx

from ..core.oidc.client import MAX_PROVIDER_REPLY_BYTES
from ..core.protocol import HttpCall, HttpFailure, HttpReply
from ..provider_http import USER_AGENT
from .upstream import UpstreamError, UpstreamPool

ProviderCall = Callable[[HttpCall], Awaitable[HttpReply | HttpFailure]]


def reached_through_a_proxy(url: str) -> bool:
    """Whether httpx (trust_env) would send a request for ``url`` through an outbound proxy."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.netloc)


class PooledProviderClient:
    """Performs ``HttpCall`` effects; ``fallback`` (httpx) takes calls it cannot make."""

    def __init__(
        self, timeout_seconds: float, fallback: ProviderCall, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.fallback = fallback
        self._ssl = ssl_context
        self._pools: dict[str, UpstreamPool | None] = {}

    def _pool_for(self, scheme: str, netloc: str) -> UpstreamPool | None:
        origin = f"{scheme}://{netloc}"
        if origin not in self._pools:
            if scheme not in ("http", "https") or not netloc.isascii() or reached_through_a_proxy(origin):
                self._pools[origin] = None
            else:
                if scheme == "https" and self._ssl is None:
                    self._ssl = httpx.create_ssl_context()
                self._pools[origin] = UpstreamPool(
                    origin,
                    limit=32,
                    keepalive_seconds=30.0,
                    connect_timeout=self.timeout_seconds,
                    read_timeout=self.timeout_seconds,
                    ssl_context=self._ssl,
                )
        return self._pools[origin]

    async def __call__(self, call: HttpCall) -> HttpReply | HttpFailure:
        parts = urlsplit(call.url)
        pool = self._pool_for(parts.scheme, parts.netloc)
        if pool is None:
            return await self.fallback(call)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [
            (b"host", parts.netloc.encode("ascii")),
            (b"user-agent", USER_AGENT.encode()),
            (b"accept", b"application/json"),
        ]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in call.headers]
        body: bytes | None = None
        if call.form is not None:
            body = urlencode(call.form).encode("ascii")
            headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        try:
            response = await pool.request(
                call.method.encode(),
                target.encode("ascii"),
                headers,
                _once(body) if body is not None else None,
                len(body) if body is not None else None,
            )
        except UpstreamError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")
        try:
            received = b""
            async for chunk in response.body():
                received += chunk
                if len(received) > MAX_PROVIDER_REPLY_BYTES:
                    return HttpFailure(f"{call.purpose}: reply larger than {MAX_PROVIDER_REPLY_BYTES} bytes")
            return HttpReply(response.status, received)
        except UpstreamError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")
        finally:
            response.release()

    def close(self) -> None:
        for pool in self._pools.values():
            if pool is not None:
                pool.close()
        self._pools.clear()


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
