"""The server-side stores perform every store effect the same way, sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import Any

import pytest

from cqrs_sso_middleware.core.identity import Account, Identity, User
from cqrs_sso_middleware.core.interpreter import StoreOnly, run_sync
from cqrs_sso_middleware.core.protocol import (
    StoreClaim,
    StoreDelete,
    StoreEffect,
    StoreFailed,
    StoreGet,
    StoreMembers,
    StorePing,
    StorePut,
    StoreReply,
)
from cqrs_sso_middleware.core.sessions.keeper import SessionKeeper
from cqrs_sso_middleware.core.sessions.session import (
    NOTICE_GRACE_SECONDS,
    Deployment,
    Session,
    SessionTimeouts,
)
from cqrs_sso_middleware.settings.schema import display_url
from cqrs_sso_middleware.settings.sessions import SessionSettings
from cqrs_sso_middleware.stores import MemoryStore, StoreBackend
from cqrs_sso_middleware.stores.redis import RedisStore

from .conftest import REDIS_URL, topology_settings
from .helpers import completes

DEPLOYMENT = Deployment("https://login.example/tenant/v2.0", "app-a")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis", "redis-tls", "sentinel", "cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[StoreBackend, str]]:
    """Every store, and Redis in every topology (tests/redis_servers.py)."""
    if request.param == "memory":
        yield MemoryStore(), "t:"
        return
    values = topology_settings(request.param, request)
    store = RedisStore(SessionSettings(**values))
    yield store, values["session_key_prefix"]
    store.close()


@pytest.fixture(params=["sync", "async"])
def perform(
    request: pytest.FixtureRequest, backend: tuple[StoreBackend, str]
) -> Iterator[Callable[[StoreEffect], Any]]:
    store, _ = backend
    if request.param == "sync":
        yield lambda effect: _value(store.perform(effect))
        return
    loop = asyncio.new_event_loop()
    yield lambda effect: _value(loop.run_until_complete(store.aperform(effect)))
    loop.run_until_complete(store.aclose())
    loop.close()


def _value(result: StoreReply | StoreFailed) -> Any:
    assert isinstance(result, StoreReply), result
    return result.value


def test_put_get_delete(perform: Callable[[StoreEffect], Any], backend: tuple[StoreBackend, str]) -> None:
    _, p = backend
    assert perform(StoreGet(p + "a")) is None
    assert perform(StorePut(p + "a", b"record", 60)) is True
    assert perform(StoreGet(p + "a")) == b"record"
    assert perform(StoreDelete((p + "a",))) == 1
    assert perform(StoreGet(p + "a")) is None
    assert perform(StorePing())  # Redis says what it reaches: a topology, a primary


def test_claim_is_first_use_only(
    perform: Callable[[StoreEffect], Any], backend: tuple[StoreBackend, str]
) -> None:
    _, p = backend
    assert perform(StoreClaim(p + "state", 60)) is True
    assert perform(StoreClaim(p + "state", 60)) is False


def test_index_lists_and_forgets_members(
    perform: Callable[[StoreEffect], Any], backend: tuple[StoreBackend, str]
) -> None:
    _, p = backend
    for key in ("s1", "s2"):
        perform(StorePut(p + key, b"r", 60, (p + "user",), 600))
    assert perform(StoreMembers(p + "user")) == (p + "s1", p + "s2")
    perform(StoreDelete((p + "s1",), (p + "user",)))
    assert perform(StoreMembers(p + "user")) == (p + "s2",)


def test_memory_store_expires_entries() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    store.perform(StorePut("k", b"v", 10))
    store.perform(StoreClaim("state", 5))
    clock.now += 5
    assert _value(store.perform(StoreClaim("state", 5))) is True  # the old claim has expired
    clock.now += 4
    assert _value(store.perform(StoreGet("k"))) == b"v"
    clock.now += 1
    assert _value(store.perform(StoreGet("k"))) is None
    assert len(store) == 0


def test_redis_ttl_is_set(redis_prefix: str) -> None:
    import redis

    store = RedisStore.from_url(REDIS_URL)
    store.perform(StorePut(redis_prefix + "k", b"v", 30, (redis_prefix + "u",), 600))
    client = redis.Redis.from_url(REDIS_URL)
    assert 0 < client.ttl(redis_prefix + "k") <= 30  # type: ignore[operator]
    assert 0 < client.ttl(redis_prefix + "u") <= 600  # type: ignore[operator]
    client.close()
    store.close()


def test_unreachable_redis_is_a_failure_not_an_exception() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", timeout_seconds=0.5)
    result = completes(lambda: store.perform(StoreGet("k")), "a read from a Redis nobody runs")
    assert isinstance(result, StoreFailed) and result.reason.startswith("redis: ")
    assert isinstance(asyncio.run(store.aperform(StorePing())), StoreFailed)


def test_concurrent_reads_share_one_mget_and_each_gets_its_own_value(redis_prefix: str) -> None:
    store = RedisStore.from_url(REDIS_URL)
    keys = [f"{redis_prefix}r{i}" for i in range(20)]
    for i, key in enumerate(keys[::2]):
        store.perform(StorePut(key, b"v%d" % i, 30, (), 30))
    calls: list[int] = []

    async def scenario() -> list[StoreReply | StoreFailed]:
        send = store._mget_on_own_connection

        async def counted(names: list[str]) -> Any:
            calls.append(len(names))
            return await send(names)

        store._mget_on_own_connection = counted  # type: ignore[method-assign]
        try:
            return await asyncio.gather(*(store.aperform(StoreGet(key)) for key in keys))
        finally:
            await store.aclose()

    results = asyncio.run(scenario())
    assert calls == [20]  # one round trip for all twenty requests
    assert [_value(r) for r in results] == [b"v%d" % (i // 2) if i % 2 == 0 else None for i in range(20)]


def test_a_failed_batched_read_fails_every_request_in_it() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", timeout_seconds=0.5)

    async def scenario() -> list[StoreReply | StoreFailed]:
        try:
            return await asyncio.gather(*(store.aperform(StoreGet(f"k{i}")) for i in range(5)))
        finally:
            await store.aclose()

    assert all(isinstance(r, StoreFailed) for r in asyncio.run(scenario()))


def run(step: Generator[Any, Any, Any], store: StoreBackend) -> Any:
    """A keeper step against ``store``, through the shipped interpreter."""
    return run_sync(step, StoreOnly(store.perform))


def test_ending_all_of_one_persons_sessions(backend: tuple[StoreBackend, str]) -> None:
    store, prefix = backend
    keeper = SessionKeeper("memory", ["k" * 32], SessionTimeouts(3600, 43200), DEPLOYMENT, prefix)
    now = time.time()
    gita = User(Identity(email="gp.user@nhs.net", subject="s", issuer="i", object_id="oid-1"), Account("A"))
    nia = User(Identity(email="new.user@nhs.net", subject="t", issuer="i", object_id="oid-2"), Account("B"))
    sessions = [Session.start(u, now, DEPLOYMENT) for u in (gita, gita, nia)]
    for session in sessions:
        run(keeper.save(session, now), store)
    assert run(keeper.end_all_of(gita.identity), store) == 2
    ids = [s.session_id for s in sessions]
    assert run(keeper.load(ids[:1], now), store).session is None
    assert run(keeper.load(ids[1:2], now), store).session is None
    assert run(keeper.load(ids[2:], now), store).session.user.email == "new.user@nhs.net"


def test_a_get_beside_a_revocation_mark_finds_nothing(
    perform: Callable[[StoreEffect], Any], backend: tuple[StoreBackend, str]
) -> None:
    _, p = backend
    perform(StorePut(p + "rec", b"record", 60))
    assert perform(StoreGet(p + "rec", p + "mark")) == b"record"
    assert perform(StoreDelete((p + "rec",), (), (p + "mark",), 60)) == 1
    perform(StorePut(p + "rec", b"record", 60))  # the record put back as it was
    assert perform(StoreGet(p + "rec")) == b"record"
    assert perform(StoreGet(p + "rec", p + "mark")) is None


@pytest.mark.parametrize("ending", ["sign_out", "everywhere"])
def test_a_revoked_record_put_back_is_still_refused(backend: tuple[StoreBackend, str], ending: str) -> None:
    """A dump or backup restored after a sign-out (or a replica's older data) holds the
    record again: the mark the ending left, read with every load, still refuses it."""
    store, prefix = backend
    keeper = SessionKeeper("redis://x", ["k" * 32], SessionTimeouts(3600, 43200), DEPLOYMENT, prefix)
    now = time.time()
    gita = User(Identity(email="gp.user@nhs.net", subject="s", issuer="i", object_id="oid-1"), Account("A"))
    session = Session.start(gita, now, DEPLOYMENT)
    run(keeper.save(session, now), store)
    key = keeper.session_key(session.session_id)
    captured = _value(store.perform(StoreGet(key)))
    assert isinstance(captured, bytes)
    if ending == "sign_out":
        run(keeper.end(session), store)
    else:
        assert run(keeper.end_all_of(gita.identity), store) == 1
    assert _value(store.perform(StorePut(key, captured, 3600))) is True  # restored
    assert run(keeper.load([session.session_id], now), store).session is None
    mark = keeper.revocation_mark(key)
    assert _value(store.perform(StoreGet(mark))) == b"1"  # kept as long as the record could live


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(Deployment(DEPLOYMENT.issuer, "app-b"), id="another-client-id"),
        pytest.param(
            Deployment("https://login.example/other/v2.0", DEPLOYMENT.client_id), id="another-issuer"
        ),
    ],
)
def test_another_deployment_sharing_the_store_and_prefix_finds_nothing(
    backend: tuple[StoreBackend, str], other: Deployment
) -> None:
    """Two services on one Redis with the default key prefix and the same secret_keys: the
    session id of one is no key at all to the other (the store key digest names the
    deployment), nor are its sid and user indexes."""
    store, prefix = backend
    timeouts = SessionTimeouts(3600, 43200)
    ours = SessionKeeper("redis://x", ["k" * 32], timeouts, DEPLOYMENT, prefix)
    theirs = SessionKeeper("redis://x", ["k" * 32], timeouts, other, prefix)
    now = time.time()
    gita = User(
        Identity(email="gp.user@nhs.net", subject="s", issuer="i", object_id="o", claims={"sid": "p1"}),
        Account("A"),
    )
    session = Session.start(gita, now, DEPLOYMENT)
    run(ours.save(session, now), store)
    assert run(ours.load([session.session_id], now), store).session is not None
    assert run(theirs.load([session.session_id], now), store).session is None
    assert run(theirs.end_indexed(theirs.sid_index("i", "p1")), store) == 0
    assert run(theirs.end_all_of(gita.identity), store) == 0
    assert run(ours.load([session.session_id], now), store).session is not None


def test_session_ttl_never_outlives_the_absolute_timeout() -> None:
    keeper = SessionKeeper("memory", ["k" * 32], SessionTimeouts(3600, 7200), DEPLOYMENT, "p:")
    user = User(Identity(email="a@nhs.net", subject="s", issuer="i"), Account("A"))
    session = replace(Session.start(user, 0, DEPLOYMENT), renewed_at=6900)
    step = keeper.save(session, 7000)  # 200 s of the absolute time-out left, ~1 h idle
    put = next(step)
    assert isinstance(put, StorePut) and put.ttl_seconds == 200 + NOTICE_GRACE_SECONDS
    assert session.session_id not in put.key and session.session_id.encode() not in put.value


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://user:s3cret@cache/1", "rediss://user:***@cache/1"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_store_url_password_is_masked(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_batched_reads_survive_redis_dropping_their_connection(redis_prefix: str) -> None:
    """Redis restarted or the connection was killed: the next read is retried on a new
    connection instead of failing one request for nothing."""
    import redis

    store = RedisStore.from_url(REDIS_URL)
    store.perform(StorePut(redis_prefix + "k", b"v", 30, (), 30))
    killer = redis.Redis.from_url(REDIS_URL)

    async def scenario() -> list[StoreReply | StoreFailed]:
        try:
            first = await store.aperform(StoreGet(redis_prefix + "k"))
            killer.client_kill_filter(_type="normal", skipme=True)
            second = await store.aperform(StoreGet(redis_prefix + "k"))
            return [first, second]
        finally:
            await store.aclose()

    first, second = asyncio.run(scenario())
    killer.close()
    assert _value(first) == b"v"
    assert _value(second) == b"v"


def test_a_delete_of_keys_in_different_slots_of_one_primary_deletes_them_all(
    perform: Callable[[StoreEffect], Any], backend: tuple[StoreBackend, str]
) -> None:
    """A cluster primary refuses one DEL of keys in different slots (CROSSSLOT), although it
    holds them all; the same holds on every other topology trivially."""
    _, prefix = backend
    keys = [f"{prefix}slots:{number}" for number in range(40)]  # several slots on every primary
    for key in keys:
        assert perform(StorePut(key, b"v", 60)) is True
    assert perform(StoreDelete(tuple(keys))) == len(keys)
    assert all(perform(StoreGet(key)) is None for key in keys)
