"""Prometheus metrics of the proxy (prometheus-client), one registry per app.

Sign-ins by outcome and session problems come from the flow's audit events, lookup latency
from the driver, upstream latency and status from the proxy. With several workers each
process keeps its own counters (prometheus-client's multiprocess mode is not wired yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

if TYPE_CHECKING:
    from ..drivers.asgi import ASGISSOMiddleware

_SIGN_IN_OUTCOMES = {
    "sign_in_started": "started",
    "sign_in_succeeded": "succeeded",
    "sign_in_no_account": "no_account",
    "sign_in_failed": "failed",
    "token_rejected": "token_rejected",
    "provider_unavailable": "provider_unavailable",
    "lookup_failed": "lookup_failed",
}
_SESSION_EVENTS = {
    "session_expired": "expired",
    "account_removed": "account_removed",
    "signed_out": "signed_out",
}


class ProxyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sign_ins = Counter(
            "cqrs_sso_sign_ins", "Sign-in events by outcome", ["outcome"], registry=self.registry
        )
        self.sessions = Counter(
            "cqrs_sso_session_events", "Session ends and re-checks by kind", ["kind"], registry=self.registry
        )
        self.session_checks = Counter(
            "cqrs_sso_session_checks", "Proxied requests by session state", ["result"], registry=self.registry
        )
        self.lookup_seconds = Histogram(
            "cqrs_sso_lookup_seconds", "Account lookup latency", ["result"], registry=self.registry
        )
        self.upstream_seconds = Histogram(
            "cqrs_sso_upstream_seconds", "Upstream response time (headers)", registry=self.registry
        )
        self.upstream_responses = Counter(
            "cqrs_sso_upstream_responses",
            "Upstream responses by status class",
            ["status"],
            registry=self.registry,
        )
        # Children resolved once: ``labels()`` takes a lock and builds a key on every call,
        # which was most of the metrics' cost per proxied request (benchmarks/proxy.py).
        self._checked = {
            True: self.session_checks.labels("authenticated"),
            False: self.session_checks.labels("public"),
        }
        self._status_classes = {n: self.upstream_responses.labels(f"{n}xx") for n in range(1, 6)}

    def watch(self, middleware: ASGISSOMiddleware) -> None:
        middleware.flow.observers.append(self.audit_event)
        middleware.lookup_observers.append(self.lookup)

    def audit_event(self, event: str, fields: Mapping[str, object]) -> None:
        if event in _SIGN_IN_OUTCOMES:
            self.sign_ins.labels(_SIGN_IN_OUTCOMES[event]).inc()
        elif event in _SESSION_EVENTS:
            self.sessions.labels(_SESSION_EVENTS[event]).inc()

    def session_check(self, authenticated: bool) -> None:
        self._checked[authenticated].inc()

    def lookup(self, seconds: float, ok: bool) -> None:
        self.lookup_seconds.labels("ok" if ok else "error").observe(seconds)

    def upstream(self, seconds: float, status: int) -> None:
        self.upstream_seconds.observe(seconds)
        child = self._status_classes.get(status // 100)
        if child is None:
            child = self.upstream_responses.labels(f"{status // 100}xx")
        child.inc()

    def exposition(self) -> tuple[bytes, bytes]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
