"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes a response's head as soon as the app sends ``http.response.start`` and its
body on ``http.response.body``; uvloop sends each ``write`` to the socket at once, so every
small proxied response cost two ``write`` system calls. ``CoalescingTransport`` gathers the
writes made during one turn of the event loop and sends them together at the end of that
turn (``call_soon``), which for a typical page means head and body in one segment. A
body larger than ``WRITE_THROUGH_BYTES`` goes out at once, so nothing large waits in
memory, and ``close``/``write_eof`` send what is pending first.

Used by ``cqrs-sso proxy`` only (``serve`` passes ``http=CoalescingHttpToolsProtocol`` to
uvicorn). It relies on one documented fact of uvicorn's ``HttpToolsProtocol``: the
transport it is given in ``connection_made`` is the one it writes to; a test pins it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

WRITE_THROUGH_BYTES = 64 * 1024


class CoalescingTransport:
    """Wraps a transport; writes within one event-loop turn leave as one write."""

    __slots__ = ("_loop", "_pending", "_pending_size", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        if self._pending_size >= WRITE_THROUGH_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._pending_size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._pending_size = 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._pending_size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        # Everything else (pause_reading, get_extra_info, is_closing, set_protocol, …) is
        # the real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` writing through a ``CoalescingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
