"""Metrics of an app that embeds the middleware, through both drivers: one ``SSOMetrics``
hears sign-ins, lookups, store commands and provider calls, and the middleware serves it
at /metrics to the ``metrics_allow`` networks only, before any sign-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from cqrs_sso_middleware.metrics import SSOMetrics

from ..conftest import GP_USER, NEW_USER
from ..helpers import AppClient, ASGIClient, Journey, WSGIClient
from .test_logout import click_sign_out

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: AppClient, address: str) -> tuple[int, str]:
    """GET /metrics as a client at ``address`` (the drivers' REMOTE_ADDR / scope client)."""
    if isinstance(client, WSGIClient):
        app = webtest.TestApp(client.middleware, extra_environ={"REMOTE_ADDR": address})
        reply: Any = app.get("/metrics", expect_errors=True)
        return reply.status_int, reply.text
    assert isinstance(client, ASGIClient)
    with TestClient(client.middleware, client=(address, 40000), follow_redirects=False) as other:
        answer = other.get("/metrics")
        return answer.status_code, answer.text


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def measured(make_client: Callable[..., AppClient], make_journey: Callable[..., Journey]) -> Journey:
    return make_journey(make_client(metrics=SSOMetrics()))


def test_sign_ins_lookups_store_and_provider_calls_are_counted(measured: Journey) -> None:
    assert measured.sign_in(GP_USER).status == 303
    measured.app.clear_cookies()
    assert measured.sign_in(NEW_USER).status == 403
    status, text = scrape(measured.app, "127.0.0.1")
    assert status == 200
    found = samples(text)
    assert found[("cqrs_sso_sign_ins_total", (("outcome", "success"),))] == 1
    assert found[("cqrs_sso_sign_ins_total", (("outcome", "no_account"),))] == 1
    assert found[("cqrs_sso_sign_ins_total", (("outcome", "started"),))] == 2
    assert found[("cqrs_sso_lookup_seconds_count", (("result", "ok"),))] == 2
    assert found[("cqrs_sso_provider_seconds_count", (("endpoint", "token"), ("result", "ok")))] == 2
    assert found[("cqrs_sso_provider_seconds_count", (("endpoint", "metadata"), ("result", "ok")))] >= 1
    assert found[("cqrs_sso_provider_seconds_count", (("endpoint", "jwks"), ("result", "ok")))] >= 1
    assert found[("cqrs_sso_store_seconds_count", (("command", "claim"), ("result", "ok")))] == 2
    assert found[("cqrs_sso_store_info", (("kind", "cookie"),))] == 1
    # Only the proxy has upstream figures; no label names a person.
    assert not any(name.startswith("cqrs_sso_upstream") for name, _ in found)
    assert GP_USER not in text and NEW_USER not in text


def test_sign_outs_and_refusals_are_counted(
    make_client: Callable[..., AppClient], make_journey: Callable[..., Journey]
) -> None:
    metrics = SSOMetrics()
    journey = make_journey(
        make_client(metrics=metrics, access_rules=[{"paths": ["/admin/**"], "roles": ["CQRS.Admin"]}])
    )
    journey.sign_in(GP_USER)
    assert journey.open("/admin/x").status == 403
    click_sign_out(journey)
    found = samples(scrape(journey.app, "127.0.0.1")[1])
    assert found[("cqrs_sso_access_refused_total", (("reason", "role"),))] == 1
    assert found[("cqrs_sso_sessions_ended_total", (("cause", "signed_out"),))] == 1


@pytest.mark.parametrize("address", ["10.1.2.3", "192.0.2.9"])
def test_metrics_are_not_served_to_other_addresses(measured: Journey, address: str) -> None:
    status, text = scrape(measured.app, address)
    assert status == 404 and "cqrs_sso" not in text


def test_metrics_path_is_the_apps_own_without_metrics(make_journey: Callable[..., Journey]) -> None:
    journey = make_journey()
    status, _ = scrape(journey.app, "127.0.0.1")
    assert status == 303  # no SSOMetrics given: /metrics is a protected path like any other
