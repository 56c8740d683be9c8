"""ASGI driver: a plain ASGI callable, the scope in, the core's outcome out.

It reads the request, runs the core's flow with ``interpreter.run_async`` (provider calls
over ``httpx.AsyncClient`` or the proxy's own client, lookups through the runtime's runner,
store effects on the store's async face), and sends the answer, closes the websocket, or
calls the app. Every decision is the core's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote, unquote

from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audit import begin_request
from ..core.interpreter import run_async
from ..core.protocol import IncomingRequest, PassThrough, ReadForm, Respond, is_flow
from ..core.responses import internal_error
from ..performers import AsyncEffects
from ..runtime import Runtime
from . import Driver

if TYPE_CHECKING:
    pass

log = logging.getLogger("cqrs_sso")
_PCHAR = "/:@!$&'()*+,;=-._~"  # RFC 3986 §3.3: left as they are when re-encoding a path
WEBSOCKET_UNAUTHENTICATED = 4401
WEBSOCKET_FORBIDDEN = 4403


class ScopeHeaderLookup:
    """Header reads from an ASGI scope's raw list, whose names the ASGI spec makes
    lower-case bytes. Starlette's ``Headers`` does more than a hot path needs."""

    __slots__ = ("raw",)
    _keys: ClassVar[dict[str, bytes]] = {}

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, key: str, /) -> str | None:
        wanted = self._keys.get(key)
        if wanted is None:
            wanted = self._keys[key] = key.lower().encode("latin-1")
        for name, value in self.raw:
            if name == wanted:
                return value.decode("latin-1")
        return None


class _Effects(AsyncEffects):
    """The runtime's effects, and this request's body (``http.request`` messages)."""

    __slots__ = ("receive",)

    def __init__(self, runtime: Runtime, receive: Receive) -> None:
        super().__init__(runtime)
        self.receive = receive

    async def read_form(self, effect: ReadForm) -> bytes | None:
        body = b""
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return None  # the client went away
            body += message.get("body", b"")
            if len(body) > effect.max_bytes:
                return None
            if not message.get("more_body", False):
                return bytes(body)


class ASGISSOMiddleware(Driver[ASGIApp]):
    """NHSmail sign-in in front of any ASGI app (Starlette, FastAPI, Django ASGI, …).

    Every HTTP or websocket request that is not under ``path_prefix`` and not in
    ``public_paths`` needs a valid session; browsers without one are sent to the sign-in
    page, API callers get ``401`` JSON and websockets are closed with code 4401 (4403 for
    an upgrade from another origin). Signed-in requests reach the app with
    ``scope["user"]`` (Starlette ``BaseUser``-compatible), ``scope["auth"]``
    (``AuthCredentials(["authenticated"])``) and ``scope["cqrs_sso.user"]``. Lifespan
    events pass through untouched.

    What it trusts: only its own sealed cookies and the ID token the provider signs.
    Identity headers sent by the client (``X-Forwarded-User``, ``Remote-User``, their
    underscore spellings, the configured names, …) are removed from every request before
    the app sees it. It does not read ``X-Forwarded-*``: the public origin is ``base_url``.

    Give it ``Settings`` (it builds its runtime) or a ``Runtime``.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._tracing is not None and scope["type"] == "http":
            await self._tracing.asgi(self._serve, scope, receive, send, self._session_cookie)
        else:
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self._metrics is not None and scope["path"] == self._metrics.path and scope["type"] == "http":
            client = scope.get("client")
            await send_response(self._metrics.answer(client[0] if client else None), send)
            return
        scope = dict(scope)
        is_identity = self._identity_headers.is_identity
        # Every identity header starts with x or r: other names skip the normalising (hot path).
        scope["headers"] = [
            (k, v) for k, v in scope["headers"] if k[:1] not in (b"x", b"r", b"X", b"R") or not is_identity(k)
        ]
        headers = ScopeHeaderLookup(scope["headers"])
        begin_request(headers.get("x-request-id"))
        try:
            decision = self._router.handle(self._request(scope, headers))
            outcome = (
                await run_async(decision, _Effects(self.runtime, receive)) if is_flow(decision) else decision
            )
            answer = self.runtime.finish(outcome)
        except Exception:
            log.exception("cqrs-sso: internal error while handling a request")
            answer = internal_error()
        if isinstance(answer, PassThrough):
            await self._pass_through(answer, scope, receive, send)
        elif scope["type"] == "websocket":
            code = WEBSOCKET_FORBIDDEN if answer.status == 403 else WEBSOCKET_UNAUTHENTICATED
            await send({"type": "websocket.close", "code": code})
        else:
            await send_response(answer, send, head=scope.get("method") == "HEAD")

    async def aclose(self) -> None:
        await self.runtime.aclose()

    def _closing_on_shutdown(self, send: Send) -> Send:
        """Lifespan passes through untouched; once the app has shut down, close our pools."""

        async def send_and_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return send_and_close

    @staticmethod
    def _request(scope: Scope, headers: ScopeHeaderLookup) -> IncomingRequest:
        raw_path = scope.get("raw_path")
        # ASGI servers decode `path`, losing "/" versus "%2F"; `raw_path` keeps the original.
        path = raw_path.decode("latin-1") if raw_path else quote(scope["path"] or "/", safe=_PCHAR)
        return IncomingRequest(
            method=scope.get("method", "GET").upper(),
            path=path,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            is_websocket=scope["type"] == "websocket",
            root_path=scope.get("root_path", ""),
        )

    async def _pass_through(self, outcome: PassThrough, scope: Scope, receive: Receive, send: Send) -> None:
        if outcome.path is not None:
            # The app (and the proxy's upstream) get the path the rules were decided on.
            scope["path"] = unquote(outcome.path)
            scope["raw_path"] = outcome.path.encode("ascii")
        if outcome.user is not None:
            scope["user"] = outcome.user
            scope["auth"] = AuthCredentials(["authenticated"])
            scope["cqrs_sso.user"] = outcome.user
        if not outcome.set_cookies:
            await self.app(scope, receive, send)
            return
        cookies = [(b"set-cookie", c.encode("latin-1")) for c in outcome.set_cookies]

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *cookies]}
            await send(message)

        await self.app(scope, receive, send_with_cookies)


async def send_response(answer: Respond, send: Send, head: bool = False) -> None:
    """An answer the package makes itself, as ASGI messages (body left out for HEAD)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})
