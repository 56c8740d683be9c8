"""Where server-side sessions live: a registry from the ``session_store`` setting to a
backend that performs the core's store effects.

* ``cookie`` — sessions live in the browser's encrypted cookie; a :class:`MemoryStore`
  still keeps this process's spent login states (single-use ``state``).
* ``memory`` — :class:`MemoryStore`: one process (tests, the demo).
* ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``, ``redis+cluster://`` (and
  their ``rediss+…`` TLS spellings) — :class:`RedisStore`, one server, Sentinel or Cluster.

A backend is chosen by the URL's scheme, so a new kind of store is one entry in
``_BACKENDS`` and one module, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..core.errors import ConfigError
from ..core.protocol import StoreEffect, StoreResult
from ..settings.redis_url import REDIS_SCHEMES
from .memory import MemoryStore

if TYPE_CHECKING:
    from ..settings.sessions import SessionSettings

__all__ = ["MemoryStore", "StoreBackend", "open_store", "store_kind"]


class StoreBackend(Protocol):
    """Performs store effects, from a thread (``perform``) or an event loop (``aperform``)."""

    def perform(self, effect: StoreEffect) -> StoreResult: ...

    async def aperform(self, effect: StoreEffect) -> StoreResult: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _memory(settings: SessionSettings) -> StoreBackend:
    return MemoryStore()


def _redis(settings: SessionSettings) -> StoreBackend:
    try:
        from .redis import RedisStore

        return RedisStore(settings)
    except ImportError:  # redis-py is imported when the store is built
        hint = "pip install 'cqrs-sso-middleware[redis]'"
        raise ConfigError([f"session_store: a Redis store needs the 'redis' extra: {hint}"]) from None


_BACKENDS: dict[str, Callable[[SessionSettings], StoreBackend]] = {
    "cookie": _memory,
    "memory": _memory,
    **dict.fromkeys(REDIS_SCHEMES, _redis),
}


def store_kind(session_store: str) -> str:
    """``cookie``, ``memory``, ``redis``… for a ``session_store`` setting."""
    if session_store in ("cookie", "memory"):
        return session_store
    scheme = session_store.partition("://")[0].lower()
    return "redis" if scheme in REDIS_SCHEMES else scheme


def store_label(session_store: str) -> str:
    """The kind of store with its topology, never its address: ``cookie``, ``memory``, or
    the Redis URL's scheme (``redis``, ``rediss+sentinel``, ``redis+cluster``…)."""
    if session_store in ("cookie", "memory"):
        return session_store
    return session_store.partition("://")[0].lower()


def open_store(settings: SessionSettings) -> StoreBackend:
    """The backend ``settings.session_store`` names; raises ``ConfigError`` for an unknown
    kind or a missing extra."""
    kind = settings.session_store if settings.session_store in ("cookie", "memory") else None
    scheme = kind or settings.session_store.partition("://")[0].lower()
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError([f"session_store: no store for {scheme!r}: cookie, memory or a Redis URL"])
    return backend(settings)
