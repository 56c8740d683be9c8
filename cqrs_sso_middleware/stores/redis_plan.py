"""The Redis commands of each store effect, and what their replies mean: no I/O, shared by
the store's sync and async faces (``_async/redis_commands.py`` and its twin).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..core import protocol as effects
from ..core.interpreter import unknown_effect

Command = tuple[str, tuple[Any, ...], dict[str, Any]]
log = logging.getLogger("cqrs_sso.store")


def plan(effect: effects.StoreEffect) -> list[Command]:
    """The Redis commands for one effect (one round trip: pipelined when more than one)."""
    match effect:
        case effects.StoreGet():
            return [("mget", get_keys(effect), {})]
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
                *marking(effect),
            ]
        case effects.StoreClaim():
            return [("set", (effect.key, b"1"), {"nx": True, "ex": effect.ttl_seconds})]
        case effects.StoreMembers():
            return [("smembers", (effect.index,), {})]
        case effects.StorePing():
            return [("ping", (), {})]
        case _:
            unknown_effect(effect)


def get_keys(effect: effects.StoreGet) -> tuple[str, ...]:
    """The record and, when there is one, its revocation mark: read together (MGET)."""
    return (effect.key, effect.unless) if effect.unless else (effect.key,)


def marking(effect: effects.StoreDelete) -> list[Command]:
    return [("set", (mark, b"1"), {"ex": max(1, effect.mark_ttl_seconds)}) for mark in effect.marks]


class NotRedis(Exception):
    """The server answered, but not with what Redis answers to that command."""


def interpret(effect: effects.StoreEffect, replies: list[Any]) -> effects.StoreReply:
    first = replies[0]
    match effect:
        case effects.StoreGet():
            if not isinstance(first, list) or len(first) != len(get_keys(effect)):
                raise NotRedis(type(first).__name__)
            record, *mark = first
            if record is not None and not isinstance(record, bytes):
                raise NotRedis(type(record).__name__)
            return effects.StoreReply(None if mark and mark[0] is not None else record)
        case effects.StoreDelete():
            if not isinstance(first, int):
                raise NotRedis(type(first).__name__)
            return effects.StoreReply(first)
        case effects.StoreClaim():
            return effects.StoreReply(first is True)
        case effects.StoreMembers():
            if not isinstance(first, set | list):
                raise NotRedis(type(first).__name__)
            return effects.StoreReply(tuple(sorted(m.decode("ascii", "replace") for m in first)))
        case effects.StorePut() | effects.StorePing():
            return effects.StoreReply(True)
        case _:
            unknown_effect(effect)


def cluster_plans(cluster: Any, effect: effects.StoreDelete) -> list[tuple[str, Any, list[Command]]]:
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
    for mark in marking(effect):
        node = cluster.get_node_from_key(mark[1][0])
        nodes[node.name] = node
        commands.setdefault(node.name, []).append(mark)
    return [(name, nodes[name].redis_connection, plan) for name, plan in commands.items()]


def count(reply: object) -> int:
    if not isinstance(reply, int):
        raise NotRedis(type(reply).__name__)
    return reply


def confirmed(acknowledged: object, effect: effects.StoreDelete, node: str, wait_ms: int) -> None:
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
