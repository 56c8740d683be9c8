"""The proxy's upstream client against scripted HTTP servers on loopback (no proxy, no app)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

from cqrs_sso_middleware.proxy.upstream import (
    BUFFER_HIGH_WATER,
    UpstreamPool,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnavailable,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def run(scenario: Callable[[str, list[int]], Coroutine[Any, Any, None]], handler: Handler) -> list[int]:
    """Serve ``handler`` (given the connection's number) and run ``scenario(origin, opened)``."""
    opened: list[int] = []

    async def main() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            opened.append(len(opened) + 1)
            try:
                await handler(reader, writer, len(opened))
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await scenario(f"http://127.0.0.1:{port}", opened)

    asyncio.run(main())
    return opened


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Let the event loop run until ``condition()`` holds; fail after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def fetch(pool: UpstreamPool, method: bytes = b"GET", **kwargs: Any) -> tuple[int, bytes]:
    response = await pool.request(method, b"/x", [(b"host", b"upstream")], **kwargs)
    try:
        return response.status, b"".join([chunk async for chunk in response.body()])
    finally:
        response.release()


async def serve_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while True:
        await read_head(reader)
        writer.write(OK)
        await writer.drain()


def test_a_connection_is_reused_for_the_next_request() -> None:
    async def scenario(origin: str, opened: list[int]) -> None:
        pool = UpstreamPool(origin)
        for _ in range(5):
            assert await fetch(pool) == (200, b"ok")

    assert run(scenario, serve_forever) == [1]


def test_an_idle_connection_the_upstream_closed_is_retried_once_for_a_request_without_body() -> None:
    async def close_after_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        writer.write(OK)  # says keep-alive (HTTP/1.1), then closes as an idle time-out would
        await writer.drain()

    async def scenario(origin: str, opened: list[int]) -> None:
        pool = UpstreamPool(origin)
        assert await fetch(pool) == (200, b"ok")
        # At once: the close has not been seen yet, so the pool hands out the dead
        # connection — the race every keep-alive client meets.
        assert await fetch(pool) == (200, b"ok")

    assert len(run(scenario, close_after_one)) == 2


def test_a_request_with_a_body_is_never_sent_twice() -> None:
    received: list[bytes] = []

    async def swallow_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await read_head(reader)
        if n == 1:
            writer.write(OK)
            await writer.drain()
            return
        received.append(head)
        await reader.read(5)  # takes the body, then the connection drops without an answer

    async def body() -> AsyncIterator[bytes]:
        yield b"hello"

    async def scenario(origin: str, opened: list[int]) -> None:
        pool = UpstreamPool(origin)
        assert await fetch(pool) == (200, b"ok")
        # The pooled connection has seen the upstream close it: the POST needs a new one.
        await until(lambda: all(connection.closed for connection in pool._idle))
        with pytest.raises(UpstreamUnavailable):
            await fetch(pool, b"POST", body=body(), content_length=5)

    run(scenario, swallow_and_close)
    assert len(received) == 1 and b"content-length: 5" in received[0]


def test_head_answer_keeps_the_connection_usable() -> None:
    async def head_then_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")  # no body: it was HEAD
        await read_head(reader)
        writer.write(OK)
        await writer.drain()
        await reader.read()

    async def scenario(origin: str, opened: list[int]) -> None:
        pool = UpstreamPool(origin)
        assert await fetch(pool, b"HEAD") == (200, b"")
        assert await fetch(pool) == (200, b"ok")

    assert run(scenario, head_then_get) == [1]


def test_a_body_without_length_ends_when_the_upstream_closes() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")

    async def scenario(origin: str, opened: list[int]) -> None:
        pool = UpstreamPool(origin)
        assert await fetch(pool) == (200, b"all of it")
        assert await fetch(pool) == (200, b"all of it")  # on a new connection

    assert len(run(scenario, until_close)) == 2


def test_interim_100_continue_is_skipped() -> None:
    async def interim(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
        await writer.drain()
        await reader.read()

    async def scenario(origin: str, opened: list[int]) -> None:
        assert await fetch(UpstreamPool(origin)) == (200, b"ok")

    run(scenario, interim)


def test_a_body_of_unknown_length_goes_upstream_chunked() -> None:
    seen: list[bytes] = []

    async def echo_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        seen.append(await read_head(reader))
        seen.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(OK)
        await writer.drain()
        await reader.read()

    async def body() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""
        yield b"defgh"

    async def scenario(origin: str, opened: list[int]) -> None:
        assert await fetch(UpstreamPool(origin), b"POST", body=body()) == (200, b"ok")

    run(scenario, echo_chunked)
    assert b"transfer-encoding: chunked" in seen[0]
    assert seen[1] == b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "answer",
    [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n", b""],
    ids=["not-http", "bad-length", "closed-at-once"],
)
def test_no_usable_answer_is_unavailable(answer: bytes) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        writer.write(answer)
        await writer.drain()

    async def scenario(origin: str, opened: list[int]) -> None:
        with pytest.raises(UpstreamUnavailable):
            await fetch(UpstreamPool(origin))

    run(scenario, bad)


def test_an_upstream_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        await asyncio.Event().wait()  # never answers, never closes

    async def scenario(origin: str, opened: list[int]) -> None:
        # Without the read time-out the call would hang: wait_for turns that into a failure
        # (TimeoutError, not UpstreamTimeout) instead of a hung test. Nothing is timed.
        with pytest.raises(UpstreamTimeout):
            await asyncio.wait_for(fetch(UpstreamPool(origin, read_timeout=0.2)), timeout=30)

    run(scenario, silent)


def test_a_slow_reader_pauses_the_upstream_instead_of_buffering_its_body() -> None:
    size = 64 * 1024 * 1024

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"z" * (1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
            await writer.drain()

    async def scenario(origin: str, opened: list[int]) -> None:
        response = await UpstreamPool(origin).request(b"GET", b"/big", [(b"host", b"u")])
        # Nobody reads: the upstream must be paused, not buffered.
        await until(lambda: response._connection.reading_paused)
        buffered = response._connection.buffered
        assert buffered <= BUFFER_HIGH_WATER + (1 << 20), buffered
        received = sum([len(chunk) async for chunk in response.body()])
        response.release()
        assert received == size

    run(scenario, big)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param((b"x-forwarded-user", b"gp.user@nhs.net\r\nX-Forwarded-User: admin@nhs.net"), id="crlf"),
        pytest.param((b"x-forwarded-user", b"gp.user@nhs.net\nX-Admin: 1"), id="bare-lf"),
        pytest.param((b"x-forwarded-user", b"gp.user@nhs.net\rX-Admin: 1"), id="bare-cr"),
        pytest.param((b"x-cqrs-account", b"CQRS-1\x00"), id="nul"),
        pytest.param((b"x-evil\r\nx-admin", b"1"), id="crlf-in-a-name"),
    ],
)
def test_a_header_with_cr_lf_or_nul_is_refused_before_a_byte_is_written(header: tuple[bytes, bytes]) -> None:
    """RFC 9110 §5.5: a value with CR, LF or NUL would become a second header line, or, on a
    keep-alive connection, a second request (smuggling). Nothing is sent at all."""
    received: list[bytes] = []

    async def scenario(origin: str, opened: list[int]) -> None:
        pool = UpstreamPool(origin)
        with pytest.raises(UpstreamRefused):
            await pool.request(b"GET", b"/x", [(b"host", b"upstream"), header])
        assert await fetch(pool) == (200, b"ok")  # the pool stays usable
        pool.close()

    async def answer_then_record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await read_head(reader)
        received.append(head)
        writer.write(OK)
        await writer.drain()

    run(scenario, answer_then_record)
    assert len(received) == 1 and b"admin" not in received[0] and b"\x00" not in received[0]
