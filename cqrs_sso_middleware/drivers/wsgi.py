"""WSGI driver (PEP 3333): the environ in, the core's outcome out.

It reads the request, runs the core's flow with ``interpreter.run_sync`` (provider calls
over ``httpx.Client``, lookups through the runtime's runner, store effects on the store's
sync face), and writes the answer or calls the app. Every decision is the core's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

from ..audit import begin_request
from ..core.interpreter import run_sync
from ..core.protocol import IncomingRequest, PassThrough, ReadForm, Respond, is_flow
from ..core.responses import internal_error
from ..core.security.request_numbers import whole_number
from ..performers import SyncEffects
from ..runtime import Runtime
from . import Driver

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment  # noqa: F401 - a quoted base


log = logging.getLogger("cqrs_sso")
_PCHAR = "/:@!$&'()*+,;=-._~"  # RFC 3986 §3.3: left as they are when re-encoding a path
_CGI_HEADERS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


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


class _Effects(SyncEffects):
    """The runtime's effects, and this environ's body (PEP 3333 ``wsgi.input``)."""

    __slots__ = ("environ",)

    def __init__(self, runtime: Runtime, environ: WSGIEnvironment) -> None:
        super().__init__(runtime)
        self.environ = environ

    def read_form(self, effect: ReadForm) -> bytes | None:
        length = whole_number(str(self.environ.get("CONTENT_LENGTH") or "0"), 0, effect.max_bytes)
        if length is None:
            return None
        if length == 0:  # an empty form (a Sign out button with no fields), as ASGI reads it
            return b""
        body: bytes = self.environ["wsgi.input"].read(length)
        return body


class SSOMiddleware(Driver["WSGIApplication"]):
    """NHSmail sign-in in front of any WSGI app (Flask, Django, …).

    Every request that is not under ``path_prefix`` and not in ``public_paths`` needs a
    valid session; without one, browsers are sent to the sign-in page and API callers get
    ``401`` JSON. Signed-in requests reach the app with ``environ["cqrs_sso.user"]`` (a
    :class:`~cqrs_sso_middleware.User`) and ``environ["REMOTE_USER"]`` (the email).

    What it trusts: only its own sealed cookies and the ID token the provider signs. It
    does **not** trust identity headers from the client — ``X-Forwarded-User``,
    ``Remote-User``, the configured user/email/account headers and the rest of
    ``STANDARD_IDENTITY_HEADERS`` are deleted from every request, and ``REMOTE_USER`` is
    always overwritten or removed, so the app can believe them. It does not read
    ``X-Forwarded-*`` at all: the public origin is ``base_url``.

    Give it ``Settings`` (it builds its runtime) or a ``Runtime`` (shared, or built with a
    test's clock or store).
    """

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._tracing is not None:
            return self._tracing.wsgi(self._serve, environ, start_response, self._session_cookie)
        return self._serve(environ, start_response)

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        for key in self._identity_headers.environ_keys:
            environ.pop(key, None)
        environ.pop("REMOTE_USER", None)
        if self._metrics is not None and environ.get("PATH_INFO") == self._metrics.path:
            answer: PassThrough | Respond = self._metrics.answer(environ.get("REMOTE_ADDR"))
        else:
            answer = self._answer(environ)
        if isinstance(answer, Respond):
            head = environ.get("REQUEST_METHOD") == "HEAD"
            start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", list(answer.headers))
            return [] if head else [answer.body]
        return self._pass_through(answer, environ, start_response)

    def _answer(self, environ: WSGIEnvironment) -> PassThrough | Respond:
        begin_request(environ.get("HTTP_X_REQUEST_ID"))
        try:
            decision = self._router.handle(self._request(environ))
            outcome = run_sync(decision, _Effects(self.runtime, environ)) if is_flow(decision) else decision
            return self.runtime.finish(outcome)
        except Exception:
            log.exception("cqrs-sso: internal error while handling a request")
            return internal_error()

    def close(self) -> None:
        self.runtime.close()

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
