"""Security events, one JSON object per log line on the ``cqrs_sso.audit`` logger.

Only identifiers go in: event name, reason code, email, Entra object id, session id hash.
Never a token, code, cookie value, secret or password — callers pass fields explicitly, and
values are truncated so a hostile ``error`` parameter cannot forge log lines.
"""

from __future__ import annotations

import hashlib
import json
import logging

audit_log = logging.getLogger("cqrs_sso.audit")
_MAX_FIELD = 200


def session_ref(session_id: str) -> str:
    """A short, non-reversible reference to a session id, safe to log and correlate."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]


def audit(event: str, **fields: object) -> None:
    if not audit_log.isEnabledFor(logging.INFO):
        return
    record: dict[str, object] = {"event": event}
    for name, value in fields.items():
        text = value if isinstance(value, int | float | bool) or value is None else str(value)
        record[name] = text[:_MAX_FIELD] if isinstance(text, str) else text
    audit_log.info(json.dumps(record, sort_keys=True, ensure_ascii=True))
