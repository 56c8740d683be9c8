"""The access log's hand-built JSON line and its batched writer, without a server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select

from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from cqrs_sso_middleware.proxy.access_log import AccessLog, BatchedLines, RequestIds, _blocks, access_line


@given(
    request_id=st.one_of(st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z"), st.text(max_size=80)),
    method=st.text(max_size=12),
    path=st.text(max_size=700),
    status=st.integers(0, 599),
    seconds=st.floats(0, 1000, allow_nan=False),
    client=st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=20)),
)
def test_access_line_is_the_json_dumps_line(
    request_id: str, method: str, path: str, status: int, seconds: float, client: str | None
) -> None:
    expected = json.dumps(
        {
            "time": "2026-12-02T06:50:59.323Z",
            "level": "error" if status >= 500 else "info",
            "request_id": request_id,
            "method": method,
            "path": path[:512],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "client": client,
        },
        ensure_ascii=True,
    )
    line = access_line(request_id, method, path, status, seconds, client, "2026-12-02T06:50:59.323Z")
    assert line == expected


def test_access_line_carries_an_iso_8601_utc_time_and_a_level() -> None:
    ok = json.loads(access_line("id", "GET", "/", 200, 0.001, None))
    failed = json.loads(access_line("id", "GET", "/", 502, 0.001, None))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ok["time"])
    assert (ok["level"], failed["level"]) == ("info", "error")


def test_path_with_quotes_and_newlines_cannot_forge_a_second_line() -> None:
    line = access_line("id", "GET", '/x"\n{"request_id": "forged"}', 200, 0.001, "127.0.0.1")
    assert "\n" not in line
    assert json.loads(line)["path"] == '/x"\n{"request_id": "forged"}'


def test_blocks_hold_whole_lines_within_pipe_buf() -> None:
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 300)}"}}' for i in range(500)]
    blocks = _blocks(lines)
    assert b"".join(blocks).decode().splitlines() == lines
    assert all(len(b) <= select.PIPE_BUF and b.endswith(b"\n") for b in blocks)
    assert len(blocks) < len(lines) / 10  # batched, not a write per line


def test_batched_lines_reach_a_pipe_whole_at_flush() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        sink = BatchedLines(stream)
        sink.flush()  # nothing buffered: nothing written
        for i in range(100):
            sink.lines.append(json.dumps({"n": i}))
        sink.flush()
    with os.fdopen(read_end) as reader:
        assert [json.loads(line)["n"] for line in reader.read().splitlines()] == list(range(100))


def test_request_ids_are_unique_and_well_formed() -> None:
    first, second = RequestIds(), RequestIds()
    ids = {first() for _ in range(1000)} | {second() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(len(i) <= 64 and i.replace(b"-", b"").isalnum() for i in ids)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_lines_wait_in_the_buffer_and_are_written_at_shutdown() -> None:
    stream = io.StringIO()
    log = AccessLog(_app, BatchedLines(stream))
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "lifespan.shutdown"}

    async def scenario() -> None:
        scope = {"type": "http", "method": "GET", "path": "/a", "headers": [(b"x-request-id", b"bad id!")]}
        await log(scope, receive, send)
        assert stream.getvalue() == ""  # batched, not yet written
        await log({"type": "lifespan"}, receive, send)

    asyncio.run(scenario())
    entry = json.loads(stream.getvalue())
    assert entry["path"] == "/a" and entry["status"] == 204
    assert entry["request_id"] != "bad id!"  # a malformed incoming id is replaced
    returned = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert returned == entry["request_id"]
