"""The proxy's upstream client: HTTP/1.1 over pooled keep-alive connections.

One job only — forward a request the proxy has already vetted to one configured origin and
hand back the response as it arrives — so it is a small asyncio ``Protocol`` with
httptools (llhttp, the parser uvicorn and Node.js use) reading the responses, not a general
HTTP client. Measured on the project machine (``benchmarks/proxy.py --upstream static``),
it is what let the proxy overtake Apache + mod_auth_openidc: aiohttp spent about a third
of the proxy's CPU building and parsing messages this module writes in one ``join``.

What it guarantees, and the specs behind it:

- the request line carries the target exactly as given (the normalised path and the
  client's query string), the head is written in one piece;
- bodies stream both ways with flow control: a slow client pauses reading from the
  upstream (``pause_reading`` above ``BUFFER_HIGH_WATER``) and a slow upstream pauses the
  client's upload (``pause_writing``/``drain``), so neither is ever held whole;
- a request body of unknown length goes upstream chunked (RFC 9112 §7.1);
- interim ``1xx`` responses are skipped (RFC 9110 §15.2); ``HEAD``, ``204`` and ``304``
  have no body (RFC 9110 §6.4.1), and a body with neither length nor chunking ends when the
  upstream closes (RFC 9112 §6.3, rule 8);
- a connection is reused only after a complete response that allows it (RFC 9112 §9.3);
  a reused connection that the upstream closed while idle is retried once on a new
  connection, and only for a request without a body, which cannot have reached the
  application half-sent (the race RFC 9112 §9.3.1 warns of);
- ``connect_timeout`` bounds connecting, ``read_timeout`` bounds every wait for the
  upstream (the head, and each piece of the body).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import httptools

from .upstream_connection import (
    BUFFER_HIGH_WATER,
    Connection,
    UpstreamBroken,
    UpstreamError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnavailable,
    has_forbidden_bytes,
)

__all__ = [
    "BUFFER_HIGH_WATER",
    "UpstreamBroken",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamRefused",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "has_forbidden_bytes",
]


class UpstreamResponse:
    """A response whose head has arrived; the body is read with ``body()`` or ``take_all()``."""

    __slots__ = ("_connection", "_pool", "_read_timeout", "_released", "headers", "status")

    def __init__(self, connection: Connection, pool: UpstreamPool, read_timeout: float) -> None:
        self.status = connection.status
        self.headers = connection.headers
        self._connection = connection
        self._pool = pool
        self._read_timeout = read_timeout
        self._released = False

    @property
    def complete(self) -> bool:
        """The whole body has already arrived (``take_all`` then returns it without waiting)."""
        return self._connection.complete

    def take_all(self) -> bytes:
        """The body of a complete response, in one piece."""
        return self._connection.take()

    async def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises ``UpstreamBroken`` if the upstream fails midway."""
        connection = self._connection
        while True:
            if connection.chunks:
                yield connection.take()
                continue
            if connection.complete:
                return
            if connection.error is not None:
                raise UpstreamBroken(str(connection.error))
            try:
                await connection.wait(self._read_timeout)
            except UpstreamTimeout:
                connection.fail(UpstreamBroken, "the upstream stopped sending")
                raise UpstreamBroken("the upstream stopped sending the body in time") from None

    def release(self) -> None:
        """Give the connection back (kept alive only after a complete, reusable response)."""
        if self._released:
            return
        self._released = True
        self._pool._release(self._connection)


class UpstreamPool:
    """Keep-alive connections to one origin (``http://host:port`` or ``https://…``)."""

    def __init__(
        self,
        origin: str,
        *,
        limit: int = 256,
        keepalive_seconds: float = 30.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be http:// or https:// with a host, not {origin!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.keepalive_seconds = keepalive_seconds
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)

    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None = None,
        content_length: int | None = None,
    ) -> UpstreamResponse:
        """Send one request; return once the response head has arrived.

        ``headers`` are written as given (the caller has applied the header hygiene, Host
        included) except framing, which this client owns: ``Content-Length`` when
        ``content_length`` is known, else ``Transfer-Encoding: chunked`` when there is a body.
        """
        if has_forbidden_bytes(headers) or has_forbidden_bytes(((target, b""),)):
            raise UpstreamRefused("a header or the target holds CR, LF or NUL")
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            head += [name, b": ", value, b"\r\n"]
        if body is not None:
            if content_length is not None:
                head += [b"content-length: ", str(content_length).encode(), b"\r\n"]
            else:
                head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        message = b"".join(head)
        head_only = method == b"HEAD"
        await self._slots.acquire()
        try:
            connection = await self._connect()
            try:
                return await self._exchange(connection, message, body, content_length, head_only)
            except UpstreamUnavailable:
                if not (connection.reused and body is None and not connection.received_any):
                    raise
            # The idle connection had been closed by the upstream: one more try, on a new one.
            connection = await self._connect(fresh=True)
            return await self._exchange(connection, message, None, None, head_only)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(
        self,
        connection: Connection,
        message: bytes,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
        head_only: bool,
    ) -> UpstreamResponse:
        connection.reset(head_only)
        transport = connection.transport
        assert transport is not None
        try:
            transport.write(message)
            if body is not None:
                sent = await _send_body(connection, transport, body, chunked=content_length is None)
                connection.must_close = not sent
            while not connection.head_done:
                if connection.error is not None:
                    raise connection.error
                if connection.closed:
                    raise UpstreamUnavailable("connection closed before the response")
                await connection.wait(self.read_timeout)
        except BaseException:
            connection.fail(UpstreamUnavailable, "request abandoned")
            raise
        return UpstreamResponse(connection, self, self.read_timeout)

    async def _connect(self, fresh: bool = False) -> Connection:
        now = time.monotonic()
        idle = self._idle
        while idle and not fresh:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_seconds:
                connection.reused = True
                return connection
            connection.fail(UpstreamUnavailable, "idle too long")
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    Connection,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"no connection to {self.host}:{self.port} in time") from None
        except OSError as error:
            raise UpstreamUnavailable(f"cannot connect to {self.host}:{self.port}: {error}") from None
        return connection

    def _release(self, connection: Connection) -> None:
        self._slots.release()
        if (
            connection.complete
            and connection.keep_alive
            and not connection.must_close
            and not connection.closed
            and not connection.chunks
        ):
            if connection.head_only:  # llhttp still expects the body HEAD announced
                connection.parser = httptools.HttpResponseParser(connection)
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.fail(UpstreamUnavailable, "not reusable")

    def close(self) -> None:
        while self._idle:
            self._idle.pop().fail(UpstreamUnavailable, "pool closed")


async def _send_body(
    connection: Connection, transport: asyncio.Transport, body: AsyncIterator[bytes], chunked: bool
) -> bool:
    """Stream the request body; False when it stopped early (the connection is then spent)."""
    async for chunk in body:
        if connection.closed or connection.error is not None:
            return False  # the upstream answered (or went away) early; its response decides
        if not chunk:
            continue
        if chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        if connection.writing_paused:
            await connection.drain()
    if chunked and not connection.closed:
        transport.write(b"0\r\n\r\n")
    return True
