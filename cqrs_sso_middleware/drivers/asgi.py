"""ASGI driver: a plain ASGI callable, httpx.AsyncClient for the provider, anyio for lookups.

It performs what the core asks and nothing else; every decision is in ``core.flow``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar
from urllib.parse import quote, unquote

import anyio
import httpx
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.actions import (
    OUTCOME_TYPES,
    Effect,
    EffectResult,
    Flow,
    HttpCall,
    HttpFailure,
    HttpReply,
    IncomingRequest,
    LookUpAccount,
    LookupFailed,
    LookupReturned,
    Outcome,
    PassThrough,
    ReadForm,
    Respond,
    StoreEffect,
    StoreFailed,
    StoreReply,
)
from ..core.audit import begin_request
from ..core.flow import SignInFlow
from ..core.forms import parse_form
from ..core.identity import IDENTITY_HEADERS, runs_inline
from ..core.oidc import MAX_PROVIDER_REPLY_BYTES
from ..core.responses import PageRenderer, internal_error
from ..pages import JinjaPages
from ..settings import Settings
from ..stores import StoreBackend, store_for

log = logging.getLogger("cqrs_sso")
_IDENTITY_HEADER_NAMES = frozenset(h.replace("_", "-").encode("latin-1") for h in IDENTITY_HEADERS)
USER_AGENT = "cqrs-sso-middleware"
_PCHAR = "/:@!$&'()*+,;=-._~"  # RFC 3986 §3.3: left as they are when re-encoding a path
WEBSOCKET_UNAUTHENTICATED = 4401
WEBSOCKET_FORBIDDEN = 4403


def _is_identity_header(name: bytes) -> bool:
    # Every identity header starts with x or r; others skip the normalisation (hot path).
    if name[:1] not in (b"x", b"r", b"X", b"R"):
        return False
    # "X_Forwarded_User" is the same header to many WSGI/CGI back-ends: drop both spellings.
    return name.lower().replace(b"_", b"-") in _IDENTITY_HEADER_NAMES


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


class ASGISSOMiddleware:
    """NHSmail sign-in in front of any ASGI app (Starlette, FastAPI, Django ASGI, …).

    Every HTTP or websocket request that is not under ``settings.path_prefix`` and not in
    ``settings.public_paths`` needs a valid session; browsers without one are sent to the
    sign-in page, API callers get ``401`` JSON and websockets are closed with code 4401.
    Signed-in requests reach the app with ``scope["user"]`` (Starlette ``BaseUser``-
    compatible), ``scope["auth"]`` (``AuthCredentials(["authenticated"])``) and
    ``scope["cqrs_sso.user"]``. Lifespan events pass through untouched.

    What it trusts: only its own signed cookies and the ID token the provider signs.
    Identity headers sent by the client (``X-Forwarded-User``, ``Remote-User``, their
    underscore spellings, …) are removed from every request before the app sees it. It does
    not read ``X-Forwarded-*``: the public origin is ``settings.base_url``.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        *,
        http_client: httpx.AsyncClient | None = None,
        pages: PageRenderer | None = None,
        clock: Callable[[], float] = time.time,
        store: StoreBackend | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        # The server-side session store (None: the cookie store). Pass one to share a
        # MemoryStore between middlewares, as two instances share one Redis.
        self.store = (
            store
            if store is not None
            else store_for(
                settings.session_store, settings.redis_password, settings.session_store_timeout_seconds
            )
        )
        self.flow = SignInFlow(settings, pages or JinjaPages(settings.templates_dir), clock)
        # Performs the provider calls instead of ``self.http`` when set (cqrs-sso proxy
        # sets its own pooled client: proxy/provider_client.py).
        self.provider_call: Callable[[HttpCall], Awaitable[HttpReply | HttpFailure]] | None = None
        self.http = http_client or httpx.AsyncClient(
            timeout=settings.http_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        # Called with (seconds, succeeded) after every account lookup; metrics listen here.
        self.lookup_observers: list[Callable[[float, bool], None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if not _is_identity_header(k)]
        headers = ScopeHeaderLookup(scope["headers"])
        begin_request(headers.get("x-request-id"))
        try:
            decision = self.flow.handle(self._request(scope, headers))
            if isinstance(decision, OUTCOME_TYPES):
                outcome = decision
            else:
                outcome = await self._run(decision, scope, receive)
        except Exception:
            log.exception("cqrs-sso: internal error while handling a request")
            outcome = internal_error()
        if isinstance(outcome, PassThrough):
            await self._pass_through(outcome, scope, receive, send)
        elif scope["type"] == "websocket":
            code = WEBSOCKET_FORBIDDEN if outcome.status == 403 else WEBSOCKET_UNAUTHENTICATED
            await send({"type": "websocket.close", "code": code})
        else:
            await send_response(outcome, send, head=scope.get("method") == "HEAD")

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.store is not None:
            await self.store.aclose()
        close_lookup = getattr(self.settings.lookup, "close", None)
        if callable(close_lookup):
            await anyio.to_thread.run_sync(close_lookup)  # a built-in sql:/http: lookup's pool

    def _closing_on_shutdown(self, send: Send) -> Send:
        """Lifespan passes through untouched; once the app has shut down, close our pool."""

        async def send_and_close(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.aclose()
            await send(message)

        return send_and_close

    # -- request in, outcome out ----------------------------------------------------------

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

    # -- effects ------------------------------------------------------------------------------

    async def _run(self, flow: Flow, scope: Scope, receive: Receive) -> Outcome:
        try:
            effect: Effect = next(flow)
            while True:
                effect = flow.send(await self._perform(effect, scope, receive))
        except StopIteration as done:
            result: Outcome = done.value
            return result

    async def _perform(self, effect: Effect, scope: Scope, receive: Receive) -> EffectResult:
        if isinstance(effect, HttpCall):
            if self.provider_call is not None:
                return await self.provider_call(effect)
            return await self._http(effect)
        if isinstance(effect, ReadForm):
            return await self._read_form(effect, scope, receive)
        if isinstance(effect, LookUpAccount):
            return await self._look_up(effect)
        return await self._store_effect(effect)

    async def _store_effect(self, effect: StoreEffect) -> StoreReply | StoreFailed:
        if self.store is None:
            return StoreFailed("no server-side session store configured")
        return await self.store.aperform(effect)

    async def _http(self, call: HttpCall) -> HttpReply | HttpFailure:
        try:
            request = self.http.build_request(
                call.method, call.url, data=dict(call.form or ()), headers=call.headers
            )
            reply = await self.http.send(request, stream=True)
            try:
                body = b""
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_PROVIDER_REPLY_BYTES:
                        return HttpFailure(
                            f"{call.purpose}: reply larger than {MAX_PROVIDER_REPLY_BYTES} bytes"
                        )
                return HttpReply(reply.status_code, body)
            finally:
                await reply.aclose()
        except httpx.HTTPError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")

    @staticmethod
    async def _read_form(effect: ReadForm, scope: Scope, receive: Receive) -> dict[str, str] | None:
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # client went away
            body += message.get("body", b"")
            if len(body) > effect.max_bytes:
                return None
            if not message.get("more_body", False):
                break
        return parse_form(body, ScopeHeaderLookup(scope["headers"]).get("content-type"))

    async def _look_up(self, effect: LookUpAccount) -> LookupReturned | LookupFailed:
        started = time.perf_counter()
        outcome = await self._call_lookup(effect)
        for observe in self.lookup_observers:
            observe(time.perf_counter() - started, isinstance(outcome, LookupReturned))
        return outcome

    async def _call_lookup(self, effect: LookUpAccount) -> LookupReturned | LookupFailed:
        lookup = self.settings.lookup
        timeout = self.settings.account_lookup_timeout_seconds
        try:
            result: Any
            with anyio.fail_after(timeout):
                if runs_inline(lookup):
                    result = lookup(effect.identity)
                elif inspect.iscoroutinefunction(lookup) or inspect.iscoroutinefunction(
                    getattr(lookup, "__call__", None)  # noqa: B004 - async callable objects
                ):
                    result = await lookup(effect.identity)  # type: ignore[misc]
                else:
                    # abandon_on_cancel: a stuck sync lookup must not hold the request past
                    # its time-out; its thread finishes in the background.
                    result = await anyio.to_thread.run_sync(lookup, effect.identity, abandon_on_cancel=True)
                    if inspect.isawaitable(result):
                        result = await result
            return LookupReturned(result)
        except TimeoutError:
            return LookupFailed(f"timed out after {timeout:g}s")
        except Exception as error:
            return LookupFailed(f"raised {type(error).__name__}")


async def send_response(outcome: Respond, send: Send, head: bool = False) -> None:
    """An answer the package makes itself, as ASGI messages (body left out for HEAD)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers]
    headers.append((b"content-length", str(len(outcome.body)).encode()))
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else outcome.body})
