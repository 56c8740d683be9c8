"""The proxy's access log: one JSON line per request, with a request id.

``AccessLog`` is the outermost ASGI layer of ``cqrs-sso proxy``. It takes an incoming
``X-Request-ID`` when it is well-formed (a load balancer's id, so one request can be
followed through both logs) or makes one, sends it upstream and back to the client, and
writes ``{"time", "level", "request_id", "method", "path", "status", "duration_ms",
"client"}`` — ``time`` in ISO 8601 UTC, ``level`` ``error`` for a 5xx answer and ``info``
otherwise — never a query string (it can carry an authorisation code) and never a cookie.

Where the line goes: by default a ``logging`` record on ``cqrs_sso.access``, so whatever
logging a deployer configured is honoured. ``cqrs-sso proxy`` itself installs a JSON-lines
handler on stderr; then ``BatchedLines`` writes the lines in batches (every
``FLUSH_SECONDS`` or ``FLUSH_BYTES``, and at shut-down), like nginx's
``access_log … buffer= flush=``: measured in ``benchmarks/proxy.py``, a log record and a
flushed write per request cost more than the sign-in check itself.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets
import select
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audit import utc_timestamp
from ..core.security.headers import valid_request_id
from ..tracing import current_trace_id

access_log = logging.getLogger("cqrs_sso.access")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

FLUSH_SECONDS = 0.25
FLUSH_BYTES = 64 * 1024


class RequestIds:
    """Request ids unique across processes and restarts: a random per-process prefix and a
    counter. They only name a request in the logs — not a secret — so no ``getrandom``
    system call per request."""

    def __init__(self) -> None:
        self.prefix = secrets.token_hex(6)
        self.counter = itertools.count(1)

    def __call__(self) -> bytes:
        return f"{self.prefix}-{next(self.counter):x}".encode()


class BatchedLines:
    """Access lines written to ``stream`` in batches, from the serving event loop."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self.size = 0
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size >= FLUSH_BYTES:
            self.flush()
        elif self.timer is None:
            try:
                self.timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # not in a loop (a test calling the app directly): write now
                self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.lines:
            return
        lines, self.lines, self.size = self.lines, [], 0
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError, AttributeError):
            fd = -1
        try:
            if fd < 0:  # an in-memory stream
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
                return
            self.stream.flush()  # anything a logging handler left in its buffer goes first
            for block in _blocks(lines):
                os.write(fd, block)
        except (OSError, ValueError):  # stderr closed at shut-down: nothing left to tell
            pass


def _blocks(lines: list[str]) -> list[bytes]:
    """Whole lines in blocks of at most PIPE_BUF bytes: POSIX makes such a write to a pipe
    atomic, so lines from several workers sharing one stderr pipe never interleave."""
    blocks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        data = line.encode("utf-8", "replace") + b"\n"
        if current and size + len(data) > select.PIPE_BUF:
            blocks.append(b"".join(current))
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        blocks.append(b"".join(current))
    return blocks


def line_sink() -> Callable[[str], None]:
    """Where ``AccessLog`` writes: batched straight to the stream when the only handler is
    the one ``cqrs-sso proxy`` installed, else through ``logging`` as configured."""
    handlers = access_log.handlers
    if (
        len(handlers) == 1
        and getattr(handlers[0], "cqrs_sso_json_lines", False)
        and isinstance(handlers[0], logging.StreamHandler)
        and access_log.isEnabledFor(logging.INFO)
    ):
        return BatchedLines(handlers[0].stream)
    return access_log.info


class AccessLog:
    """One JSON line per request on ``cqrs_sso.access``: no query strings, no cookies."""

    def __init__(self, app: ASGIApp, sink: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.sink = sink or line_sink()
        self.new_id = RequestIds()

    def flush(self) -> None:
        if isinstance(self.sink, BatchedLines):
            self.sink.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self._flushing_on_shutdown(send))
            else:
                await self.app(scope, receive, send)
            return
        incoming = None
        headers = scope["headers"]
        for name, value in headers:
            if name == b"x-request-id":
                incoming = value
                headers = [(k, v) for k, v in headers if k != b"x-request-id"]
                break
        request_id = incoming if incoming and valid_request_id(incoming) else self.new_id()
        scope = {**scope, "headers": [*headers, (b"x-request-id", request_id)]}
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", request_id)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            self.sink(
                access_line(
                    request_id.decode(),
                    scope["method"],
                    scope["path"],
                    status,
                    time.perf_counter() - started,
                    client[0] if client else None,
                    trace_id=current_trace_id(),
                )
            )

    def _flushing_on_shutdown(self, send: Send) -> Send:
        async def flushing_send(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown"):
                self.flush()
            await send(message)

        return flushing_send


def access_line(
    request_id: str,
    method: str,
    path: str,
    status: int,
    seconds: float,
    client: str | None,
    at: str | None = None,
    trace_id: str = "",
) -> str:
    """The JSON line, built directly: the same text ``json.dumps`` gives for these fields.

    The request id passed ``valid_request_id`` and the method and client address come from the
    HTTP parser and the socket; anything else is escaped by the json module's own encoder.
    """

    def text(value: str | None) -> str:
        if value is None:
            return "null"
        return f'"{value}"' if _SAFE_TOKEN.match(value) else encode_basestring_ascii(value)

    return (
        f'{{"time": "{at or utc_timestamp()}", "level": "{"error" if status >= 500 else "info"}", '
        f'"request_id": {text(request_id)}, "method": {text(method)}, '
        f'"path": {encode_basestring_ascii(path[:512])}, "status": {int(status)}, '
        f'"duration_ms": {round(seconds * 1000, 2)!r}, "client": {text(client)}'
        + (f', "trace_id": "{trace_id}"}}' if trace_id else "}")
    )
