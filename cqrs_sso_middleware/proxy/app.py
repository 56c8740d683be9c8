"""``cqrs-sso proxy``: NHSmail sign-in in front of a service that cannot be changed.

``create_proxy_app(settings)`` wires, from the outside in:

1. ``AccessLog`` — one JSON line per request, with a request id (an incoming
   ``X-Request-ID`` when well-formed, else a new one, also sent upstream and back);
2. ``ReadinessWhileStopping`` — ``/readyz`` is 503 from the moment a stop is asked for;
3. ``ASGISSOMiddleware`` — the sign-in itself: every request needs a session, except
   ``/oauth2/*`` (including the forward-auth endpoint), the probes and ``public_paths``;
   it answers ``/metrics`` (``metrics.py``, every worker's sum) for ``metrics_allow`` only,
   unless ``metrics_listen`` gives the metrics a listener of their own
   (``metrics_listener.py``, outside everything else);
4. ``ReverseProxy`` (``forward.py``) — to ``upstream``; without one it answers 404
   (a forward-auth-only service).

Every part is built here, once, from one ``Runtime``: nothing reaches into another.
The proxy trusts ``X-Forwarded-*`` only from ``trusted_proxies`` (default: nobody).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.responses import json_response
from ..drivers.asgi import ASGISSOMiddleware, send_response
from ..metrics import MetricsEndpoint, SSOMetrics
from ..provider_http import ProviderHttp
from ..runtime import Runtime
from ..settings import Settings
from ..tracing import Tracing, traced
from .access_log import AccessLog
from .forward import ReverseProxy
from .metrics_listener import MetricsListener
from .provider_client import PooledProviderClient


class ReadinessWhileStopping:
    """From the moment the process is asked to stop (``stopping``, set by the server's
    signal handler), ``ready_path`` answers 503 so that a load balancer sends nobody new
    here, while requests in flight finish (docs/deploy.md)."""

    def __init__(self, app: ASGIApp, ready_path: str, stopping: threading.Event) -> None:
        self.app, self.path, self.stopping = app, ready_path, stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            hear_stop_signals(self.stopping)
        elif scope["type"] == "http" and scope["path"] == self.path and self.stopping.is_set():
            await send_response(json_response(503, {"status": "stopping"}), send)
            return
        await self.app(scope, receive, send)


def hear_stop_signals(stopping: threading.Event) -> None:
    """Set ``stopping`` on SIGTERM or SIGINT, then let the server's own handler (uvicorn's,
    installed by now: the lifespan starts inside it) begin the graceful stop."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (a test's server in a thread)
    for number in (signal.SIGTERM, signal.SIGINT):
        server_handler = signal.getsignal(number)
        if not callable(server_handler):
            continue

        def handler(sig: int, frame: FrameType | None, then: Callable[..., Any] = server_handler) -> None:
            stopping.set()
            then(sig, frame)

        signal.signal(number, handler)


def create_proxy_app(
    settings: Settings, stopping: threading.Event | None = None, tracing: Tracing | None = None
) -> ASGIApp:
    """The whole proxy: (a server span) → access log → readiness → sign-in middleware (and
    ``/metrics``) → reverse proxy. ``tracing``: spans to this instead of the ``OTEL_*``
    variables' choice."""
    metrics = SSOMetrics(proxy=True)
    # Provider calls go over the proxy's own HTTP/1.1 client; the runtime's httpx client
    # takes those it cannot make (a provider behind an outbound proxy).
    pooled: list[PooledProviderClient] = []

    def provider_client(http: ProviderHttp) -> PooledProviderClient:
        pooled.append(PooledProviderClient(http.timeout_seconds, fallback=http.acall))
        return pooled[0]

    runtime = Runtime.from_settings(
        settings,
        observers=metrics.observers(),
        provider_call=provider_client,
        tracing=tracing,
    )
    forward = ReverseProxy(runtime, metrics, closing=(pooled[0].close, metrics.flush))
    app: ASGIApp = ASGISSOMiddleware(forward, runtime=runtime, metrics=metrics)
    if settings.site.ready_path:
        app = ReadinessWhileStopping(app, settings.site.ready_path, stopping or threading.Event())
    # Outermost, so that the access log's line carries the trace id.
    app = traced(AccessLog(app), runtime.tracing, runtime.cookie_names.session)
    proxy = settings.proxy
    if proxy.metrics_listen and proxy.metrics_path:
        endpoint = MetricsEndpoint(metrics, proxy.metrics_path, proxy.metrics_allow)
        app = MetricsListener(app, endpoint, int(proxy.metrics_listen.rpartition(":")[2]))
    return app


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
        "metrics": (
            f"{proxy.metrics_path} on {proxy.metrics_listen}" if proxy.metrics_listen else proxy.metrics_path
        )
        or "off",
    }
