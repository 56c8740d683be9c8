"""One socket write per small response: the coalescing transport, alone and under uvicorn."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import httpx
import pytest
import uvicorn

from cqrs_sso_middleware.proxy.http_protocol import (
    WRITE_THROUGH_BYTES,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)
from cqrs_sso_middleware.serving import bind_socket


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def test_writes_of_one_loop_turn_leave_together_and_large_ones_at_once() -> None:
    async def scenario() -> RecordingTransport:
        real = RecordingTransport()
        transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"")
        transport.write(b"body")
        assert real.writes == []  # not before the turn ends
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        transport.write(b"x" * WRITE_THROUGH_BYTES)
        assert len(real.writes) == 2  # a large body is not held back
        transport.write(b"last")
        transport.close()  # pending data goes before the close
        assert real.writes[-1] == b"last" and real.closed
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
        return real

    asyncio.run(scenario())


async def two_part_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_uvicorn_writes_a_small_response_through_it_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins what http_protocol.py relies on: uvicorn writes to the transport it was given."""
    flushed: list[int] = []
    original = CoalescingTransport.flush

    def counting_flush(self: CoalescingTransport) -> None:
        if self._pending:
            flushed.append(len(self._pending))
        original(self)

    monkeypatch.setattr(CoalescingTransport, "flush", counting_flush)
    sock: socket.socket = bind_socket()
    config = uvicorn.Config(
        two_part_app, http=CoalescingHttpToolsProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        for _ in range(100):
            try:
                reply = httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                threading.Event().wait(0.05)
        assert reply.text == "hello"
        assert flushed and flushed[-1] == 2  # head and body, gathered into one write
    finally:
        server.should_exit = True
        thread.join(timeout=10)
