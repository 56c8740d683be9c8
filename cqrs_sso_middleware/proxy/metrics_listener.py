"""``/metrics`` on a listener of its own (``metrics_listen``), for a proxy behind a front proxy.

Behind nginx, Caddy or a load balancer every request reaches the proxy from the front
proxy's address, so ``metrics_allow`` — which judges the TCP peer — cannot tell a scraper
from any client on the internet that asks the front proxy for ``/metrics``. With
``metrics_listen`` the metrics are served only on their own socket, which the front proxy
does not route to (bind it to an internal address), as oauth2-proxy's ``--metrics-address``
does: there ``metrics_path`` is answered (still for ``metrics_allow`` only) and every other
path is 404; on the main listener ``metrics_path`` is 404 for everybody.

Which listener a connection came in on is ASGI's ``scope["server"]`` (the local address the
server accepted it on). This sits outside the access log: scrapes are not client traffic.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.responses import json_response
from ..drivers.asgi import send_response
from ..metrics import MetricsEndpoint


class MetricsListener:
    """Answers ``endpoint.path`` for connections to ``port``; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, endpoint: MetricsEndpoint, port: int) -> None:
        self.app = app
        self.endpoint = endpoint
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        on_metrics_listener = server is not None and server[1] == self.port
        if not on_metrics_listener:
            if scope["path"] == self.endpoint.path and scope["type"] == "http":
                await send_response(json_response(404, {"error": "not_found"}), send)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"] != self.endpoint.path:
            await send_response(json_response(404, {"error": "not_found"}), send)
            return
        client = scope.get("client")
        await send_response(self.endpoint.answer(client[0] if client else None), send)
