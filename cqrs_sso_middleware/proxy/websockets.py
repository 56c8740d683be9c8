"""Websocket pass-through: the session was checked at the upgrade by the middleware (which
closes unauthenticated sockets with 4401); here frames are relayed both ways."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .headers import RawHeaders
from .upstream import has_forbidden_bytes

log = logging.getLogger("cqrs_sso.proxy")
_SKIP = {
    b"host",
    b"connection",
    b"upgrade",
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
}


async def relay_websocket(
    upstream_url: str, upstream_headers: RawHeaders, scope: Scope, receive: Receive, send: Send
) -> None:
    """Relay one websocket to ``upstream_url`` (``ws://`` or ``wss://``) with the
    already-cleaned ``upstream_headers`` (the handshake's own headers are left to the client
    library)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if has_forbidden_bytes(upstream_headers):
        log.error("refused to relay a websocket: a header holds CR, LF or NUL: %s", scope["path"])
        await send({"type": "websocket.close", "code": 1011})
        return
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in upstream_headers if k not in _SKIP]
    subprotocols = [
        p.strip()
        for p in dict(scope["headers"]).get(b"sec-websocket-protocol", b"").decode().split(",")
        if p.strip()
    ]
    try:
        upstream = await connect(
            upstream_url,
            additional_headers=headers,
            subprotocols=subprotocols or None,  # type: ignore[arg-type,unused-ignore]
            open_timeout=10,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
        log.warning("upstream websocket unavailable (%s): %s", type(error).__name__, scope["path"])
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def client_to_upstream() -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                await upstream.close()
                return
            data: str | bytes = event["bytes"] if event.get("bytes") is not None else event.get("text") or ""
            await upstream.send(data)

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                key = "bytes" if isinstance(data, bytes) else "text"
                await send({"type": "websocket.send", key: data})
        except ConnectionClosed:
            pass
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    tasks = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()
