"""WSGI driver: werkzeug for the request, httpx.Client for the provider, threads for lookups.

It performs what the core asks and nothing else; every decision is in ``core.flow``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

import httpx

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
from ..core.identity import IDENTITY_HEADERS, Identity, runs_inline
from ..core.oidc import MAX_PROVIDER_REPLY_BYTES
from ..core.responses import PageRenderer, internal_error
from ..pages import JinjaPages
from ..settings import Settings
from ..stores import StoreBackend, store_for

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("cqrs_sso")
_PCHAR = "/:@!$&'()*+,;=-._~"  # RFC 3986 §3.3: left as they are when re-encoding a path
_CGI_HEADERS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
_IDENTITY_ENVIRON_KEYS = tuple("HTTP_" + h.upper().replace("-", "_") for h in IDENTITY_HEADERS)
USER_AGENT = "cqrs-sso-middleware"


class EnvironHeaderLookup:
    """Case-insensitive header reads straight from the environ (PEP 3333 ``HTTP_*`` keys).

    werkzeug's ``EnvironHeaders`` does the same with more machinery than one ``get`` needs;
    this is on every request's path.
    """

    __slots__ = ("environ",)
    _keys: ClassVar[dict[str, str]] = {}

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ

    def get(self, key: str, /) -> str | None:
        environ_key = self._keys.get(key)
        if environ_key is None:
            lowered = key.lower()
            environ_key = _CGI_HEADERS.get(lowered) or "HTTP_" + lowered.upper().replace("-", "_")
            self._keys[key] = environ_key
        value = self.environ.get(environ_key)
        return value if isinstance(value, str) else None


class SSOMiddleware:
    """NHSmail sign-in in front of any WSGI app (Flask, Django, …).

    Every request that is not under ``settings.path_prefix`` and not in
    ``settings.public_paths`` needs a valid session; without one, browsers are sent to the
    sign-in page and API callers get ``401`` JSON. Signed-in requests reach the app with
    ``environ["cqrs_sso.user"]`` (a :class:`~cqrs_sso_middleware.User`) and
    ``environ["REMOTE_USER"]`` (the email).

    What it trusts: only its own signed cookies and the ID token the provider signs. It
    does **not** trust identity headers from the client — ``X-Forwarded-User``,
    ``Remote-User`` and the rest of ``IDENTITY_HEADERS`` are deleted from every request,
    and ``REMOTE_USER`` is always overwritten or removed, so the app can believe them.
    It does not read ``X-Forwarded-*`` at all: the public origin is ``settings.base_url``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
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
        self.http = http_client or httpx.Client(
            timeout=settings.http_timeout_seconds,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cqrs-sso-lookup")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        for key in _IDENTITY_ENVIRON_KEYS:
            environ.pop(key, None)
        environ.pop("REMOTE_USER", None)
        begin_request(environ.get("HTTP_X_REQUEST_ID"))
        try:
            decision = self.flow.handle(self._request(environ))
            outcome = decision if isinstance(decision, OUTCOME_TYPES) else self._run(decision, environ)
        except Exception:
            log.exception("cqrs-sso: internal error while handling a request")
            outcome = internal_error()
        if isinstance(outcome, Respond):
            head = environ.get("REQUEST_METHOD") == "HEAD"
            start_response(f"{outcome.status} {HTTPStatus(outcome.status).phrase}", list(outcome.headers))
            return [] if head else [outcome.body]
        return self._pass_through(outcome, environ, start_response)

    def close(self) -> None:
        self.http.close()
        if self.store is not None:
            self.store.close()
        self._lookups.shutdown(wait=False, cancel_futures=True)
        close_lookup = getattr(self.settings.lookup, "close", None)
        if callable(close_lookup):
            close_lookup()  # a built-in sql:/http: lookup's connection pool

    # -- request in, outcome out ----------------------------------------------------------

    @staticmethod
    def _request(environ: WSGIEnvironment) -> IncomingRequest:
        return IncomingRequest(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=raw_request_path(environ),
            query_string=environ.get("QUERY_STRING", ""),
            headers=EnvironHeaderLookup(environ),
            root_path=environ.get("SCRIPT_NAME", ""),
        )

    def _pass_through(
        self, outcome: PassThrough, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if outcome.path is not None:
            # The app must serve the path the rules were decided on, not the client's.
            decoded = unquote_to_bytes(outcome.path).decode("latin-1")  # PEP 3333 "bytes as str"
            environ["PATH_INFO"] = decoded[len(environ.get("SCRIPT_NAME", "")) :]
            query = environ.get("QUERY_STRING")
            for key in ("RAW_URI", "REQUEST_URI"):
                if key in environ:
                    environ[key] = outcome.path + (f"?{query}" if query else "")
        if outcome.user is not None:
            environ["cqrs_sso.user"] = outcome.user
            environ["REMOTE_USER"] = outcome.user.email
        if not outcome.set_cookies:
            return self.app(environ, start_response)
        cookies = [("Set-Cookie", cookie) for cookie in outcome.set_cookies]

        def start_with_cookies(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *cookies], exc_info)

        return self.app(environ, start_with_cookies)

    # -- effects ------------------------------------------------------------------------------

    def _run(self, flow: Flow, environ: WSGIEnvironment) -> Outcome:
        try:
            effect: Effect = next(flow)
            while True:
                effect = flow.send(self._perform(effect, environ))
        except StopIteration as done:
            result: Outcome = done.value
            return result

    def _perform(self, effect: Effect, environ: WSGIEnvironment) -> EffectResult:
        if isinstance(effect, HttpCall):
            return self._http(effect)
        if isinstance(effect, ReadForm):
            return self._read_form(effect, environ)
        if isinstance(effect, LookUpAccount):
            return self._look_up(effect)
        return self._store_effect(effect)

    def _store_effect(self, effect: StoreEffect) -> StoreReply | StoreFailed:
        if self.store is None:
            return StoreFailed("no server-side session store configured")
        return self.store.perform(effect)

    def _http(self, call: HttpCall) -> HttpReply | HttpFailure:
        try:
            with self.http.stream(
                call.method, call.url, data=dict(call.form or ()), headers=call.headers
            ) as reply:
                body = b""
                for chunk in reply.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PROVIDER_REPLY_BYTES:
                        return HttpFailure(
                            f"{call.purpose}: reply larger than {MAX_PROVIDER_REPLY_BYTES} bytes"
                        )
                return HttpReply(reply.status_code, body)
        except httpx.HTTPError as error:
            return HttpFailure(f"{call.purpose}: {type(error).__name__}")

    @staticmethod
    def _read_form(effect: ReadForm, environ: WSGIEnvironment) -> dict[str, str] | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 < length <= effect.max_bytes:
            return None
        body = environ["wsgi.input"].read(length)
        return parse_form(body, environ.get("CONTENT_TYPE"))

    def _look_up(self, effect: LookUpAccount) -> LookupReturned | LookupFailed:
        timeout = self.settings.account_lookup_timeout_seconds
        if runs_inline(self.settings.lookup):
            try:
                return LookupReturned(self.settings.lookup(effect.identity))
            except Exception as error:
                return LookupFailed(f"raised {type(error).__name__}")
        future = self._lookups.submit(_call_lookup, self.settings.lookup, effect.identity)
        try:
            return LookupReturned(future.result(timeout=timeout))
        except FutureTimeout:
            future.cancel()
            return LookupFailed(f"timed out after {timeout:g}s")
        except Exception as error:
            return LookupFailed(f"raised {type(error).__name__}")


def raw_request_path(environ: WSGIEnvironment) -> str:
    """The request path as the client sent it, still percent-encoded.

    PEP 3333 servers decode ``PATH_INFO``, which loses the difference between ``/`` and
    ``%2F``; gunicorn (``RAW_URI``), werkzeug and uWSGI (``REQUEST_URI``) keep the original.
    That original is used only when it decodes to ``SCRIPT_NAME + PATH_INFO``: a WSGI
    layer outside this one may have rewritten the path, and the rules must judge what the
    app will be given.
    """
    decoded_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(uri, str) and uri.startswith("/"):
        raw = uri.split("?", 1)[0]
        if raw == decoded_path or unquote_to_bytes(raw).decode("latin-1") == decoded_path:
            return raw
    return quote_from_bytes(decoded_path.encode("latin-1", "replace"), safe=_PCHAR) or "/"


def _call_lookup(lookup: Callable[[Identity], Any], identity: Identity) -> object:
    """Run a plain or ``async def`` lookup to completion in a worker thread."""
    result = lookup(identity)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> object:
    return await awaitable
