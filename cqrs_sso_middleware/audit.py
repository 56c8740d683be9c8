"""The audit log: one JSON object per line on the ``cqrs_sso.audit`` logger, and the
request id every line carries.

The core records security events as data on its outcomes (``core.protocol.AuditEvent``);
:class:`AuditSink` writes them and tells the observers (metrics) — the core itself never
logs. Only identifiers go in: event name, reason code, email, Entra object id, a hash of
the session id, and the request id. Never a token, code, cookie value, secret or password:
events name their fields explicitly, and every value is truncated and JSON-escaped, so a
hostile ``error`` parameter cannot forge or split a log line.

Every line carries ``time`` (ISO 8601, UTC, milliseconds) and ``level``: ``error`` for what
only a deployer can fix (the provider refused this deployment's credentials), ``warning``
for outages and for refusals worth a look, ``info`` for the rest. The logging record has
the same level, so a host's alerting on ERROR sees a misconfigured deployment at once.

The request id comes from a context variable the drivers set for each request (from a
well-formed incoming ``X-Request-ID``, or a fresh one), so it works per thread (WSGI) and
per task (ASGI) alike.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar

from .core.protocol import AuditEvent
from .core.security.headers import valid_request_id
from .tracing import current_trace_id

audit_log = logging.getLogger("cqrs_sso.audit")
_MAX_FIELD = 200
AuditObserver = Callable[[AuditEvent], None]

# Events that are not routine, by level (every other event is INFO).
EVENT_LEVELS: dict[str, int] = {
    "provider_misconfigured": logging.ERROR,
    "provider_unavailable": logging.WARNING,
    "session_store_unavailable": logging.WARNING,
    "lookup_failed": logging.WARNING,
    "session_refused": logging.WARNING,
    "token_rejected": logging.WARNING,
    "backchannel_logout_refused": logging.WARNING,
    # Either a client trying to choose the path judged, or a front proxy that sets another
    # header than forward_auth_uri_header: both worth a deployer's look.
    "ambiguous_original_uri": logging.WARNING,
}
LEVEL_NAMES = {logging.ERROR: "error", logging.WARNING: "warning", logging.INFO: "info"}


class _UtcClock:
    """ISO 8601 UTC times with milliseconds; the part down to the second is formatted once
    per second (access lines are written on every request)."""

    __slots__ = ("cached",)

    def __init__(self) -> None:
        self.cached: tuple[int, str] = (-1, "")  # one attribute: threads see a consistent pair

    def __call__(self, now: float | None = None) -> str:
        moment = time.time() if now is None else now
        second = int(moment)
        cached_second, prefix = self.cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.cached = (second, prefix)
        return f"{prefix}.{int((moment - second) * 1000):03d}Z"


utc_timestamp = _UtcClock()


class _RequestId:
    """The incoming ``X-Request-ID``, resolved to a checked or fresh id on first use only,
    so a request that logs nothing pays one ``ContextVar.set`` and no random bytes."""

    __slots__ = ("incoming", "resolved")

    def __init__(self, incoming: str | None) -> None:
        self.incoming = incoming
        self.resolved: str | None = None

    def value(self) -> str:
        if self.resolved is None:
            incoming = self.incoming
            self.resolved = incoming if incoming and valid_request_id(incoming) else secrets.token_hex(8)
        return self.resolved


_request_id: ContextVar[_RequestId] = ContextVar("cqrs_sso_request_id")


def begin_request(incoming_request_id: str | None) -> None:
    """Called by the drivers at the start of every request."""
    _request_id.set(_RequestId(incoming_request_id))


def current_request_id() -> str:
    """The caller's ``X-Request-ID`` when well-formed, else a fresh one; stable per request."""
    holder = _request_id.get(None)
    return holder.value() if holder is not None else "-"


def audit_line(event: AuditEvent) -> str:
    record: dict[str, object] = {
        "time": utc_timestamp(),
        "level": LEVEL_NAMES[EVENT_LEVELS.get(event.name, logging.INFO)],
        "event": event.name,
        "request_id": current_request_id(),
    }
    trace_id = current_trace_id()
    if trace_id:
        record["trace_id"] = trace_id
    for name, value in event.fields.items():
        text = value if isinstance(value, int | float | bool) or value is None else str(value)
        record[name] = text[:_MAX_FIELD] if isinstance(text, str) else text
    return json.dumps(record, sort_keys=True, ensure_ascii=True)


class AuditSink:
    """Writes each event to the audit log and hands it to every observer (metrics)."""

    def __init__(self, observers: Iterable[AuditObserver] = ()) -> None:
        self.observers: tuple[AuditObserver, ...] = tuple(observers)

    def emit(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            level = EVENT_LEVELS.get(event.name, logging.INFO)
            if audit_log.isEnabledFor(level):
                audit_log.log(level, audit_line(event))
            for observe in self.observers:
                observe(event)


def audit(name: str, **fields: object) -> None:
    """One event outside a request (the command line)."""
    AuditSink().emit([AuditEvent(name, fields)])


class FallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes the package's lines to stderr only while the host has no logging of its
    own: no handler on the root logger and none other on ``cqrs_sso``. Decided per line, so
    a host that sets logging up after building the middleware gets each line once, through
    its own handlers."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers or len(_package_log.handlers) > 1:
            return
        super().emit(record)


class _LineFormatter(logging.Formatter):
    """Audit and access lines are JSON already (time and level inside); other lines get
    a time, a level and the logger's name."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name in ("cqrs_sso.audit", "cqrs_sso.access"):
            return record.getMessage()
        return super().format(record)


_package_log = logging.getLogger("cqrs_sso")


def ensure_log_output() -> None:
    """Audit and access lines reach a log with no configuration by the host app.

    Embedded under uvicorn, gunicorn or flask, nothing configures the root logger, so
    Python would drop INFO lines and print WARNING ones bare. The package logger is set to
    INFO when nobody set its level (a deployer's own level is kept), and a
    :class:`FallbackHandler` is added once."""
    if _package_log.level == logging.NOTSET:
        _package_log.setLevel(logging.INFO)
    if not any(isinstance(handler, FallbackHandler) for handler in _package_log.handlers):
        handler = FallbackHandler()
        handler.setFormatter(_LineFormatter())
        _package_log.addHandler(handler)
