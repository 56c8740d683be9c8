"""Watching an effect being performed: timed for the runtime's observers (metrics) and
traced (a span, and ``traceparent`` sent to the provider). The performers (``performers/_async/effects.py``)
watch only when observers or tracing are on: otherwise no clock is read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..core.protocol import (
    HttpCall,
    LookupResult,
    LookupReturned,
    StoreClaim,
    StoreDelete,
    StoreGet,
    StoreMembers,
    StorePing,
    StorePut,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ..observers import TimingObserver
    from ..runtime import Runtime


STORE_COMMANDS = {
    StoreGet: "get",
    StorePut: "put",
    StoreDelete: "delete",
    StoreClaim: "claim",
    StoreMembers: "members",
    StorePing: "ping",
}


class _Watch:
    """One effect being timed (observers) and traced (a span); ``ok`` is set by the caller."""

    __slots__ = ("ok", "span")

    def __init__(self, span: Span | None) -> None:
        self.ok = False
        self.span = span


@contextmanager
def watching(
    runtime: Runtime, observers: tuple[TimingObserver, ...], name: str, what: str, client: bool = False
) -> Iterator[_Watch]:
    tracing = runtime.tracing
    span_context = (
        tracing.span(name, {"cqrs_sso.operation": what}, client=client) if tracing else nullcontext()
    )
    started = time.perf_counter()
    with span_context as span:
        watch = _Watch(span)
        yield watch
        if span is not None and not watch.ok:
            span.set_status(_error_status())
    seconds = time.perf_counter() - started
    for observe in observers:
        observe(what, seconds, watch.ok)


def _error_status() -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR)


def with_trace_headers(runtime: Runtime, call: HttpCall) -> HttpCall:
    """The provider call carrying the current span's ``traceparent`` (W3C Trace Context)."""
    assert runtime.tracing is not None
    return replace(call, headers=(*call.headers, *runtime.tracing.outgoing_headers()))


def lookup_outcome(result: LookupResult) -> str:
    if isinstance(result, LookupReturned):
        return "found" if result.account is not None else "none"
    return "failed"
