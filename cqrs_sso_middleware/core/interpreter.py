"""The one effect loop: ``run_sync`` (WSGI, the CLI, tests) and ``run_async`` (ASGI, the proxy).

A flow yields effects; a *performer* carries each out and the result is sent back, until
the flow returns its outcome. Dispatch is a ``match`` over the closed ``Effect`` union:
an effect nobody handles is a ``TypeError`` at once (and a type error before that: mypy
checks the match is exhaustive), never a silent success. The sync and async loops are the
same lines with and without ``await`` (the httpcore habit), so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Never, NoReturn, Protocol, TypeVar

from .protocol import (
    Effect,
    EffectResult,
    HttpCall,
    HttpResult,
    LookUpAccount,
    LookupResult,
    ReadForm,
    StoreClaim,
    StoreDelete,
    StoreEffect,
    StoreGet,
    StoreMembers,
    StorePing,
    StorePut,
    StoreResult,
)

T = TypeVar("T")


class SyncPerformer(Protocol):
    """What carries out effects for ``run_sync``; one method per kind of effect."""

    def http(self, call: HttpCall) -> HttpResult: ...

    def read_form(self, effect: ReadForm) -> bytes | None: ...

    def look_up(self, effect: LookUpAccount) -> LookupResult: ...

    def store(self, effect: StoreEffect) -> StoreResult: ...


class AsyncPerformer(Protocol):
    """What carries out effects for ``run_async``."""

    def http(self, call: HttpCall) -> Awaitable[HttpResult]: ...

    def read_form(self, effect: ReadForm) -> Awaitable[bytes | None]: ...

    def look_up(self, effect: LookUpAccount) -> Awaitable[LookupResult]: ...

    def store(self, effect: StoreEffect) -> Awaitable[StoreResult]: ...


def unknown_effect(effect: Never) -> NoReturn:
    """The last case of a ``match`` over a closed union (``typing.assert_never`` with a
    ``TypeError``): once every member has its case, ``effect`` is ``Never`` here, so a
    member without one is a mypy error. At run time, something outside the union."""
    raise TypeError(f"no performer for the effect {effect!r}")


def _refused(effect: object) -> NoReturn:
    raise TypeError(f"no performer for the effect {effect!r}")


def perform_sync(effect: Effect, performer: SyncPerformer) -> EffectResult:
    match effect:
        case HttpCall():
            return performer.http(effect)
        case ReadForm():
            return performer.read_form(effect)
        case LookUpAccount():
            return performer.look_up(effect)
        case StoreGet() | StorePut() | StoreDelete() | StoreClaim() | StoreMembers() | StorePing():
            return performer.store(effect)
        case _:
            unknown_effect(effect)


async def perform_async(effect: Effect, performer: AsyncPerformer) -> EffectResult:
    match effect:
        case HttpCall():
            return await performer.http(effect)
        case ReadForm():
            return await performer.read_form(effect)
        case LookUpAccount():
            return await performer.look_up(effect)
        case StoreGet() | StorePut() | StoreDelete() | StoreClaim() | StoreMembers() | StorePing():
            return await performer.store(effect)
        case _:
            unknown_effect(effect)


def run_sync(flow: Generator[Effect, Any, T], performer: SyncPerformer) -> T:
    """Drive ``flow`` to what it returns (a request's outcome, or any step of the core),
    performing each effect as it is yielded."""
    try:
        effect = next(flow)
        while True:
            effect = flow.send(perform_sync(effect, performer))
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(flow: Generator[Effect, Any, T], performer: AsyncPerformer) -> T:
    """``run_sync`` for an event loop: the same loop, each effect awaited."""
    try:
        effect = next(flow)
        while True:
            effect = flow.send(await perform_async(effect, performer))
    except StopIteration as done:
        result: T = done.value
        return result


class StoreOnly:
    """A performer for steps that only touch the session store (the command line, tests):
    any other effect is a ``TypeError``."""

    def __init__(self, store: Callable[[StoreEffect], StoreResult]) -> None:
        self.store = store

    def http(self, call: HttpCall) -> HttpResult:
        _refused(call)

    def read_form(self, effect: ReadForm) -> bytes | None:
        _refused(effect)

    def look_up(self, effect: LookUpAccount) -> LookupResult:
        _refused(effect)
