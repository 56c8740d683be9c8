"""Prometheus metrics of the sign-in layer: the same families for the proxy, forward-auth
and apps that embed the middleware (prometheus-client).

Embedded, one object does it::

    metrics = SSOMetrics()
    app.wsgi_app = SSOMiddleware(app.wsgi_app, settings, metrics=metrics)

The middleware then serves ``metrics_path`` (``/metrics``) to the ``metrics_allow``
networks only (404 to everyone else, before any sign-in); or hand ``metrics.registry`` to
an exporter the app already has. Install the ``metrics`` extra (prometheus-client).

**Several processes** (``cqrs-sso proxy --workers N``, gunicorn ``-w N``): each process
counts its own requests, and a scrape reaches one of them. With the environment variable
``PROMETHEUS_MULTIPROC_DIR`` set before the processes start, prometheus-client keeps every
process's values in that directory and one scrape reports the sum over all of them — the
proxy sets it to a directory of its own when it starts more than one worker. A directory
you set yourself must be empty (or new) at start-up.

Families (every name starts ``cqrs_sso_``; no label carries personal data, and every label
has a fixed set of values, listed in ``docs/deploy.md``): ``sign_ins_total{outcome}``,
``sessions_ended_total{cause}``, ``access_refused_total{reason}``,
``lookup_seconds{result}``, ``store_seconds{command,result}``, ``store_info{kind}``,
``provider_seconds{endpoint,result}``; the proxy adds ``session_checks_total{result}``,
``upstream_responses_total{status}`` and ``upstream_seconds``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .core.protocol import AuditEvent, Respond
from .core.responses import json_response, text_response
from .observers import Observers

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Audit event → sign-in outcome. Every sign-in that ends ends in exactly one of these.
SIGN_IN_OUTCOMES = {
    "sign_in_started": "started",
    "sign_in_succeeded": "success",
    "step_up_succeeded": "step_up",
    "sign_in_no_account": "no_account",
    "sign_in_cancelled": "cancelled",
    "provider_misconfigured": "misconfigured",
    "provider_unavailable": "unavailable",
    "lookup_failed": "unavailable",
    "token_rejected": "rejected",
}
# sign_in_failed: the provider's own refusal, or ours (a bad state, a missing claim…).
_PROVIDER_REFUSAL = "provider_error"
SESSION_END_CAUSES = {
    "session_expired": "expired",
    "account_removed": "account_removed",
    "signed_out": "signed_out",
    "backchannel_logout": "backchannel_logout",
    "frontchannel_logout": "frontchannel_logout",
    "session_revoked": "revoked",
}
ACCESS_REFUSALS = {"access_denied": "role", "step_up_required": "step_up"}
STORE_COMMANDS = ("get", "put", "delete", "claim", "members", "ping")
PROVIDER_ENDPOINTS = ("metadata", "jwks", "token", "userinfo")
# Store commands and provider calls take from well under a millisecond to seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# How long per-request updates may wait before they reach prometheus-client (as the access
# log's lines wait): a scrape of the process itself flushes first, another worker's lags
# by at most this.
FLUSH_SECONDS = 0.25


def multiprocess_directory() -> str | None:
    """The directory prometheus-client's multi-process mode uses, when it is on."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


def _values_are_shared() -> bool:
    """prometheus-client chooses where values live when it is first imported: with the
    variable set only later, values stay in this process, and reading the directory would
    report zeros. Then this process's own values are reported instead."""
    return bool(values.ValueClass.__name__ == "MmapedValue")


class SSOMetrics:
    """Every family, in one registry of its own (two middlewares in one process keep two)."""

    def __init__(self, *, proxy: bool = False) -> None:
        """``proxy``: also the reverse proxy's per-request families."""
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess_directory() is not None and _values_are_shared()
        registry = self.registry
        self.sign_ins = Counter("cqrs_sso_sign_ins", "Sign-ins by outcome", ["outcome"], registry=registry)
        self.sessions_ended = Counter(
            "cqrs_sso_sessions_ended", "Sessions ended, by cause", ["cause"], registry=registry
        )
        self.access_refused = Counter(
            "cqrs_sso_access_refused",
            "Signed-in requests an access rule refused",
            ["reason"],
            registry=registry,
        )
        self.lookup_seconds = Histogram(
            "cqrs_sso_lookup_seconds", "Account lookup latency", ["result"], registry=registry
        )
        self.store_seconds = Histogram(
            "cqrs_sso_store_seconds",
            "Session store command latency",
            ["command", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.store_info = Gauge(
            "cqrs_sso_store_info",
            "The session store's kind (1)",
            ["kind"],
            registry=registry,
            multiprocess_mode="max",
        )
        self._store_children: dict[tuple[str, bool], Any] = {}
        self.provider_seconds = Histogram(
            "cqrs_sso_provider_seconds",
            "Identity provider call latency",
            ["endpoint", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        # Per-request updates wait here and reach prometheus-client in batches: in
        # multi-process mode each update is a lock, a process-id check and a write to a
        # memory-mapped file, 7 % of a proxy worker's time under load (benchmarks/proxy.py).
        self.pending = PendingUpdates()
        self.per_request: RequestCounts = RequestCounts()
        if proxy and self.multiprocess:
            self.per_request = SharedRequestCounts(registry, self.pending)
        elif proxy:
            self.per_request = local = LocalRequestCounts()
            registry.register(local)

    def observers(self) -> Observers:
        """What ``Runtime.from_settings`` is given so that these families hear it."""
        return Observers(
            audit=(self.audit_event,),
            lookups=(self.lookup,),
            store=(self.store,),
            provider=(self.provider,),
            store_kind=(self.store_kind,),
        )

    # -- observers the runtime calls ------------------------------------------------------

    def audit_event(self, event: AuditEvent) -> None:
        name = event.name
        if name in SIGN_IN_OUTCOMES:
            self.sign_ins.labels(SIGN_IN_OUTCOMES[name]).inc()
        elif name == "sign_in_failed":
            provider = event.fields.get("reason") == _PROVIDER_REFUSAL
            self.sign_ins.labels("provider_refused" if provider else "rejected").inc()
        elif name in SESSION_END_CAUSES:
            cause = SESSION_END_CAUSES[name]
            if name == "signed_out" and event.fields.get("everywhere"):
                cause = "signed_out_everywhere"
            self.sessions_ended.labels(cause).inc()
        elif name in ACCESS_REFUSALS:
            self.access_refused.labels(ACCESS_REFUSALS[name]).inc()

    def lookup(self, seconds: float, ok: bool) -> None:
        self.lookup_seconds.labels("ok" if ok else "error").observe(seconds)

    def store(self, command: str, seconds: float, ok: bool) -> None:
        # Every request reads a server-side store: batched (the labels look-up is a lock too).
        child = self._store_children.get((command, ok))
        if child is None:
            child = self._store_children[command, ok] = self.store_seconds.labels(
                command, "ok" if ok else "error"
            )
        self.pending.observe(child, seconds)

    def provider(self, endpoint: str, seconds: float, ok: bool) -> None:
        self.provider_seconds.labels(endpoint, "ok" if ok else "error").observe(seconds)

    def store_kind(self, kind: str) -> None:
        self.store_info.labels(kind).set(1)

    # -- the proxy's per-request figures --------------------------------------------------

    def session_check(self, authenticated: bool) -> None:
        self.per_request.session_check(authenticated)

    def upstream(self, seconds: float, status: int) -> None:
        self.per_request.upstream(seconds, status)

    # -- the scrape -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write the updates still waiting (before a scrape, and at shut-down)."""
        self.pending.flush()

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text: this process's, or every process's in multi-process mode."""
        self.pending.flush()
        directory = multiprocess_directory()
        if self.multiprocess and directory:
            everyone = CollectorRegistry()
            MultiProcessCollector(everyone, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(everyone), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsEndpoint:
    """``metrics_path`` for the ``metrics_allow`` networks, answered before any sign-in (a
    scraper has no session); 404 for every other address, as if there were nothing."""

    def __init__(self, metrics: SSOMetrics, path: str, allowed: Iterable[str]) -> None:
        self.metrics = metrics
        self.path = path
        self.networks = tuple(ipaddress.ip_network(network, strict=False) for network in allowed)

    def may_read(self, client: str | None) -> bool:
        try:
            address = ipaddress.ip_address(client or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def answer(self, client: str | None) -> Respond:
        if not self.may_read(client):
            return json_response(404, {"error": "not_found"})
        body, content_type = self.metrics.exposition()
        return text_response(200, body, content_type)


class RequestCounts:
    """What the proxy counts on every request (session checks, upstream answers); this one,
    for an embedded app, counts nothing."""

    def session_check(self, authenticated: bool) -> None:
        return None

    def upstream(self, seconds: float, status: int) -> None:
        return None


class SharedRequestCounts(RequestCounts):
    """Multi-process mode: prometheus-client's own counters, whose values live in the shared
    directory, updated in batches (``PendingUpdates``)."""

    def __init__(self, registry: CollectorRegistry, pending: PendingUpdates) -> None:
        self.pending = pending
        self.checks = Counter(
            "cqrs_sso_session_checks", "Proxied requests by session state", ["result"], registry=registry
        )
        self.responses = Counter(
            "cqrs_sso_upstream_responses", "Upstream responses by status class", ["status"], registry=registry
        )
        self.latency = Histogram(
            "cqrs_sso_upstream_seconds", "Upstream response time (headers)", registry=registry
        )
        # Children made once: a labels() look-up takes a lock of its own on every call.
        self._checks = {True: self.checks.labels("authenticated"), False: self.checks.labels("public")}
        self._classes = {n: self.responses.labels(f"{n}xx") for n in range(1, 6)}

    def session_check(self, authenticated: bool) -> None:
        self.pending.inc(self._checks[authenticated])

    def upstream(self, seconds: float, status: int) -> None:
        self.pending.observe(self.latency, seconds)
        child = self._classes.get(status // 100)
        self.pending.inc(child if child is not None else self.responses.labels(f"{status // 100}xx"))


class PendingUpdates:
    """Counter increments and histogram observations kept as plain numbers, and applied to
    their prometheus-client children at most ``FLUSH_SECONDS`` later, from the event loop:
    one locked write per child and batch instead of one per request. Outside an event loop
    (a WSGI app's threads) an update is applied at once, as before. Thread-safe: a thread
    the proxy hands a store call to may update too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}
        # histogram child -> (observations per bucket, [their sum])
        self._observed: dict[Any, tuple[list[int], list[float]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def inc(self, child: Any, amount: float = 1.0) -> None:
        with self._lock:
            self._counts[child] = self._counts.get(child, 0.0) + amount
        self._soon()

    def observe(self, child: Any, seconds: float) -> None:
        with self._lock:
            pending = self._observed.get(child)
            if pending is None:
                pending = self._observed[child] = ([0] * len(child._upper_bounds), [0.0])
            # The bucket Histogram.observe would count it in: the first bound >= seconds.
            pending[0][bisect_left(child._upper_bounds, seconds)] += 1
            pending[1][0] += seconds
        self._soon()

    def _soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._timer is not None and self._timer_loop is loop:
            return
        # A timer of a loop that has gone (a restarted worker, a test's new loop) never fires.
        self._timer, self._timer_loop = loop.call_later(FLUSH_SECONDS, self.flush), loop

    def flush(self) -> None:
        with self._lock:
            counts, observed = self._counts, self._observed
            self._counts, self._observed = {}, {}
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        for child, amount in counts.items():
            child.inc(amount)
        for child, (buckets, total) in observed.items():
            # What Histogram.observe does per observation, once per batch: its buckets are
            # per bucket (not cumulative), and its sum (prometheus-client's own layout).
            child._sum.inc(total[0])
            for index, count in enumerate(buckets):
                if count:
                    child._buckets[index].inc(count)


class LocalRequestCounts(RequestCounts, Collector):
    """One process: plain numbers, turned into Prometheus families only when ``/metrics`` is
    read. prometheus-client's ``Counter`` and ``Histogram`` take a lock on every update,
    which was about 3 % of the proxy's CPU (benchmarks/proxy.py); only the event loop's
    thread updates and reads these, so no lock is needed."""

    BUCKETS = Histogram.DEFAULT_BUCKETS

    def __init__(self) -> None:
        self.checks = {True: 0, False: 0}
        self.statuses = dict.fromkeys(range(1, 6), 0)
        self.latency_counts = [0] * len(self.BUCKETS)  # per bucket, not yet cumulative
        self.latency_sum = 0.0

    def session_check(self, authenticated: bool) -> None:
        self.checks[authenticated] += 1

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
