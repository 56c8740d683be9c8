"""The audit log: one JSON object per line on the ``cqrs_sso.audit`` logger, and the
request id every line carries.

The core records security events as data on its outcomes (``core.protocol.AuditEvent``);
:class:`AuditSink` writes them and tells the observers (metrics) — the core itself never
logs. Only identifiers go in: event name, reason code, email, Entra object id, a hash of
the session id, and the request id. Never a token, code, cookie value, secret or password:
events name their fields explicitly, and every value is truncated and JSON-escaped, so a
hostile ``error`` parameter cannot forge or split a log line.

The request id comes from a context variable the drivers set for each request (from a
well-formed incoming ``X-Request-ID``, or a fresh one), so it works per thread (WSGI) and
per task (ASGI) alike.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar

from .core.protocol import AuditEvent
from .core.security.headers import valid_request_id

audit_log = logging.getLogger("cqrs_sso.audit")
_MAX_FIELD = 200
AuditObserver = Callable[[AuditEvent], None]


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
    record: dict[str, object] = {"event": event.name, "request_id": current_request_id()}
    for name, value in event.fields.items():
        text = value if isinstance(value, int | float | bool) or value is None else str(value)
        record[name] = text[:_MAX_FIELD] if isinstance(text, str) else text
    return json.dumps(record, sort_keys=True, ensure_ascii=True)


class AuditSink:
    """Writes each event to the audit log and hands it to every observer (metrics)."""

    def __init__(self, observers: Iterable[AuditObserver] = ()) -> None:
        self.observers: tuple[AuditObserver, ...] = tuple(observers)

    def emit(self, events: Sequence[AuditEvent]) -> None:
        logging_on = audit_log.isEnabledFor(logging.INFO)
        for event in events:
            if logging_on:
                audit_log.info(audit_line(event))
            for observe in self.observers:
                observe(event)


def audit(name: str, **fields: object) -> None:
    """One event outside a request (the command line)."""
    AuditSink().emit([AuditEvent(name, fields)])
