"""The reverse proxy: requests that passed the sign-in go to the upstream, and back.

It sits behind the ASGI middleware, which has already decided: the scope carries the
normalised path and, for a signed-in person, ``cqrs_sso.user``. Here headers are cleaned
(``headers.UpstreamHeaders``), bodies stream both ways over pooled keep-alive
connections (``upstream.UpstreamPool``), websockets are relayed, and an upstream that fails
is a 502 or 504 page with the help desk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send

from ..core.identity import User
from ..drivers.asgi import send_response
from ..metrics import SSOMetrics
from ..runtime import Runtime
from .headers import TrustedProxies, UpstreamHeaders, downstream_headers
from .upstream import UpstreamBroken, UpstreamError, UpstreamPool, UpstreamRefused, UpstreamTimeout
from .websockets import relay_websocket

log = logging.getLogger("cqrs_sso.proxy")


class ReverseProxy:
    """Forwards each request to ``settings.upstream``; meant to sit behind the middleware."""

    def __init__(
        self,
        runtime: Runtime,
        metrics: SSOMetrics | None = None,
        closing: Sequence[Callable[[], None]] = (),
    ) -> None:
        proxy = runtime.settings.proxy
        self.metrics = metrics
        self.tracing = runtime.tracing
        self.responses = runtime.responses
        self.identity = runtime.identity_headers
        parts = urlsplit(proxy.upstream)
        self.upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self.upstream_prefix = parts.path.rstrip("/").encode("latin-1")
        self.upstream_host = parts.netloc.encode("latin-1")
        self.public_origin = runtime.settings.site.base_url
        self.trusted = TrustedProxies.parse(proxy.trusted_proxies)
        self.upstream_headers = UpstreamHeaders(
            self.upstream_host, runtime.identity_headers.raw_names, is_own_cookie=runtime.cookie_names.is_ours
        )
        self.pool: UpstreamPool | None = None
        self.closing = tuple(closing)  # more to close at shut-down
        if proxy.upstream:
            self.pool = UpstreamPool(
                self.upstream_origin,
                limit=256,
                keepalive_seconds=30.0,
                connect_timeout=5.0,
                read_timeout=proxy.upstream_timeout_seconds,
            )

    async def aclose(self) -> None:
        if self.pool is not None:
            self.pool.close()
        for close in self.closing:
            close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            scheme = "wss" if self.upstream_origin.startswith("https") else "ws"
            url = self.upstream_url(scope, scheme)
            await relay_websocket(url, self.upstream_request_headers(scope), scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def upstream_request_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        client = scope.get("client")
        address = client[0] if client else None
        user: User | None = scope.get("cqrs_sso.user")
        headers = self.upstream_headers(
            scope["headers"],
            client=address,
            scheme=scope.get("scheme", "http"),
            trusted=self.trusted.trusts(address),
            identity=self.identity.for_user(user),
        )
        if self.tracing is None:
            return headers
        # The upstream continues our span, not the client's (W3C Trace Context §3).
        kept = [(name, value) for name, value in headers if name not in (b"traceparent", b"tracestate")]
        traced = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.tracing.outgoing_headers()]
        return [*kept, *traced]

    def upstream_target(self, scope: Scope) -> bytes:
        """The request target upstream: the path exactly as the middleware passed it on."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = self.upstream_prefix + raw_path
        query: bytes = scope.get("query_string", b"")
        return target + b"?" + query if query else target

    def upstream_url(self, scope: Scope, scheme: str = "") -> str:
        url = self.upstream_origin + self.upstream_target(scope).decode("latin-1")
        if scheme:
            url = scheme + url[url.index(":") :]
        return url

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.pool is None:
            await self._page(send, 404, "error.html", title="Page not found")
            return
        started = time.perf_counter()
        if self.metrics is not None:
            self.metrics.session_check("cqrs_sso.user" in scope)
        has_body, length = request_framing(scope["headers"])
        try:
            response = await self.pool.request(
                scope["method"].encode("latin-1"),
                self.upstream_target(scope),
                self.upstream_request_headers(scope),  # without Content-Length: the pool frames
                _request_body(receive) if has_body else None,
                length if has_body else None,
            )
        except UpstreamTimeout:
            log.warning("upstream timed out: %s %s", scope["method"], scope["path"])
            self._observe(started, 504)
            await self._page(send, 504, "upstream.html", title="The service took too long to answer")
            return
        except UpstreamRefused as error:
            log.error("request not forwarded (%s): %s %s", error, scope["method"], scope["path"])
            self._observe(started, 502)
            await self._page(send, 502, "upstream.html", title="The service is not available")
            return
        except UpstreamError as error:
            log.warning("upstream unavailable (%s): %s %s", error, scope["method"], scope["path"])
            self._observe(started, 502)
            await self._page(send, 502, "upstream.html", title="The service is not available")
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": downstream_headers(response.headers, self.upstream_origin, self.public_origin),
                }
            )
            if response.complete:  # the common case: the whole body came with the head
                await send({"type": "http.response.body", "body": response.take_all()})
            else:
                async for chunk in response.body():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamBroken as error:
            # Headers are gone already: the only honest signal left is cutting the connection,
            # so the client sees a truncated response rather than a falsely complete one.
            log.warning("upstream failed mid-response (%s): %s", error, scope["path"])
            self._observe(started, 502)
            raise
        finally:
            response.release()
        self._observe(started, response.status)

    def _observe(self, started: float, status: int) -> None:
        if self.metrics is not None:
            self.metrics.upstream(time.perf_counter() - started, status)

    async def _page(self, send: Send, status: int, template: str, title: str) -> None:
        """The proxy's own pages (404, 502, 504): the same renderer and headers as the core's."""
        await send_response(self.responses.html(status, template, {"title": title}), send)


def request_framing(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """(has a body, its length if declared), from the client's headers (RFC 9112 §6.3).

    The serving HTTP parser has already refused a request with both framings or a bad
    length, so this only reads what it accepted.
    """
    length: int | None = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return True, None
        if name == b"content-length":
            length = int(value)
    return bool(length), length


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    """The client's body, chunk by chunk as it arrives: never held whole in memory."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client went away")
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
