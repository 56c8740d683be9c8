"""Sessions kept in this process: tests, the demo, and one-process deployments.

With ``session_store = "cookie"`` the runtime still keeps one of these: the login states
the callback spends (``StoreClaim``) live here, so a state is single use in the process
even though sessions live in cookies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..core import protocol as effects
from ..core.interpreter import unknown_effect


class MemoryStore:
    """One process's sessions, with expiry. Thread-safe; never blocks on I/O."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float]] = {}
        self._indexes: dict[str, tuple[set[str], float]] = {}
        self._lock = threading.Lock()
        self._operations = 0

    def perform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        with self._lock:
            now = self._clock()
            self._operations += 1
            if self._operations % 1024 == 0:
                self._purge(now)
            return effects.StoreReply(self._apply(effect, now))

    async def aperform(self, effect: effects.StoreEffect) -> effects.StoreResult:
        return self.perform(effect)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def __len__(self) -> int:
        with self._lock:
            self._purge(self._clock())
            return len(self._values)

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._values[key]
            return None
        return entry[0]

    def _apply(self, effect: effects.StoreEffect, now: float) -> bytes | bool | int | tuple[str, ...] | None:
        match effect:
            case effects.StoreGet():
                if effect.unless and self._live(effect.unless, now) is not None:
                    return None
                return self._live(effect.key, now)
            case effects.StorePut():
                self._values[effect.key] = (effect.value, now + effect.ttl_seconds)
                for index in effect.indexes:
                    members, _ = self._indexes.get(index, (set(), 0.0))
                    members.add(effect.key)
                    self._indexes[index] = (members, now + effect.index_ttl_seconds)
                return True
            case effects.StoreDelete():
                for mark in effect.marks:
                    self._values[mark] = (b"1", now + effect.mark_ttl_seconds)
                return self._delete(effect)
            case effects.StoreClaim():
                if self._live(effect.key, now) is not None:
                    return False
                self._values[effect.key] = (b"1", now + effect.ttl_seconds)
                return True
            case effects.StoreMembers():
                members, expires_at = self._indexes.get(effect.index, (set(), 0.0))
                if expires_at <= now:
                    return ()
                return tuple(sorted(key for key in members if self._live(key, now) is not None))
            case effects.StorePing():
                return True
            case _:
                unknown_effect(effect)

    def _delete(self, effect: effects.StoreDelete) -> int:
        deleted = 0
        for key in effect.keys:
            deleted += self._values.pop(key, None) is not None
            deleted += self._indexes.pop(key, None) is not None
        for index in effect.indexes:
            if index in self._indexes:
                self._indexes[index][0].difference_update(effect.keys)
        return deleted

    def _purge(self, now: float) -> None:
        for key in [k for k, (_, expires_at) in self._values.items() if expires_at <= now]:
            del self._values[key]
        for index in [i for i, (_, expires_at) in self._indexes.items() if expires_at <= now]:
            del self._indexes[index]
