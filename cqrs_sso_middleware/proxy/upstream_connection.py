"""One keep-alive HTTP/1.1 connection to the upstream, as an asyncio ``Protocol`` whose
responses httptools (llhttp) parses; and the errors of the upstream client.

At most one request is in flight on a connection (no pipelining). The response body is
buffered up to ``BUFFER_HIGH_WATER`` and reading pauses there, so a slow client never makes
the proxy hold a whole body (``upstream.UpstreamPool`` drives it).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from typing import cast

import httptools

RawHeaders = list[tuple[bytes, bytes]]

BUFFER_HIGH_WATER = 256 * 1024
BUFFER_LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not give a response."""


class UpstreamUnavailable(UpstreamError):
    """Refused, reset or closed before a response head arrived: a 502."""


class UpstreamTimeout(UpstreamError):
    """No answer within ``read_timeout`` (or no connection within ``connect_timeout``): a 504."""


class UpstreamBroken(UpstreamError):
    """The upstream failed after its response had started: the response must be cut."""


class UpstreamRefused(UpstreamError):
    """This client refused to send the request (a header it must not write): a 502."""


_FORBIDDEN_IN_FIELDS = re.compile(rb"[\r\n\x00]")


def has_forbidden_bytes(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether any name or value holds CR, LF or NUL. RFC 9110 §5.5: such a value must not
    be forwarded; written as it is, it starts a second header line, or a second request on
    a keep-alive connection (request smuggling)."""
    return any(
        _FORBIDDEN_IN_FIELDS.search(name) or _FORBIDDEN_IN_FIELDS.search(value) for name, value in fields
    )


class Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining)."""

    __slots__ = (
        "buffered",
        "chunks",
        "closed",
        "complete",
        "drain_waiter",
        "error",
        "head_done",
        "head_only",
        "headers",
        "idle_since",
        "interim",
        "keep_alive",
        "must_close",
        "parser",
        "reading_paused",
        "received_any",
        "reused",
        "status",
        "transport",
        "until_eof",
        "waiter",
        "writing_paused",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.writing_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.reset(head_only=False)

    def reset(self, head_only: bool) -> None:
        self.head_only = head_only
        self.status = 0
        self.headers: RawHeaders = []
        self.head_done = False
        self.until_eof = False
        self.complete = False
        self.keep_alive = False
        self.interim = False
        self.received_any = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.error: UpstreamError | None = None
        self.must_close = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.fail(
                UpstreamBroken if self.head_done else UpstreamUnavailable,
                f"malformed response from the upstream ({error})",
            )
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the close means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and self.until_eof and not self.complete:
            self.complete = True  # RFC 9112 §6.3 rule 8: the close ends this body
        elif not self.complete and self.error is None:
            reason = f"connection closed ({exc})" if exc else "connection closed"
            self.fail(UpstreamBroken if self.head_done else UpstreamUnavailable, reason)
        self._wake()
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            self.interim = True  # RFC 9110 §15.2: an interim answer; the final one follows
            self.headers = []
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only or status in (204, 304):
            self.complete = True
            return
        framed = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                framed = True
                break
        self.until_eof = not framed
        if self.until_eof:
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > BUFFER_HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True

    # -- the client side -----------------------------------------------------------------------

    def fail(self, kind: type[UpstreamError], reason: str) -> None:
        if self.error is None:
            self.error = kind(reason)
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    async def drain(self) -> None:
        if self.writing_paused and not self.closed:
            self.drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None

    def take(self) -> bytes:
        """Everything buffered so far, resuming reads once the buffer has drained."""
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        return data


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("the upstream did not answer in time"))
