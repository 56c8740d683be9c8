"""The lookup runner alone: the same rules on its sync face (WSGI, the command line) and its
async face (ASGI, the proxy) — deadline, bound, cache, observers, what counts as an answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cqrs_sso_middleware import Account, Identity
from cqrs_sso_middleware.core.protocol import LookupFailed, LookupResult, LookupReturned
from cqrs_sso_middleware.lookups.runner import LookupRunner

from .helpers import wait_until

GITA = Identity(email="gp.user@nhs.net", subject="s", issuer="i", object_id="oid-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def ask(runner: LookupRunner, face: str, identity: Identity = GITA) -> LookupResult:
    if face == "sync":
        return runner.call(identity)
    return asyncio.run(runner.acall(identity))


def counting(answer: object) -> tuple[list[Identity], Callable[[Identity], object]]:
    seen: list[Identity] = []

    def lookup(identity: Identity) -> object:
        seen.append(identity)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, lookup


@pytest.fixture
def make_runner() -> Iterator[Callable[..., LookupRunner]]:
    made: list[LookupRunner] = []

    def build(lookup: Any, **options: Any) -> LookupRunner:
        one = LookupRunner(lookup, **{"timeout_seconds": 2.0, "concurrency": 4, **options})
        made.append(one)
        return one

    yield build
    for one in made:
        one.close()


@pytest.mark.parametrize(
    "answer,expected",
    [
        pytest.param(Account("A-1"), LookupReturned(Account("A-1")), id="an-account"),
        pytest.param(None, LookupReturned(None), id="no-account"),
        pytest.param(
            {"account_id": "x"}, LookupFailed("returned dict, expected Account or None"), id="a-dict"
        ),
        pytest.param(True, LookupFailed("returned bool, expected Account or None"), id="true"),
        pytest.param(ConnectionError("db down"), LookupFailed("raised ConnectionError"), id="raised"),
    ],
)
def test_only_an_account_or_none_is_an_answer(
    make_runner: Callable[..., LookupRunner], face: str, answer: object, expected: LookupResult
) -> None:
    _, lookup = counting(answer)
    assert ask(make_runner(lookup), face) == expected


def test_answers_are_not_cached_by_default(make_runner: Callable[..., LookupRunner], face: str) -> None:
    seen, lookup = counting(Account("A-1"))
    one = make_runner(lookup)
    ask(one, face)
    ask(one, face)
    assert len(seen) == 2


def test_cached_answers_are_reused_until_the_ttl(make_runner: Callable[..., LookupRunner], face: str) -> None:
    clock = Clock()
    seen, lookup = counting(None)
    one = make_runner(lookup, cache_seconds=60, clock=clock)
    assert ask(one, face) == ask(one, face) == LookupReturned(None)  # "no account" is an answer too
    assert len(seen) == 1
    clock.now += 61
    ask(one, face)
    assert len(seen) == 2


def test_failures_are_never_cached(make_runner: Callable[..., LookupRunner], face: str) -> None:
    seen, lookup = counting(TimeoutError("slow"))
    one = make_runner(lookup, cache_seconds=60)
    assert isinstance(ask(one, face), LookupFailed)
    assert isinstance(ask(one, face), LookupFailed)
    assert len(seen) == 2


def test_cache_is_keyed_by_email_and_entra_object_id(
    make_runner: Callable[..., LookupRunner], face: str
) -> None:
    seen, lookup = counting(Account("A-1"))
    one = make_runner(lookup, cache_seconds=60)
    ask(one, face)
    ask(one, face, Identity(email=GITA.email, subject="s", issuer="i", object_id="someone-else-now"))
    assert len(seen) == 2


def test_observers_hear_every_call_on_both_faces(make_runner: Callable[..., LookupRunner], face: str) -> None:
    heard: list[tuple[float, bool]] = []
    _, good = counting(Account("A-1"))
    _, bad = counting(ConnectionError())
    ask(make_runner(good, observers=[lambda s, ok: heard.append((s, ok))]), face)
    ask(make_runner(bad, observers=[lambda s, ok: heard.append((s, ok))]), face)
    assert [ok for _, ok in heard] == [True, False]
    assert all(seconds >= 0 for seconds, _ in heard)


def test_a_stuck_lookup_is_a_failure_at_its_deadline(
    make_runner: Callable[..., LookupRunner], face: str
) -> None:
    release = threading.Event()

    def stuck(identity: Identity) -> Account:
        release.wait(30)
        return Account("late")

    one = make_runner(stuck, timeout_seconds=0.2)
    try:
        assert ask(one, face) == LookupFailed("timed out after 0.2s")
    finally:
        release.set()


def test_stuck_lookups_use_up_their_own_places_not_every_sign_in(
    make_runner: Callable[..., LookupRunner],
) -> None:
    """Eight stuck lookups once stopped every sign-in (a pool of eight, no deadline). Now a
    stuck call keeps its place until it really ends, later calls fail at their deadline when
    every place is taken, and once the stuck calls end the runner serves again."""
    release = threading.Event()
    calls: list[str] = []

    def lookup(identity: Identity) -> Account:
        calls.append(identity.email)
        if identity.email.startswith("stuck"):
            release.wait(30)
        return Account("A-1", identity.email)

    one = make_runner(lookup, timeout_seconds=0.3, concurrency=2)
    stuck = [Identity(email=f"stuck{i}@nhs.net", subject="s", issuer="i") for i in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            assert all(isinstance(r, LookupFailed) for r in pool.map(one.call, stuck))
        busy = one.call(GITA)
        assert busy == LookupFailed("2 lookups already running for 0.3s")
        assert GITA.email not in calls  # never sent to an overloaded backend
    finally:
        release.set()
    # Once the stuck calls end, their places come back and the runner serves again.
    wait_until(
        lambda: one.call(GITA) == LookupReturned(Account("A-1", GITA.email)), "the runner to serve again"
    )


def test_async_lookups_are_bounded_too(make_runner: Callable[..., LookupRunner]) -> None:
    running = 0
    most = 0

    async def lookup(identity: Identity) -> Account:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return Account("A-1")

    one = make_runner(lookup, concurrency=3, timeout_seconds=5)

    async def many() -> list[LookupResult]:
        return await asyncio.gather(*(one.acall(GITA) for _ in range(12)))

    assert all(r == LookupReturned(Account("A-1")) for r in asyncio.run(many()))
    assert most == 3


def test_the_cache_holds_under_many_threads(make_runner: Callable[..., LookupRunner]) -> None:
    """WSGI servers call the runner from many threads at once: the bounded cache must never
    raise (a dict changed while another thread evicts) nor lose its bound."""
    identities = [
        Identity(email=f"u{i}@nhs.net", subject="s", issuer="i", object_id=str(i)) for i in range(400)
    ]
    one = make_runner(lambda identity: Account(identity.email), cache_seconds=60, concurrency=8)
    one.cache.capacity = 50
    one.inline = True  # a dictionary read: called on the caller's thread, as csv: is
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for n in range(2000):
                answer = one.call(identities[(offset * 37 + n) % len(identities)])
                assert isinstance(answer, LookupReturned)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(one.cache._entries) <= 50
