"""Sessions in Redis: any number of processes and instances share them, and a sign-out
anywhere ends the session everywhere — on one server, a Sentinel-managed primary with
replicas, or a Cluster (``redis_clients``).

redis-py's sync client serves the WSGI driver and the command line, ``redis.asyncio`` the
ASGI driver and the proxy, with one command plan for both (``_plan``/``_interpret``).
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
import json
import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

from ..core import protocol as effects
from ..core.interpreter import unknown_effect
from ..settings.sessions import SessionSettings
from .redis_clients import RedisClients, ReplicaWatch

Command = tuple[str, tuple[Any, ...], dict[str, Any]]
log = logging.getLogger("cqrs_sso.store")


def _plan(effect: effects.StoreEffect) -> list[Command]:
    """The Redis commands for one effect (one round trip: pipelined when more than one)."""
    match effect:
        case effects.StoreGet():
            return [("mget", _get_keys(effect), {})]
        case effects.StorePut():
            commands: list[Command] = [("set", (effect.key, effect.value), {"ex": effect.ttl_seconds})]
            for index in effect.indexes:
                commands += [
                    ("sadd", (index, effect.key), {}),
                    ("expire", (index, effect.index_ttl_seconds), {}),
                ]
            return commands
        case effects.StoreDelete():
            return [
                ("delete", effect.keys, {}),
                *(("srem", (index, *effect.keys), {}) for index in effect.indexes),
                *_marking(effect),
            ]
        case effects.StoreClaim():
            return [("set", (effect.key, b"1"), {"nx": True, "ex": effect.ttl_seconds})]
        case effects.StoreMembers():
            return [("smembers", (effect.index,), {})]
        case effects.StorePing():
            return [("ping", (), {})]
        case _:
            unknown_effect(effect)


def _get_keys(effect: effects.StoreGet) -> tuple[str, ...]:
    """The record and, when there is one, its revocation mark: read together (MGET)."""
    return (effect.key, effect.unless) if effect.unless else (effect.key,)


def _marking(effect: effects.StoreDelete) -> list[Command]:
    return [("set", (mark, b"1"), {"ex": max(1, effect.mark_ttl_seconds)}) for mark in effect.marks]


class _NotRedis(Exception):
    """The server answered, but not with what Redis answers to that command."""


def _interpret(effect: effects.StoreEffect, replies: list[Any]) -> effects.StoreReply:
    first = replies[0]
    match effect:
        case effects.StoreGet():
            if not isinstance(first, list) or len(first) != len(_get_keys(effect)):
                raise _NotRedis(type(first).__name__)
            record, *mark = first
            if record is not None and not isinstance(record, bytes):
                raise _NotRedis(type(record).__name__)
            return effects.StoreReply(None if mark and mark[0] is not None else record)
        case effects.StoreDelete():
            if not isinstance(first, int):
                raise _NotRedis(type(first).__name__)
            return effects.StoreReply(first)
        case effects.StoreClaim():
            return effects.StoreReply(first is True)
        case effects.StoreMembers():
            if not isinstance(first, set | list):
                raise _NotRedis(type(first).__name__)
            return effects.StoreReply(tuple(sorted(m.decode("ascii", "replace") for m in first)))
        case effects.StorePut() | effects.StorePing():
            return effects.StoreReply(True)
        case _:
            unknown_effect(effect)


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
            if isinstance(effect, effects.StoreDelete):
                return self._revoke(effect)
            if isinstance(effect, effects.StorePing):
                self.clients.sync().ping()
                return effects.StoreReply(self.clients.describe())
            commands = _plan(effect)
            if self.clients.cluster and isinstance(effect, effects.StoreGet):
                # The record and its mark may lie in different slots: one MGET per node.
                commands = [("mget_nonatomic", _get_keys(effect), {})]
            return _interpret(effect, self._run(self.clients.sync(), commands))
        except Exception as error:
            # Every failure inside the client is the store's, and fails closed (503), not
            # only RedisError and OSError: a server that is not Redis, or answers out of
            # protocol, makes redis-py fail in other ways too (8.x: AttributeError on a
            # garbled HELLO reply).
            return effects.StoreFailed(f"redis: {type(error).__name__}")

    @staticmethod
    def _run(client: Any, commands: list[Command]) -> list[Any]:
        if len(commands) == 1:
            name, args, options = commands[0]
            return [getattr(client, name)(*args, **options)]
        pipe = client.pipeline(transaction=False)
        for name, args, options in commands:
            getattr(pipe, name)(*args, **options)
        return list(pipe.execute())

    def _revoke(self, effect: effects.StoreDelete) -> effects.StoreResult:
        """Delete, then — when the primary has a replica — ``WAIT 1`` on the same
        connection (one pipeline), per primary for a cluster."""
        client = self.clients.sync()
        if not self.clients.cluster:
            return effects.StoreReply(self._revoke_on(client, "primary", _plan(effect), effect))
        import redis

        try:
            return effects.StoreReply(self._revoke_in_cluster(client, effect))
        except (redis.ConnectionError, redis.TimeoutError):
            # The pipelines go straight to each primary, past the cluster client's own
            # MOVED handling: after a fail-over its slot map may still name the dead node.
            # Learn the map again and repeat once (DEL and SREM can be repeated).
            client.nodes_manager.initialize()
            return effects.StoreReply(self._revoke_in_cluster(client, effect))

    def _revoke_in_cluster(self, client: Any, effect: effects.StoreDelete) -> int:
        return sum(
            self._revoke_on(target, node, commands, effect)
            for node, target, commands in _cluster_plans(client, effect)
        )

    def _revoke_on(self, target: Any, node: str, commands: list[Command], effect: effects.StoreDelete) -> int:
        wait = self.wait_ms > 0 and self.replicas.has_replica(node, target)
        replies = self._run(target, [*commands, ("wait", (1, self.wait_ms), {})] if wait else commands)
        if wait:
            _confirmed(replies[-1], effect, node, self.wait_ms)
        # replies: one per command, then WAIT's
        deleted = [reply for (name, _, _), reply in zip(commands, replies, strict=False) if name == "delete"]
        return sum(_count(reply) for reply in deleted)

    # -- async (ASGI, the proxy) ---------------------------------------------------------------

    async def aperform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        try:
            if isinstance(effect, effects.StoreGet):
                return _interpret(effect, [await self._batched_get(_get_keys(effect))])
            if isinstance(effect, effects.StoreDelete):
                if self.clients.cluster:
                    # Per-node pipelines with WAIT are the sync client's (revocations are
                    # rare: a thread is cheaper than a second cluster client per loop).
                    return await asyncio.to_thread(self.perform, effect)
                return await self._arevoke(effect)
            client = self.clients.async_()
            if isinstance(effect, effects.StorePing):
                await client.ping()
                return effects.StoreReply(await self.clients.adescribe())
            commands = _plan(effect)
            if len(commands) == 1:
                name, args, options = commands[0]
                replies = [await getattr(client, name)(*args, **options)]
            else:
                pipe = client.pipeline(transaction=False)
                for name, args, options in commands:
                    getattr(pipe, name)(*args, **options)
                replies = await pipe.execute()
            return _interpret(effect, replies)
        except Exception as error:  # as in perform: any failure of the client fails closed
            return effects.StoreFailed(f"redis: {type(error).__name__}")

    async def _arevoke(self, effect: effects.StoreDelete) -> effects.StoreResult:
        client = self.clients.async_()
        commands = _plan(effect)
        wait = self.wait_ms > 0 and await self.replicas.ahas_replica("primary", client)
        if wait:
            commands.append(("wait", (1, self.wait_ms), {}))
        pipe = client.pipeline(transaction=False)
        for name, args, options in commands:
            getattr(pipe, name)(*args, **options)
        replies = await pipe.execute()
        if wait:
            _confirmed(replies[-1], effect, "primary", self.wait_ms)
        return _interpret(effect, replies)

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
                raise _NotRedis(type(values).__name__)
        except BaseException as error:  # every waiter learns of it; none is left hanging
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(error if isinstance(error, Exception) else _NotRedis("cancelled"))
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


def _cluster_plans(cluster: Any, effect: effects.StoreDelete) -> list[tuple[str, Any, list[Command]]]:
    """A cluster delete as one pipeline per primary, run with that primary's own client:
    ``WAIT`` counts only the writes made on its own connection. Each primary deletes the
    keys it holds and removes every deleted key from the indexes it holds."""
    nodes: dict[str, Any] = {}
    commands: dict[str, list[Command]] = {}
    own: dict[str, list[str]] = {}
    for key in effect.keys:
        node = cluster.get_node_from_key(key)
        nodes[node.name] = node
        own.setdefault(node.name, []).append(key)
    for name, keys in own.items():
        # One DEL per key: a primary refuses a DEL whose keys are in different slots
        # (CROSSSLOT), even when it holds them all.
        commands[name] = [("delete", (key,), {}) for key in keys]
    for index in effect.indexes:
        node = cluster.get_node_from_key(index)
        nodes[node.name] = node
        commands.setdefault(node.name, []).append(("srem", (index, *effect.keys), {}))
    for mark in _marking(effect):
        node = cluster.get_node_from_key(mark[1][0])
        nodes[node.name] = node
        commands.setdefault(node.name, []).append(mark)
    return [(name, nodes[name].redis_connection, plan) for name, plan in commands.items()]


def _count(reply: object) -> int:
    if not isinstance(reply, int):
        raise _NotRedis(type(reply).__name__)
    return reply


def _confirmed(acknowledged: object, effect: effects.StoreDelete, node: str, wait_ms: int) -> None:
    if isinstance(acknowledged, int) and acknowledged >= 1:
        return
    log.warning(
        "%s",
        json.dumps(
            {
                "event": "revocation_unconfirmed",
                "level": "warning",
                "node": node,
                "keys": len(effect.keys),
                "waited_ms": wait_ms,
                "meaning": "on the primary, not yet on a replica: a fail-over now could undo it",
            }
        ),
    )
