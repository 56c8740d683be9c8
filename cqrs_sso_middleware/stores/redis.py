"""Sessions in Redis: any number of processes and instances share them, and a sign-out
anywhere ends the session everywhere.

redis-py's sync client serves the WSGI driver and the command line, ``redis.asyncio`` the
ASGI driver and the proxy, with one command plan for both (``_plan``/``_interpret``).
Every failure — refused connection, time-out (``session_store_timeout_seconds``), an
answer that is not Redis — becomes ``StoreFailed``; the core then fails closed with
"temporarily unavailable". Nothing here decides anything.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

from ..core import protocol as effects
from ..core.interpreter import unknown_effect

Command = tuple[str, tuple[Any, ...], dict[str, Any]]


def _plan(effect: effects.StoreEffect) -> list[Command]:
    """The Redis commands for one effect (one round trip: pipelined when more than one)."""
    match effect:
        case effects.StoreGet():
            return [("get", (effect.key,), {})]
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
            ]
        case effects.StoreClaim():
            return [("set", (effect.key, b"1"), {"nx": True, "ex": effect.ttl_seconds})]
        case effects.StoreMembers():
            return [("smembers", (effect.index,), {})]
        case effects.StorePing():
            return [("ping", (), {})]
        case _:
            unknown_effect(effect)


class _NotRedis(Exception):
    """The server answered, but not with what Redis answers to that command."""


def _interpret(effect: effects.StoreEffect, replies: list[Any]) -> effects.StoreReply:
    first = replies[0]
    match effect:
        case effects.StoreGet():
            if first is not None and not isinstance(first, bytes):
                raise _NotRedis(type(first).__name__)
            return effects.StoreReply(first)
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
    """Sessions in Redis. The URL is redis-py's (``redis://``, ``rediss://`` for TLS,
    ``unix://``); ``password`` (from ``CQRS_SSO_REDIS_PASSWORD``) wins over one in the URL.
    Persistence is not required: losing Redis signs everybody out, nothing worse."""

    def __init__(self, url: str, password: str = "", timeout_seconds: float = 2.0) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self._options: dict[str, Any] = {
            "socket_timeout": timeout_seconds,
            "socket_connect_timeout": timeout_seconds,
            "health_check_interval": 30,
            # One quick retry: a pooled connection that died with a Redis restart is
            # replaced at once; a Redis that is down fails within the time-out.
            "retry": Retry(NoBackoff(), 1),
        }
        if password:
            self._options["password"] = password
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError, _NotRedis)
        self._sync: Any = None
        self._async: Any = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._waiting_gets: list[tuple[str, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # held, so that no batch is collected
        self._batch_loop: asyncio.AbstractEventLoop | None = None
        self._read_connection: Any = None  # the batched reads' own connection (one in flight)

    def _sync_client(self) -> Any:
        if self._sync is None:
            import redis

            with self._lock:
                if self._sync is None:
                    self._sync = redis.Redis.from_url(self.url, **self._options)
        return self._sync

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(self.url, **self._options)
            self._async_loop = loop
        return self._async

    def perform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        try:
            client = self._sync_client()
            commands = _plan(effect)
            if len(commands) == 1:
                name, args, options = commands[0]
                replies = [getattr(client, name)(*args, **options)]
            else:
                pipe = client.pipeline(transaction=False)
                for name, args, options in commands:
                    getattr(pipe, name)(*args, **options)
                replies = pipe.execute()
            return _interpret(effect, replies)
        except self._errors as error:
            return effects.StoreFailed(f"redis: {type(error).__name__}")

    async def aperform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        try:
            if isinstance(effect, effects.StoreGet):
                return _interpret(effect, [await self._batched_get(effect.key)])
            client = self._async_client()
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
        except self._errors as error:
            return effects.StoreFailed(f"redis: {type(error).__name__}")

    async def _batched_get(self, key: str) -> Any:
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
        self._waiting_gets.append((key, waiter))
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

    async def _mget(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        try:
            values = await self._mget_on_own_connection([key for key, _ in batch])
            if not isinstance(values, list) or len(values) != len(batch):
                raise _NotRedis(type(values).__name__)
        except BaseException as error:  # every waiter learns of it; none is left hanging
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(error if isinstance(error, Exception) else _NotRedis("cancelled"))
            if not isinstance(error, Exception):
                raise
            return
        for (_, waiter), value in zip(batch, values, strict=True):
            if not waiter.done():
                waiter.set_result(value)

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
                pool = self._async_client().connection_pool
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
        """Keys matching ``pattern`` with their time to live, by SCAN (never KEYS). For the
        command line (``cqrs-sso sessions``), never on a request's path."""
        client = self._sync_client()
        for raw in client.scan_iter(match=pattern, count=500):
            key = raw.decode("ascii", "replace")
            yield key, int(client.ttl(key))

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._read_connection is not None:
            await self._read_connection.disconnect()
            self._read_connection = None
        if self._async is not None:
            await self._async.aclose()
            self._async = None
        self.close()
