"""The runtime's resources as the interpreter's performer (``core/interpreter.py``): the
provider's HTTP calls, the account lookup and the session store, each watched
(``watching``) only when observers or tracing are on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core.protocol import (
    HttpCall,
    HttpReply,
    HttpResult,
    LookUpAccount,
    LookupFailed,
    LookupResult,
    ReadForm,
    StoreEffect,
    StoreReply,
    StoreResult,
)
from ..watching import STORE_COMMANDS, lookup_outcome, watching, with_trace_headers

if TYPE_CHECKING:
    from ...runtime import Runtime


class AsyncEffects:
    """The performer of one face. A driver subclasses it to read its request's body;
    without one, there is no body."""

    __slots__ = ("runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def http(self, call: HttpCall) -> HttpResult:
        runtime = self.runtime
        observers = runtime.observers.provider
        if not observers and runtime.tracing is None:
            return await runtime.provider_acall(call)
        with watching(runtime, observers, f"provider {call.purpose}", call.purpose, client=True) as watch:
            if runtime.tracing is not None:
                call = with_trace_headers(runtime, call)
            result = await runtime.provider_acall(call)
            watch.ok = isinstance(result, HttpReply)
        return result

    async def read_form(self, effect: ReadForm) -> bytes | None:
        return None

    async def look_up(self, effect: LookUpAccount) -> LookupResult:
        runtime = self.runtime
        if runtime.tracing is None:
            return await runtime.lookups.acall(effect.identity)
        with watching(runtime, (), "account lookup", "lookup") as watch:
            result = await runtime.lookups.acall(effect.identity)
            watch.ok = not isinstance(result, LookupFailed)
            if watch.span is not None:
                watch.span.set_attribute("cqrs_sso.lookup.result", lookup_outcome(result))
        return result

    async def store(self, effect: StoreEffect) -> StoreResult:
        runtime = self.runtime
        observers = runtime.observers.store
        if not observers and runtime.tracing is None:
            return await runtime.store.aperform(effect)
        command = STORE_COMMANDS[type(effect)]
        with watching(runtime, observers, f"store {command}", command) as watch:
            result = await runtime.store.aperform(effect)
            watch.ok = isinstance(result, StoreReply)
        return result
