"""The one effect loop, alone: every effect goes to its performer, and an effect nobody
handles fails loudly (it once fell through to the store, which answered it as a ping)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cqrs_sso_middleware.core.identity import Identity
from cqrs_sso_middleware.core.interpreter import StoreOnly, run_async, run_sync
from cqrs_sso_middleware.core.protocol import (
    HttpCall,
    HttpReply,
    LookUpAccount,
    LookupReturned,
    ReadForm,
    StoreGet,
    StorePing,
    StoreReply,
)
from cqrs_sso_middleware.stores import MemoryStore


@dataclass(frozen=True)
class Unheard:
    """An effect added to the core but to no performer."""


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def http(self, call: HttpCall) -> HttpReply:
        self.seen.append("http")
        return HttpReply(200, b"{}")

    def read_form(self, effect: ReadForm) -> bytes | None:
        self.seen.append("read_form")
        return b"a=1"

    def look_up(self, effect: LookUpAccount) -> LookupReturned:
        self.seen.append("look_up")
        return LookupReturned(None)

    def store(self, effect: Any) -> StoreReply:
        self.seen.append("store")
        return StoreReply(True)


class AsyncRecorder(Recorder):
    async def http(self, call: HttpCall) -> HttpReply:  # type: ignore[override]
        return super().http(call)

    async def read_form(self, effect: ReadForm) -> bytes | None:  # type: ignore[override]
        return super().read_form(effect)

    async def look_up(self, effect: LookUpAccount) -> LookupReturned:  # type: ignore[override]
        return super().look_up(effect)

    async def store(self, effect: Any) -> StoreReply:  # type: ignore[override]
        return super().store(effect)


def every_effect() -> Generator[Any, Any, list[object]]:
    results = [
        (yield HttpCall("GET", "https://idp.example/x", "metadata")),
        (yield ReadForm()),
        (yield LookUpAccount(Identity(email="a@nhs.net", subject="s", issuer="i"))),
        (yield StoreGet("k")),
        (yield StorePing()),
    ]
    return results


def unheard() -> Generator[Any, Any, str]:
    yield Unheard()
    return "succeeded"


def test_each_effect_goes_to_its_performer_on_both_faces() -> None:
    sync, asynchronous = Recorder(), AsyncRecorder()
    first = run_sync(every_effect(), sync)
    second = asyncio.run(run_async(every_effect(), asynchronous))
    assert sync.seen == asynchronous.seen == ["http", "read_form", "look_up", "store", "store"]
    assert first == second


def test_an_unknown_effect_is_a_type_error_not_a_success() -> None:
    with pytest.raises(TypeError, match="no performer for the effect Unheard"):
        run_sync(unheard(), Recorder())
    with pytest.raises(TypeError, match="no performer for the effect Unheard"):
        asyncio.run(run_async(unheard(), AsyncRecorder()))
    with pytest.raises(TypeError):
        MemoryStore().perform(Unheard())  # type: ignore[arg-type]  # the store too: not a ping


def test_a_store_only_step_refuses_any_other_effect() -> None:
    store = MemoryStore()
    assert run_sync(iter_store(), StoreOnly(store.perform)) == StoreReply(None)
    with pytest.raises(TypeError):
        run_sync(every_effect(), StoreOnly(store.perform))


def iter_store() -> Generator[Any, Any, object]:
    return (yield StoreGet("absent"))


MATCH_WITHOUT_STORE_PING = """
from cqrs_sso_middleware.core.interpreter import unknown_effect
from cqrs_sso_middleware.core.protocol import (
    Effect, HttpCall, LookUpAccount, ReadForm, StoreClaim, StoreDelete, StoreGet, StoreMembers, StorePut,
)

def kind(effect: Effect) -> str:
    match effect:
        case HttpCall() | ReadForm() | LookUpAccount():
            return "not the store"
        case StoreGet() | StorePut() | StoreDelete() | StoreClaim() | StoreMembers():
            return "the store"
        case _:
            unknown_effect(effect)
"""


def test_mypy_reports_a_match_that_forgets_an_effect(tmp_path: Path) -> None:
    """``unknown_effect`` takes ``Never``: a match over the effect union (the interpreter's,
    the stores', the Redis plan's) that leaves one out does not type-check."""
    from mypy import api

    (tmp_path / "forgets.py").write_text(MATCH_WITHOUT_STORE_PING, encoding="utf-8")
    complete = MATCH_WITHOUT_STORE_PING.replace("StorePut,\n", "StorePut, StorePing,\n").replace(
        "StoreMembers():", "StoreMembers() | StorePing():"
    )
    (tmp_path / "complete.py").write_text(complete, encoding="utf-8")
    options = ["--follow-imports=silent", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"]
    out, _, status = api.run([*options, str(tmp_path / "forgets.py")])
    assert status == 1 and 'has incompatible type "StorePing"' in out, out
    out, _, status = api.run([*options, str(tmp_path / "complete.py")])
    assert status == 0, out
