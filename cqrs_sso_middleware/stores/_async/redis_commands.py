"""The store's commands on one Redis client (a server, a Sentinel's primary, or one primary
of a cluster): one round trip per effect, pipelined when it is more than one command.

A revocation ends with ``WAIT 1`` on the same connection when the primary has a replica
(``stores/redis.py`` says why), so that a fail-over cannot bring the session back.
"""

from __future__ import annotations

from typing import Any

from ...core import protocol as effects
from ..redis_clients import RedisClients, ReplicaWatch
from ..redis_plan import Command, confirmed, count, interpret, plan


async def run(client: Any, commands: list[Command]) -> list[Any]:
    if len(commands) == 1:
        name, args, options = commands[0]
        return [await getattr(client, name)(*args, **options)]
    pipe = client.pipeline(transaction=False)
    for name, args, options in commands:
        getattr(pipe, name)(*args, **options)
    return list(await pipe.execute())


async def revoke_on(
    target: Any,
    node: str,
    commands: list[Command],
    effect: effects.StoreDelete,
    replicas: ReplicaWatch,
    wait_ms: int,
) -> int:
    """``commands`` (a delete's, for keys ``node`` holds), then ``WAIT 1`` when ``node`` has
    a replica; the number of records deleted."""
    wait = wait_ms > 0 and await replicas.ahas_replica(node, target)
    replies = await run(target, [*commands, ("wait", (1, wait_ms), {})] if wait else commands)
    if wait:
        confirmed(replies[-1], effect, node, wait_ms)
    # replies: one per command, then WAIT's
    deleted = [reply for (name, _, _), reply in zip(commands, replies, strict=False) if name == "delete"]
    return sum(count(reply) for reply in deleted)


async def perform_on(
    client: Any, effect: effects.StoreEffect, clients: RedisClients, replicas: ReplicaWatch, wait_ms: int
) -> effects.StoreReply:
    """``effect`` on one server or a Sentinel's primary (a cluster's reads and deletes are
    the store's: they span nodes)."""
    if isinstance(effect, effects.StorePing):
        await client.ping()
        return effects.StoreReply(await clients.adescribe())
    if isinstance(effect, effects.StoreDelete):
        return effects.StoreReply(await revoke_on(client, "primary", plan(effect), effect, replicas, wait_ms))
    return interpret(effect, await run(client, plan(effect)))
