"""The proxy's Prometheus exposition: per-request numbers kept without locks, same text."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cqrs_sso_middleware.metrics import SSOMetrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_per_request_metrics_read_as_prometheus_client_would_have_written_them() -> None:
    metrics = SSOMetrics(proxy=True)
    reference = CollectorRegistry()
    checks = Counter("cqrs_sso_session_checks", "x", ["result"], registry=reference)
    responses = Counter("cqrs_sso_upstream_responses", "x", ["status"], registry=reference)
    latency = Histogram("cqrs_sso_upstream_seconds", "x", registry=reference)
    for result in ("authenticated", "public"):
        checks.labels(result)
    for n in range(1, 6):
        responses.labels(f"{n}xx")
    for seconds, status in [(0.004, 200), (0.005, 200), (0.3, 404), (12.0, 502), (0.0, 304), (1.0, 200)]:
        metrics.session_check(status != 304)
        checks.labels("authenticated" if status != 304 else "public").inc()
        metrics.upstream(seconds, status)
        responses.labels(f"{status // 100}xx").inc()
        latency.observe(seconds)
    ours = samples(metrics.exposition()[0])
    expected = samples(generate_latest(reference))
    assert {k: v for k, v in ours.items() if k in expected} == expected
    assert ours[("cqrs_sso_upstream_seconds_bucket", (("le", "0.005"),))] == 3  # bounds are inclusive


def test_batched_updates_read_as_one_update_per_request_would_have() -> None:
    """PendingUpdates applies many increments and observations at once, from an event loop:
    the same numbers as prometheus-client's own, bucket bounds included, and nothing
    reaches the children before the batch is written."""
    import asyncio

    from cqrs_sso_middleware.metrics import FLUSH_SECONDS, PendingUpdates

    batched, direct = CollectorRegistry(), CollectorRegistry()
    ours = Histogram("h", "x", ["c"], buckets=(0.001, 0.01, 0.1), registry=batched)
    theirs = Histogram("h", "x", ["c"], buckets=(0.001, 0.01, 0.1), registry=direct)
    ours_plain = Histogram("p", "x", registry=batched)  # no labels: the family is its own child
    theirs_plain = Histogram("p", "x", registry=direct)
    ours_count = Counter("n", "x", registry=batched)
    theirs_count = Counter("n", "x", registry=direct)
    pending = PendingUpdates()
    observations = [0.0, 0.001, 0.0011, 0.01, 0.05, 0.1, 3.0, 0.0005]

    async def under_load() -> None:
        written = samples(generate_latest(batched)).get(("n_total", ()), 0)
        for seconds in observations:
            pending.observe(ours.labels("get"), seconds)
            pending.observe(ours_plain, seconds)
            pending.inc(ours_count, 2)
            theirs.labels("get").observe(seconds)
            theirs_plain.observe(seconds)
            theirs_count.inc(2)
        assert samples(generate_latest(batched))[("n_total", ())] == written  # not yet written
        await asyncio.sleep(FLUSH_SECONDS * 2)  # the loop writes the batch by itself

    asyncio.run(under_load())
    assert samples(generate_latest(batched)) == pytest.approx(samples(generate_latest(direct)))

    async def left_pending() -> None:  # a batch whose loop ends before its timer fires
        pending.inc(ours_count)

    asyncio.run(left_pending())
    asyncio.run(under_load())  # a new loop: its updates are written by its own timer
    theirs_count.inc()  # the one left pending, written with them
    assert samples(generate_latest(batched)) == pytest.approx(samples(generate_latest(direct)))
    pending.inc(ours_count)  # outside an event loop (a WSGI thread): written at once
    assert samples(generate_latest(batched))[("n_total", ())] == 4 * len(observations) + 2
