"""Prometheus metrics of the proxy (prometheus-client), one registry per app.

Sign-ins by outcome and session ends come from the audit events the runtime emits, lookup
latency from the lookup runner (both are observers given to ``Runtime.from_settings``),
upstream latency and status from the reverse proxy. With several workers each process
keeps its own counters.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..core.protocol import AuditEvent

_SIGN_IN_OUTCOMES = {
    "sign_in_started": "started",
    "sign_in_succeeded": "succeeded",
    "sign_in_no_account": "no_account",
    "sign_in_failed": "failed",
    "sign_in_cancelled": "cancelled",
    "provider_misconfigured": "provider_misconfigured",
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
        self.lookup_seconds = Histogram(
            "cqrs_sso_lookup_seconds", "Account lookup latency", ["result"], registry=self.registry
        )
        self.per_request = PerRequestMetrics()
        self.registry.register(self.per_request)

    def audit_event(self, event: AuditEvent) -> None:
        """An audit observer (``runtime.Observers``): sign-ins and session ends counted."""
        if event.name in _SIGN_IN_OUTCOMES:
            self.sign_ins.labels(_SIGN_IN_OUTCOMES[event.name]).inc()
        elif event.name in _SESSION_EVENTS:
            self.sessions.labels(_SESSION_EVENTS[event.name]).inc()

    def session_check(self, authenticated: bool) -> None:
        self.per_request.checks[authenticated] += 1

    def lookup(self, seconds: float, ok: bool) -> None:
        self.lookup_seconds.labels("ok" if ok else "error").observe(seconds)

    def upstream(self, seconds: float, status: int) -> None:
        self.per_request.upstream(seconds, status)

    def exposition(self) -> tuple[bytes, bytes]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()


class PerRequestMetrics(Collector):
    """The metrics updated on every proxied request, kept as plain numbers and turned into
    Prometheus families only when ``/metrics`` is read.

    prometheus-client's ``Counter`` and ``Histogram`` take a lock on every update, which
    was about 3 % of the proxy's CPU (benchmarks/proxy.py). Only the event loop's thread
    updates and reads these, so no lock is needed.
    """

    BUCKETS = Histogram.DEFAULT_BUCKETS

    def __init__(self) -> None:
        self.checks = {True: 0, False: 0}
        self.statuses = dict.fromkeys(range(1, 6), 0)
        self.latency_counts = [0] * len(self.BUCKETS)  # per bucket, not yet cumulative
        self.latency_sum = 0.0

    def upstream(self, seconds: float, status: int) -> None:
        self.latency_counts[bisect_left(self.BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        status_class = status // 100
        self.statuses[status_class] = self.statuses.get(status_class, 0) + 1

    def collect(self) -> Iterator[Metric]:
        checks = CounterMetricFamily(
            "cqrs_sso_session_checks", "Proxied requests by session state", labels=["result"]
        )
        checks.add_metric(["authenticated"], self.checks[True])
        checks.add_metric(["public"], self.checks[False])
        yield checks
        responses = CounterMetricFamily(
            "cqrs_sso_upstream_responses", "Upstream responses by status class", labels=["status"]
        )
        for status_class, count in sorted(self.statuses.items()):
            responses.add_metric([f"{status_class}xx"], count)
        yield responses
        cumulative, buckets = 0, []
        for bound, count in zip(self.BUCKETS, self.latency_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "cqrs_sso_upstream_seconds",
            "Upstream response time (headers)",
            buckets=buckets,
            sum_value=self.latency_sum,
        )
