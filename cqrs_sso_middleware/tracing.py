"""OpenTelemetry tracing, with the ``otel`` extra (``pip install 'cqrs-sso-middleware[otel]'``).

What is traced:

* a **server** span per request (named by its method only: a path may carry personal
  data), continued from the client's W3C ``traceparent`` (W3C Trace Context §3) when the
  request carries a session cookie. A request without one starts a trace of its own, and
  the client's ``traceparent`` becomes a span *link*: an anonymous client cannot choose
  the trace id that the audit lines of its requests carry (and so cannot file them under
  somebody else's trace);
* **client** spans for the provider calls (``provider metadata``, ``provider jwks``,
  ``provider token``), each sending ``traceparent`` on to the provider, and internal spans
  for the account lookup and each session-store command;
* ``traceparent`` sent to the proxy's upstream, replacing the client's;
* the trace id in every audit line and access-log line (``trace_id``).

Span attributes carry no personal data by default: methods, status codes, the store
command, the provider endpoint's purpose, the lookup's result — never an email, an account,
a path, a query or an address of a person.

Configuration is the standard one: ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER``
(``otlp``, the default; ``console``; ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and the other ``OTEL_EXPORTER_OTLP_*``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``. An app that
already installed an SDK ``TracerProvider`` gets its spans there. Without the extra, or
with none of these set, tracing is off: one ``is None`` test per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .core.security.cookies import cookie_values

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from opentelemetry.trace import Span, TracerProvider
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Set while a server span of ours is open: an inner layer (the middleware inside the
# proxy's outer layer) does not open a second one.
_in_server_span: ContextVar[bool] = ContextVar("cqrs_sso_in_server_span", default=False)
_tracing_on = False  # any Tracing made in this process: log lines look for a trace id
PROPAGATED = ("traceparent", "tracestate")
_PROPAGATED_RAW = tuple(name.encode("latin-1") for name in PROPAGATED)


def current_trace_id() -> str:
    """The current trace id (32 hex digits) for a log line, or ``""``."""
    if not _tracing_on:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class Tracing:
    """The spans of one runtime."""

    def __init__(self, provider: TracerProvider) -> None:
        global _tracing_on
        from opentelemetry import propagate, trace

        from . import __version__

        self.tracer = provider.get_tracer("cqrs_sso_middleware", __version__)
        self._propagator = propagate.get_global_textmap()
        self._trace = trace
        _tracing_on = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing | None:
        """Tracing as the ``OTEL_*`` variables ask, or ``None`` (off)."""
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return cls(current)  # the app's own SDK provider
        exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        if exporter == "none" or not (exporter or endpoint):
            return None
        if exporter not in ("", "otlp", "console"):
            logging.getLogger("cqrs_sso").warning(
                "cqrs-sso: OTEL_TRACES_EXPORTER=%s is not one this package sets up "
                "(otlp, console, none); spans are sent over OTLP",
                exporter[:40],
            )
        provider = _sdk_provider("console" if exporter == "console" else "otlp")
        trace.set_tracer_provider(provider)
        return cls(provider)

    # -- spans -------------------------------------------------------------------------------

    def span(
        self, name: str, attributes: Mapping[str, str | int] | None = None, *, client: bool = False
    ) -> AbstractContextManager[Span]:
        kind = self._trace.SpanKind.CLIENT if client else self._trace.SpanKind.INTERNAL
        return self.tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {}))

    def outgoing_headers(self) -> tuple[tuple[str, str], ...]:
        """``traceparent`` (and ``tracestate``) of the current span, for a call it makes."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return tuple(carrier.items())

    @contextmanager
    def _server_span(self, method: str, carrier: Mapping[str, str], signed_in: bool) -> Iterator[Span | None]:
        if _in_server_span.get():
            yield None
            return
        token = _in_server_span.set(True)
        from opentelemetry.context import Context

        incoming = self._propagator.extract(carrier, context=Context())
        links = []
        if not signed_in:
            client = self._trace.get_current_span(incoming).get_span_context()
            links = [self._trace.Link(client)] if client.is_valid else []
            incoming = Context()
        try:
            with self.tracer.start_as_current_span(
                method,
                context=incoming,
                kind=self._trace.SpanKind.SERVER,
                attributes={"http.request.method": method},
                links=links,
            ) as span:
                yield span
        finally:
            _in_server_span.reset(token)

    # -- the two faces -----------------------------------------------------------------------

    def wsgi(
        self,
        app: WSGIApplication,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        session_cookie: str,
    ) -> Iterable[bytes]:
        carrier = {
            name: str(environ[f"HTTP_{name.upper()}"])
            for name in PROPAGATED
            if f"HTTP_{name.upper()}" in environ
        }
        signed_in = bool(cookie_values(environ.get("HTTP_COOKIE"), session_cookie))
        with self._server_span(str(environ.get("REQUEST_METHOD", "GET")), carrier, signed_in) as span:
            if span is None:
                return app(environ, start_response)

            def recording(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                _status(span, int(status.split(" ", 1)[0]))
                return start_response(status, headers, exc_info)

            return app(environ, recording)

    async def asgi(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, session_cookie: str
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        carrier = {}
        cookies = []
        for name, value in scope["headers"]:
            if name in _PROPAGATED_RAW:
                carrier[name.decode("latin-1")] = value.decode("latin-1")
            elif name == b"cookie":
                cookies.append(value.decode("latin-1"))
        signed_in = bool(cookie_values("; ".join(cookies), session_cookie)) if cookies else False
        with self._server_span(scope["method"], carrier, signed_in) as span:
            if span is None:
                await app(scope, receive, send)
                return

            async def recording(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _status(span, int(message["status"]))
                await send(message)

            await app(scope, receive, recording)


def traced(app: ASGIApp, tracing: Tracing | None, session_cookie: str) -> ASGIApp:
    """``app`` inside a server span per request (the proxy's outermost layer, so that its
    access log sees the trace id); ``app`` itself when tracing is off."""
    if tracing is None:
        return app

    async def traced_app(scope: Scope, receive: Receive, send: Send) -> None:
        await tracing.asgi(app, scope, receive, send, session_cookie)

    return traced_app


def _status(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR))


def _sdk_provider(exporter: str) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "cqrs-sso"}))
    provider = SdkTracerProvider(resource=resource)
    chosen: SpanExporter
    if exporter == "console":
        chosen = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider
