"""Security events, one JSON object per log line on the ``cqrs_sso.audit`` logger.

Only identifiers go in: event name, reason code, email, Entra object id, a hash of the
session id, and the request id. Never a token, code, cookie value, secret or password —
callers pass fields explicitly, and every value is truncated and JSON-escaped so a hostile
``error`` parameter cannot forge or split log lines.

The request id comes from a context variable the drivers set for each request (from a
well-formed incoming ``X-Request-ID``, or a fresh one), so it works per thread (WSGI) and
per task (ASGI) alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from contextvars import ContextVar

audit_log = logging.getLogger("cqrs_sso.audit")
_MAX_FIELD = 200
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


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
            self.resolved = incoming if incoming and _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        return self.resolved


_request_id: ContextVar[_RequestId] = ContextVar("cqrs_sso_request_id")


def begin_request(incoming_request_id: str | None) -> None:
    """Called by the drivers at the start of every request."""
    _request_id.set(_RequestId(incoming_request_id))


def current_request_id() -> str:
    """The caller's ``X-Request-ID`` when well-formed, else a fresh one; stable per request."""
    holder = _request_id.get(None)
    return holder.value() if holder is not None else "-"


def session_ref(session_id: str) -> str:
    """A short, non-reversible reference to a session id, safe to log and correlate."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def audit(event: str, **fields: object) -> None:
    if not audit_log.isEnabledFor(logging.INFO):
        return
    record: dict[str, object] = {"event": event, "request_id": current_request_id()}
    for name, value in fields.items():
        text = value if isinstance(value, int | float | bool) or value is None else str(value)
        record[name] = text[:_MAX_FIELD] if isinstance(text, str) else text
    audit_log.info(json.dumps(record, sort_keys=True, ensure_ascii=True))
