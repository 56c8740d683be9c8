"""uvicorn's WebSocket protocol, with a stop that gives open WebSockets their grace.

When uvicorn stops, it closes every open WebSocket at once with 1012 ("service restart"),
while HTTP requests in flight get ``timeout_graceful_shutdown`` to finish. The proxy gives
WebSockets the same: on a stop, an open WebSocket keeps relaying until the client or the
upstream closes it, or until the grace (``shutdown_grace_seconds``) is nearly over; then it
is closed with 1012 (RFC 6455 §7.4; 1012 from the IANA WebSocket close-code registry), so
the browser reconnects — through the load balancer, to an instance that is still running.

Used by ``cqrs-sso proxy`` only (``serve`` passes ``ws=GracefulWebSocketProtocol``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Closed this long before the grace ends, so that the close frame is sent before uvicorn
# cancels what is still running.
CLOSE_BEFORE_GRACE_ENDS_SECONDS = 0.5


class GracefulWebSocketProtocol(WebSocketsSansIOProtocol):
    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and not self.transport.is_closing():
            grace = float(self.config.timeout_graceful_shutdown or 0)
            delay = max(grace - CLOSE_BEFORE_GRACE_ENDS_SECONDS, 0.0)
            asyncio.get_running_loop().call_later(delay, self._close_for_restart)
            return
        super().shutdown()

    def _close_for_restart(self) -> None:
        if not self.transport.is_closing():
            super().shutdown()
