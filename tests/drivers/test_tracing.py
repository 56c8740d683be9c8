"""OpenTelemetry tracing through both drivers, with the SDK's in-memory exporter: a server
span continued from a signed-in client's traceparent (an anonymous one's is a link, never
the trace id), child spans for the provider calls, the lookup and the store, traceparent
sent on to the provider, the trace id in the audit log, and no personal data in any span."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cqrs_sso_middleware.core.protocol import HttpCall
from cqrs_sso_middleware.tracing import Tracing

from ..conftest import GP_USER, PASSWORD
from ..helpers import HTML, AppClient, Journey

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(
    make_client: Callable[..., AppClient],
    make_journey: Callable[..., Journey],
    exporter: InMemorySpanExporter,
) -> Iterator[tuple[Journey, list[tuple[str, str]]]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = make_client(tracing=Tracing(provider))
    runtime = client.middleware.runtime
    sent: list[tuple[str, str]] = []
    # What reaches the provider's HTTP client: the headers of every call.
    sync_call, async_call = runtime.provider_call, runtime.provider_acall

    def recording(call: HttpCall) -> Any:
        sent.extend(call.headers)
        return sync_call(call)

    async def arecording(call: HttpCall) -> Any:
        sent.extend(call.headers)
        return await async_call(call)

    runtime.provider_call = recording
    runtime.provider_acall = arecording
    yield make_journey(client), sent
    provider.shutdown()


def in_trace(spans: tuple[ReadableSpan, ...], trace_id: str) -> list[ReadableSpan]:
    return [span for span in spans if format(span.context.trace_id, "032x") == trace_id]


def test_a_signed_in_request_continues_the_clients_trace_with_a_server_span(
    traced: tuple[Journey, list[tuple[str, str]]], exporter: InMemorySpanExporter
) -> None:
    journey, _ = traced
    journey.sign_in(GP_USER)
    reply = journey.app.get("/messages", {**HTML, "traceparent": TRACEPARENT})
    assert reply.status == 200
    (server,) = in_trace(exporter.get_finished_spans(), CLIENT_TRACE)
    assert server.kind == SpanKind.SERVER and server.name == "GET"
    assert server.parent is not None and format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert server.attributes["http.response.status_code"] == 200


def test_an_anonymous_clients_traceparent_is_a_link_not_the_trace_id(
    traced: tuple[Journey, list[tuple[str, str]]], exporter: InMemorySpanExporter
) -> None:
    """Without a session, a client could otherwise choose the trace id its audit lines
    carry, and file its requests under somebody else's trace."""
    journey, _ = traced
    reply = journey.app.get("/messages", {**HTML, "traceparent": TRACEPARENT})
    assert reply.status == 303
    assert in_trace(exporter.get_finished_spans(), CLIENT_TRACE) == []
    (server,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert server.parent is None
    (link,) = server.links
    assert format(link.context.trace_id, "032x") == CLIENT_TRACE
    assert format(link.context.span_id, "016x") == CLIENT_SPAN


def test_the_callback_has_child_spans_for_the_provider_the_lookup_and_the_store(
    traced: tuple[Journey, list[tuple[str, str]]],
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    journey, sent = traced
    authorize = journey.start()
    answer = journey.provider_login(authorize, GP_USER, PASSWORD)
    caplog.set_level(logging.INFO, logger="cqrs_sso.audit")
    exporter.clear()
    back = journey.app.get(answer.headers["location"], {**HTML, "traceparent": TRACEPARENT})
    assert back.status == 303
    # The callback carries no session yet: its own trace, the client's as a link.
    (server,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    trace_id = format(server.context.trace_id, "032x")
    assert trace_id != CLIENT_TRACE and format(server.links[0].context.trace_id, "032x") == CLIENT_TRACE
    spans = in_trace(exporter.get_finished_spans(), trace_id)
    names = {span.name for span in spans}
    assert {"GET", "provider token", "account lookup", "store claim"} <= names
    for span in spans:
        if span is not server:
            assert span.parent is not None and span.parent.span_id == server.context.span_id
    token = next(span for span in spans if span.name == "provider token")
    assert token.kind == SpanKind.CLIENT
    # The provider was sent the token call's own span as parent (W3C Trace Context).
    traceparents = [value for name, value in sent if name == "traceparent"]
    # (the flags of a new trace are the SDK's: sampled, and "random" in Trace Context level 2)
    assert any(t.startswith(f"00-{trace_id}-{format(token.context.span_id, '016x')}-") for t in traceparents)
    # The audit line of the sign-in carries the trace id.
    events = [json.loads(record.getMessage()) for record in caplog.records if record.name == "cqrs_sso.audit"]
    signed_in = next(event for event in events if event["event"] == "sign_in_succeeded")
    assert signed_in["trace_id"] == trace_id
    # No personal data in any span: not the email, the account or the code.
    for span in exporter.get_finished_spans():
        text = json.dumps(dict(span.attributes or {})) + span.name
        assert GP_USER not in text and "CQRS-0001" not in text and "code=" not in text


def test_without_tracing_no_span_is_made(
    make_journey: Callable[..., Journey], exporter: InMemorySpanExporter
) -> None:
    journey = make_journey()
    assert journey.app.middleware.runtime.tracing is None
    journey.sign_in(GP_USER)
    assert exporter.get_finished_spans() == ()


def test_otel_variables_switch_tracing_on_and_off() -> None:
    """The standard variables decide, in a process of its own (the SDK's global provider can
    be set once per process): console spans with OTEL_TRACES_EXPORTER=console, none with
    OTEL_SDK_DISABLED=true or with no variable at all."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from cqrs_sso_middleware.tracing import Tracing\n"
        "tracing = Tracing.from_environment()\n"
        "print('on' if tracing else 'off')\n"
        "if tracing:\n"
        "    with tracing.span('store get'):\n"
        "        pass\n"
    )

    def run(**variables: str) -> str:
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **variables}
        done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    console = run(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="cqrs-test")
    assert console.startswith("on") and '"name": "store get"' in console and "cqrs-test" in console
    assert run().strip() == "off"
    assert run(OTEL_TRACES_EXPORTER="console", OTEL_SDK_DISABLED="true").strip() == "off"
    assert run(OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9").strip() == "off"
    # An exporter this package does not set up: named in a warning, spans sent over OTLP
    # (no span is made here, so nothing is sent anywhere).
    probe = "from cqrs_sso_middleware.tracing import Tracing; print(Tracing.from_environment())"
    unknown = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": os.environ.get("PATH", ""), "OTEL_TRACES_EXPORTER": "jaeger"},
        capture_output=True,
        text=True,
    )
    assert unknown.stdout.startswith("<cqrs_sso_middleware.tracing.Tracing")
    assert "OTEL_TRACES_EXPORTER=jaeger is not one this package sets up" in unknown.stderr
