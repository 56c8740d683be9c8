"""``cqrs-sso proxy``: NHSmail sign-in in front of a service that cannot be changed.

``create_proxy_app(settings)`` wires, from the outside in:

1. ``AccessLog`` — one JSON line per request, with a request id (an incoming
   ``X-Request-ID`` when well-formed, else a new one, also sent upstream and back);
2. ``/metrics`` (Prometheus text) for the addresses in ``metrics_allow`` only;
3. ``ASGISSOMiddleware`` — the sign-in itself: every request needs a session, except
   ``/oauth2/*`` (including the forward-auth endpoint), the probes and ``public_paths``;
4. ``ReverseProxy`` (``forward.py``) — to ``upstream``; without one it answers 404
   (a forward-auth-only service).

Every part is built here, once, from one ``Runtime``: nothing reaches into another.
The proxy trusts ``X-Forwarded-*`` only from ``trusted_proxies`` (default: nobody).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.responses import json_response, text_response
from ..drivers.asgi import ASGISSOMiddleware, send_response
from ..provider_calls import ProviderHttp
from ..runtime import Observers, Runtime
from ..settings import Settings
from .access_log import AccessLog
from .forward import ReverseProxy
from .headers import TrustedProxies
from .metrics import ProxyMetrics
from .provider_client import PooledProviderClient


class MetricsEndpoint:
    """Serves ``settings.metrics_path`` to the ``metrics_allow`` networks; 404 to others."""

    def __init__(self, app: ASGIApp, metrics: ProxyMetrics, settings: Settings) -> None:
        self.app, self.metrics, self.path = app, metrics, settings.proxy.metrics_path
        self.allowed = TrustedProxies.parse(settings.proxy.metrics_allow)

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
    # Provider calls go over the proxy's own HTTP/1.1 client; httpx takes those it cannot
    # make (a provider behind an outbound proxy).
    fallback = ProviderHttp(settings.provider.http_timeout_seconds)
    provider = PooledProviderClient(settings.provider.http_timeout_seconds, fallback=fallback.acall)
    runtime = Runtime.from_settings(
        settings,
        observers=Observers(audit=(metrics.audit_event,), lookups=(metrics.lookup,)),
        provider_call=provider,
    )
    forward = ReverseProxy(runtime, metrics, closing=(provider.close, fallback.close))
    return AccessLog(MetricsEndpoint(ASGISSOMiddleware(forward, runtime=runtime), metrics, settings))


def lookup_kind(spec: str) -> str:
    """What kind of account lookup runs, for the start-up line: never a URL with a password."""
    kind = spec.partition(":")[0] if spec != "code" else "code"
    return kind if kind in ("csv", "json", "sql", "http", "https") else "callable"


def describe(settings: Settings) -> Mapping[str, Any]:
    """What `cqrs-sso proxy` / `check-config` will run, for the start-up log."""
    proxy = settings.proxy
    return {
        "listen": proxy.listen,
        "upstream": proxy.upstream or "(none: forward-auth only)",
        "issuer": settings.provider.issuer,
        "redirect_uri": settings.site.redirect_uri,
        "session_store": settings.session.display_store,
        "account_lookup": lookup_kind(settings.lookup.spec),
        "open": settings.site.base_url + "/",
        "trusted_proxies": list(proxy.trusted_proxies) or "none",
        "metrics": proxy.metrics_path or "off",
    }
