"""``cqrs-sso proxy``: NHSmail sign-in in front of a service that cannot be changed.

``create_proxy_app(settings)`` builds, from the outside in:

1. ``AccessLog`` — one JSON line per request, with a request id (an incoming
   ``X-Request-ID`` when well-formed, else a new one, also sent upstream and back);
2. ``/metrics`` (Prometheus text) for the addresses in ``metrics_allow`` only;
3. ``ASGISSOMiddleware`` — the sign-in itself: every request needs a session, except
   ``/oauth2/*`` (including the forward-auth endpoint), the probes and ``public_paths``;
4. ``ReverseProxy`` — forwards to ``upstream``, streaming bodies both ways over pooled
   keep-alive connections; without ``upstream`` it answers 404 (forward-auth-only service).

The proxy trusts ``X-Forwarded-*`` only from ``trusted_proxies`` (default: nobody).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.cookies import CookieNames
from ..core.identity import IDENTITY_HEADERS, User
from ..core.responses import (
    content_security_policy,
    html_response,
    json_response,
    provider_origin,
    text_response,
)
from ..drivers.asgi import ASGISSOMiddleware, send_response
from ..pages import JinjaPages
from ..settings import Settings
from .access_log import AccessLog
from .headers import TrustedProxies, UpstreamHeaders, downstream_headers, identity_headers
from .metrics import ProxyMetrics
from .provider_client import PooledProviderClient
from .upstream import UpstreamBroken, UpstreamError, UpstreamPool, UpstreamRefused, UpstreamTimeout
from .websockets import relay_websocket

log = logging.getLogger("cqrs_sso.proxy")


class ReverseProxy:
    """Forwards each request to ``settings.upstream``; meant to sit behind the middleware."""

    def __init__(self, settings: Settings, metrics: ProxyMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pages = JinjaPages(settings.templates_dir)
        parts = urlsplit(settings.upstream)
        self.upstream_origin = f"{parts.scheme}://{parts.netloc}"
        self.upstream_prefix = parts.path.rstrip("/").encode("latin-1")
        self.upstream_host = parts.netloc.encode("latin-1")
        self.public_origin = settings.base_url
        self.trusted = TrustedProxies.parse(settings.trusted_proxies)
        cookie_names = CookieNames(settings.cookie_name, secure=settings.is_https)
        self.upstream_headers = UpstreamHeaders(
            self.upstream_host,
            identity_names={h.encode() for h in IDENTITY_HEADERS}
            | {
                n.lower().encode()
                for n in (settings.user_header, settings.email_header, settings.account_header)
            },
            is_own_cookie=cookie_names.is_ours,
        )
        self.csp = content_security_policy([provider_origin(settings.issuer)])
        self.pool: UpstreamPool | None = None
        self.closing: list[Callable[[], None]] = []  # more to close at shut-down
        if settings.upstream:
            self.pool = UpstreamPool(
                self.upstream_origin,
                limit=256,
                keepalive_seconds=30.0,
                connect_timeout=5.0,
                read_timeout=settings.upstream_timeout_seconds,
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
        s = self.settings
        return self.upstream_headers(
            scope["headers"],
            client=address,
            scheme=scope.get("scheme", "http"),
            trusted=self.trusted.trusts(address),
            identity=identity_headers(user, s.user_header, s.email_header, s.account_header),
        )

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
        s = self.settings
        html = self.pages.render(
            template,
            {
                "status": status,
                "title": title,
                "prefix": s.path_prefix,
                "css_url": f"{s.path_prefix}/static/cqrs.css",
                "sign_in_url": f"{s.path_prefix}/sign_in",
                "help_email": s.help_email,
                "help_phone": s.help_phone,
            },
        )
        await send_response(html_response(status, html, self.csp), send)


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


class MetricsEndpoint:
    """Serves ``settings.metrics_path`` to the ``metrics_allow`` networks; 404 to others."""

    def __init__(self, app: ASGIApp, metrics: ProxyMetrics, settings: Settings) -> None:
        self.app, self.metrics, self.path = app, metrics, settings.metrics_path
        self.allowed = TrustedProxies.parse(settings.metrics_allow)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.path or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if not self.allowed.trusts(client[0] if client else None):
            await send_response(json_response(404, {"error": "not_found"}), send)
            return
        body, content_type = self.metrics.exposition()
        await send_response(text_response(200, body, content_type.decode("latin-1")), send)


def create_proxy_app(settings: Settings) -> ASGIApp:
    """The whole proxy: access log → metrics → sign-in middleware → reverse proxy."""
    metrics = ProxyMetrics()
    holder: dict[str, ReverseProxy] = {}

    async def late(scope: Scope, receive: Receive, send: Send) -> None:
        await holder["proxy"](scope, receive, send)

    middleware = ASGISSOMiddleware(late, settings)
    provider = PooledProviderClient(settings.http_timeout_seconds, fallback=middleware._http)
    middleware.provider_call = provider
    holder["proxy"] = ReverseProxy(settings, metrics)
    holder["proxy"].closing.append(provider.close)
    metrics.watch(middleware)
    return AccessLog(MetricsEndpoint(middleware, metrics, settings))


def lookup_kind(spec: str) -> str:
    """What kind of account lookup runs, for the start-up line: never a URL with a password."""
    kind = spec.partition(":")[0] if spec else "code"
    return kind if kind in ("csv", "json", "sql", "http", "https") else "callable"


def describe(settings: Settings) -> Mapping[str, Any]:
    """What `cqrs-sso proxy` / `check-config` will run, for the start-up log."""
    return {
        "listen": settings.listen,
        "upstream": settings.upstream or "(none: forward-auth only)",
        "issuer": settings.issuer,
        "redirect_uri": settings.redirect_uri,
        "session_store": settings.display_store,
        "account_lookup": lookup_kind(settings.account_lookup_spec),
        "open": settings.base_url + "/",
        "trusted_proxies": list(settings.trusted_proxies) or "none",
        "metrics": settings.metrics_path or "off",
    }
