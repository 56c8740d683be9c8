"""Sessions in Redis: any number of processes and instances share them, and a sign-out
anywhere ends the session everywhere — on one server, a Sentinel-managed primary with
replicas, or a Cluster (``redis_clients``).

redis-py's sync client serves the WSGI driver and the command line, ``redis.asyncio`` the
ASGI driver and the proxy, with one command plan for both (``redis_plan``) and one source
for both faces' commands (``_async/redis_commands.py``, and its generated sync twin).
Every failure — refused connection, time-out (``session_store_timeout_seconds``), an
answer that is not Redis, a primary being replaced — becomes ``StoreFailed``; the core then
fails closed with "temporarily unavailable". Nothing here decides anything.

**Revocations survive a fail-over.** Replication is asynchronous: a session deleted on the
primary a moment before it dies can come back with the replica that is promoted. So when
the primary has a replica, every ``StoreDelete`` (sign-out, "sign out everywhere", a
back-channel logout, ``cqrs-sso sessions revoke``, a removed account) ends with ``WAIT 1``
on the same connection, and returns only once a replica holds it or
``revocation_wait_seconds`` have passed. When none acknowledged in time the revocation is
logged at WARNING (``revocation_unconfirmed``); the person is signed out here either way.
Ordinary session writes do not wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from functools import partial
from typing import Any

from ..core import protocol as effects
from ..settings.sessions import SessionSettings
from ._async import redis_commands as async_commands
from ._sync import redis_commands as sync_commands
from .redis_clients import RedisClients, ReplicaWatch
from .redis_plan import NotRedis, cluster_plans, get_keys, interpret


class RedisStore:
    """Sessions in Redis, in the topology ``settings.session_store`` names; passwords from
    ``redis_password`` and ``redis_sentinel_password`` win over one in the URL. Persistence
    is not required: losing every node signs everybody out, nothing worse."""

    def __init__(self, settings: SessionSettings) -> None:
        import redis  # noqa: F401  (here, so that a missing extra is a configuration error)

        location = settings.redis
        assert location is not None, "RedisStore needs a Redis session_store"
        self.url = location.display
        self.clients = RedisClients(location, settings)
        self.replicas = ReplicaWatch()
        self.wait_ms = int(settings.revocation_wait_seconds * 1000)
        self._waiting_gets: list[tuple[tuple[str, ...], asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # held, so that no batch is collected
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._read_connection: Any = None  # the batched reads' own connection (one in flight)

    @classmethod
    def from_url(
        cls, url: str, password: str = "", timeout_seconds: float = 2.0, **settings: Any
    ) -> RedisStore:
        """A store for ``url`` without a whole ``Settings`` (tests, tools); ``settings`` are
        any other ``SessionSettings`` fields (TLS files, ``revocation_wait_seconds``…)."""
        return cls(
            SessionSettings(
                session_store=url,
                redis_password=password,
                session_store_timeout_seconds=timeout_seconds,
                **settings,
            )
        )

    # -- sync (WSGI, the command line) ---------------------------------------------------------

    def perform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        try:
            client = self.clients.sync()
            if self.clients.cluster and isinstance(effect, effects.StoreGet):
                # The record and its mark may lie in different slots: one MGET per node.
                return interpret(effect, [client.mget_nonatomic(get_keys(effect))])
            if self.clients.cluster and isinstance(effect, effects.StoreDelete):
                return effects.StoreReply(self._revoke_in_cluster(client, effect))
            return sync_commands.perform_on(client, effect, self.clients, self.replicas, self.wait_ms)
        except Exception as error:
            # Every failure inside the client is the store's, and fails closed (503), not
            # only RedisError and OSError: a server that is not Redis, or answers out of
            # protocol, makes redis-py fail in other ways too (8.x: AttributeError on a
            # garbled HELLO reply).
            return effects.StoreFailed(f"redis: {type(error).__name__}")

    def _revoke_in_cluster(self, client: Any, effect: effects.StoreDelete) -> int:
        """A pipeline per primary, each with ``WAIT`` on its own connection."""
        import redis

        try:
            return self._revoke_per_primary(client, effect)
        except (redis.ConnectionError, redis.TimeoutError):
            # The pipelines go straight to each primary, past the cluster client's own
            # MOVED handling: after a fail-over its slot map may still name the dead node.
            # Learn the map again and repeat once (DEL and SREM can be repeated).
            client.nodes_manager.initialize()
            return self._revoke_per_primary(client, effect)

    def _revoke_per_primary(self, client: Any, effect: effects.StoreDelete) -> int:
        return sum(
            sync_commands.revoke_on(target, node, commands, effect, self.replicas, self.wait_ms)
            for node, target, commands in cluster_plans(client, effect)
        )

    # -- async (ASGI, the proxy) ---------------------------------------------------------------

    async def aperform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        try:
            if isinstance(effect, effects.StoreGet):
                return interpret(effect, [await self._batched_get(get_keys(effect))])
            if self.clients.cluster and isinstance(effect, effects.StoreDelete):
                # Per-node pipelines with WAIT are the sync client's (revocations are rare:
                # a thread is cheaper than a second cluster client per loop).
                return await asyncio.to_thread(self.perform, effect)
            client = self.clients.async_()
            return await async_commands.perform_on(client, effect, self.clients, self.replicas, self.wait_ms)
        except Exception as error:  # as in perform: any failure of the client fails closed
            return effects.StoreFailed(f"redis: {type(error).__name__}")

    async def _batched_get(self, keys: tuple[str, ...]) -> Any:
        """GET, batched: the reads that requests ask for while the previous batch is on its
        way go to Redis together as one ``MGET`` (auto-pipelining, one batch in flight per
        process). Every request still reads Redis — nothing is cached — but under load one
        round trip and one pass through redis-py serve many requests, and the busier the
        proxy the larger the batches (benchmarks/proxy.py, setup (b'))."""
        loop = asyncio.get_running_loop()
        if self._batch_loop is not loop:  # a new event loop (tests, a restarted worker)
            self._batch_loop, self._waiting_gets, self._sending = loop, [], set()
            self._read_connection = None
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiting_gets.append((keys, waiter))
        if len(self._waiting_gets) == 1:
            loop.call_soon(self._send_gets, loop)
        return await waiter

    def _send_gets(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sending or not self._waiting_gets:
            return  # the batch in flight sends what is waiting when it returns
        batch, self._waiting_gets = self._waiting_gets, []
        task = loop.create_task(self._mget(batch))
        self._sending.add(task)
        task.add_done_callback(partial(self._sent, loop))

    def _sent(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._send_gets(loop)

    async def _mget(self, batch: list[tuple[tuple[str, ...], asyncio.Future[Any]]]) -> None:
        try:
            keys = [key for wanted, _ in batch for key in wanted]
            if self.clients.cluster:
                # One MGET per node, in parallel (redis-py splits the keys by slot).
                values = await self.clients.async_().mget_nonatomic(keys)
            else:
                values = await self._mget_on_own_connection(keys)
            if not isinstance(values, list) or len(values) != len(keys):
                raise NotRedis(type(values).__name__)
        except BaseException as error:  # every waiter learns of it; none is left hanging
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(error if isinstance(error, Exception) else NotRedis("cancelled"))
            if not isinstance(error, Exception):
                raise
            return
        start = 0
        for wanted, waiter in batch:
            if not waiter.done():
                waiter.set_result(values[start : start + len(wanted)])
            start += len(wanted)

    async def _mget_on_own_connection(self, keys: list[str]) -> Any:
        """``MGET`` on a connection kept for the batched reads: with one batch in flight a
        single connection serves them all, without redis-py's pool taking and returning a
        connection per call (89 against 133 µs per call on loopback, measured). A connection
        that fails is dropped; one that had served before and was found broken (Redis
        restarted) is replaced and the read tried once more — MGET changes nothing."""
        import redis

        for attempt in (1, 2):
            connection = self._read_connection
            reused = connection is not None
            if connection is None:
                pool = self.clients.async_().connection_pool
                connection = self._read_connection = await pool.get_connection()
            try:
                await connection.send_command("MGET", *keys)
                return await connection.read_response()
            except BaseException as error:
                self._read_connection = None
                await asyncio.shield(connection.disconnect())
                retry = isinstance(error, redis.ConnectionError | ConnectionError) and reused
                if attempt == 2 or not retry:
                    raise
        raise AssertionError("unreachable")

    def scan(self, pattern: str) -> Iterator[tuple[str, int]]:
        """Keys matching ``pattern`` with their time to live, by SCAN (never KEYS) — on
        every primary of a cluster. For the command line (``cqrs-sso sessions``), never on a
        request's path."""
        client = self.clients.sync()
        for raw in client.scan_iter(match=pattern, count=500):
            key = raw.decode("ascii", "replace")
            yield key, int(client.ttl(key))

    def close(self) -> None:
        self.clients.close()

    async def aclose(self) -> None:
        if self._read_connection is not None:
            await self._read_connection.disconnect()
            self._read_connection = None
        await self.clients.aclose()
        self.close()
