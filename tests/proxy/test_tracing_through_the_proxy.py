"""Tracing through the proxy, in process with the SDK's in-memory exporter: the upstream is
sent the proxy's own span as parent (never the client's traceparent as it came), and the
access-log line carries the trace id."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cqrs_sso_middleware import Settings
from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider
from cqrs_sso_middleware.proxy.app import create_proxy_app
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket
from cqrs_sso_middleware.tracing import Tracing

from ..conftest import CLIENT_SECRET, GP_USER
from .conftest import Browser, LegacyServer

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
def traced_proxy(
    provider: NHSmailLikeProvider, legacy: LegacyServer, tmp_path: Path
) -> Iterator[tuple[str, InMemorySpanExporter]]:
    sock = bind_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client_id = f"traced-{secrets.token_hex(4)}"
    provider.clients[client_id] = DemoClient(client_id, CLIENT_SECRET, (f"{url}/oauth2/callback",))
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("email,account_id\ngp.user@nhs.net,CQRS-0001\n")
    settings = Settings(
        issuer=provider.issuer,
        client_id=client_id,
        client_secret=CLIENT_SECRET,
        secret_keys=[secrets.token_urlsafe(32)],
        base_url=url,
        account_lookup=f"csv:{accounts}",
        upstream=legacy.url,
    )
    exporter = InMemorySpanExporter()
    spans = TracerProvider()
    spans.add_span_processor(SimpleSpanProcessor(exporter))
    server = BackgroundASGIServer(create_proxy_app(settings, tracing=Tracing(spans)), sock).start()
    yield url, exporter
    server.stop()
    spans.shutdown()


def test_the_upstream_continues_the_proxys_span_and_the_access_log_names_the_trace(
    traced_proxy: tuple[str, InMemorySpanExporter],
    make_browser: Callable[[str], Browser],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, exporter = traced_proxy
    browser = make_browser(url)
    assert browser.sign_in(GP_USER).status_code == 303
    caplog.set_level(logging.INFO, logger="cqrs_sso.access")
    seen = browser.get("/echo", headers={"traceparent": TRACEPARENT}).json()
    (server,) = [
        span
        for span in exporter.get_finished_spans()
        if span.kind == SpanKind.SERVER and format(span.context.trace_id, "032x") == CLIENT_TRACE
    ]
    assert seen["headers"]["traceparent"] == f"00-{CLIENT_TRACE}-{format(server.context.span_id, '016x')}-01"
    assert server.attributes["http.response.status_code"] == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cqrs_sso.access"]
    assert any(line["path"] == "/echo" and line.get("trace_id") == CLIENT_TRACE for line in lines)
