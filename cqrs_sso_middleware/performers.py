"""The runtime's resources as the interpreter's performers (``core/interpreter.py``): one
for the WSGI face, one for the ASGI face. Store commands and provider calls are timed for
the runtime's observers (metrics), and they and the account lookup are traced (spans, and
``traceparent`` sent to the provider), only when those are on: otherwise no clock is read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .core.protocol import (
    HttpCall,
    HttpReply,
    HttpResult,
    LookUpAccount,
    LookupFailed,
    LookupResult,
    LookupReturned,
    ReadForm,
    StoreClaim,
    StoreDelete,
    StoreEffect,
    StoreGet,
    StoreMembers,
    StorePing,
    StorePut,
    StoreReply,
    StoreResult,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .observers import TimingObserver
    from .runtime import Runtime


_STORE_COMMANDS = {
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
def _watching(
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


def _with_trace_headers(runtime: Runtime, call: HttpCall) -> HttpCall:
    """The provider call carrying the current span's ``traceparent`` (W3C Trace Context)."""
    assert runtime.tracing is not None
    return replace(call, headers=(*call.headers, *runtime.tracing.outgoing_headers()))


def _lookup_outcome(result: LookupResult) -> str:
    if isinstance(result, LookupReturned):
        return "found" if result.account is not None else "none"
    return "failed"


class SyncEffects:
    """The runtime's resources as the interpreter's ``SyncPerformer``. A driver subclasses
    it to read its request's body; without one, there is no body."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def http(self, call: HttpCall) -> HttpResult:
        runtime = self.runtime
        observers = runtime.observers.provider
        if not observers and runtime.tracing is None:
            return runtime.provider_http.call(call)
        with _watching(runtime, observers, f"provider {call.purpose}", call.purpose, client=True) as watch:
            if runtime.tracing is not None:
                call = _with_trace_headers(runtime, call)
            result = runtime.provider_http.call(call)
            watch.ok = isinstance(result, HttpReply)
        return result

    def read_form(self, effect: ReadForm) -> bytes | None:
        return None

    def look_up(self, effect: LookUpAccount) -> LookupResult:
        runtime = self.runtime
        if runtime.tracing is None:
            return runtime.lookups.call(effect.identity)
        with _watching(runtime, (), "account lookup", "lookup") as watch:
            result = runtime.lookups.call(effect.identity)
            watch.ok = not isinstance(result, LookupFailed)
            if watch.span is not None:
                watch.span.set_attribute("cqrs_sso.lookup.result", _lookup_outcome(result))
        return result

    def store(self, effect: StoreEffect) -> StoreResult:
        runtime = self.runtime
        observers = runtime.observers.store
        if not observers and runtime.tracing is None:
            return runtime.store.perform(effect)
        command = _STORE_COMMANDS[type(effect)]
        with _watching(runtime, observers, f"store {command}", command) as watch:
            result = runtime.store.perform(effect)
            watch.ok = isinstance(result, StoreReply)
        return result


class AsyncEffects:
    """``SyncEffects`` for an event loop (the interpreter's ``AsyncPerformer``)."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def http(self, call: HttpCall) -> HttpResult:
        runtime = self.runtime
        observers = runtime.observers.provider
        if not observers and runtime.tracing is None:
            return await runtime.provider_call(call)
        with _watching(runtime, observers, f"provider {call.purpose}", call.purpose, client=True) as watch:
            if runtime.tracing is not None:
                call = _with_trace_headers(runtime, call)
            result = await runtime.provider_call(call)
            watch.ok = isinstance(result, HttpReply)
        return result

    async def read_form(self, effect: ReadForm) -> bytes | None:
        return None

    async def look_up(self, effect: LookUpAccount) -> LookupResult:
        runtime = self.runtime
        if runtime.tracing is None:
            return await runtime.lookups.acall(effect.identity)
        with _watching(runtime, (), "account lookup", "lookup") as watch:
            result = await runtime.lookups.acall(effect.identity)
            watch.ok = not isinstance(result, LookupFailed)
            if watch.span is not None:
                watch.span.set_attribute("cqrs_sso.lookup.result", _lookup_outcome(result))
        return result

    async def store(self, effect: StoreEffect) -> StoreResult:
        runtime = self.runtime
        observers = runtime.observers.store
        if not observers and runtime.tracing is None:
            return await runtime.store.aperform(effect)
        command = _STORE_COMMANDS[type(effect)]
        with _watching(runtime, observers, f"store {command}", command) as watch:
            result = await runtime.store.aperform(effect)
            watch.ok = isinstance(result, StoreReply)
        return result
