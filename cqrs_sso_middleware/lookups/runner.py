"""Running the deployer's account lookup: the same rules for the WSGI and the ASGI driver.

* **A deadline per call** (``account_lookup_timeout_seconds``). A lookup that has not
  answered by then is a failure (503 for the person), and the request goes on at once. A
  plain function cannot be stopped from outside, so it runs in a worker thread that is
  left to finish; its place is given back only when it does.
* **A bound on how many run at once** (``account_lookup_concurrency``). A call that finds no
  free place waits for one within its deadline, then fails: stuck lookups cost their own
  places, never every sign-in's, and a slow database is not sent ever more queries.
* **A cache of answers** (``account_cache_seconds``, off by default): an account or "no
  account", never a failure, keyed by email and Entra object id, per process.
* **Observers** (metrics) hear the time and the result of every call that ran.

What counts as an answer: an ``Account`` or ``None``. Anything else — an exception, a
time-out, another type — is a ``LookupFailed``, never "no account".
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import anyio

from ..core.identity import Account, Identity
from ..core.protocol import LookupFailed, LookupResult, LookupReturned
from . import AccountLookup

LookupObserver = Callable[[float, bool], None]


def runs_inline(lookup: object) -> bool:
    """A lookup that says ``nonblocking = True`` (an in-memory table, like the built-in
    csv:/json: lookups) is called directly: no thread hop for a dictionary read."""
    return getattr(lookup, "nonblocking", False) is True


def is_coroutine_lookup(lookup: object) -> bool:
    return inspect.iscoroutinefunction(lookup) or inspect.iscoroutinefunction(
        getattr(lookup, "__call__", None)  # noqa: B004 - an async callable object
    )


def _answer(value: object) -> LookupResult:
    if value is None or isinstance(value, Account):
        return LookupReturned(value)
    return LookupFailed(f"returned {type(value).__name__}, expected Account or None")


class AnswerCache:
    """Lookup answers kept ``ttl_seconds``, bounded (oldest first), safe across threads."""

    def __init__(self, ttl_seconds: float, capacity: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.capacity = capacity
        self._entries: dict[tuple[str, str], tuple[float, LookupReturned]] = {}
        self._lock = threading.Lock()

    def get(self, identity: Identity, now: float) -> LookupReturned | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get((identity.email, identity.object_id))
        if entry is None or now >= entry[0]:
            return None
        return entry[1]

    def put(self, identity: Identity, answer: LookupResult, now: float) -> None:
        if self.ttl <= 0 or not isinstance(answer, LookupReturned):
            return
        with self._lock:
            while len(self._entries) >= self.capacity:
                del self._entries[next(iter(self._entries))]
            self._entries[(identity.email, identity.object_id)] = (now + self.ttl, answer)


class LookupRunner:
    """The account lookup with its deadline, bound, cache and observers."""

    def __init__(
        self,
        lookup: AccountLookup,
        *,
        timeout_seconds: float,
        concurrency: int,
        cache_seconds: float = 0,
        observers: Iterable[LookupObserver] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.timeout = timeout_seconds
        self.concurrency = concurrency
        self.cache = AnswerCache(cache_seconds)
        self.observers = tuple(observers)
        self.clock = clock
        self.inline = runs_inline(lookup)
        self.coroutine = is_coroutine_lookup(lookup)
        self._places = threading.BoundedSemaphore(concurrency)
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cqrs-sso-lookup")
        self._async_places: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    # -- the sync face: WSGI, the command line ---------------------------------------------------

    def call(self, identity: Identity) -> LookupResult:
        cached = self.cache.get(identity, self.clock())
        if cached is not None:
            return cached
        started = time.perf_counter()
        answer = self._call_inline(identity) if self.inline else self._call_in_thread(identity)
        return self._finished(identity, answer, started)

    def _call_inline(self, identity: Identity) -> LookupResult:
        try:
            return _answer(self.lookup(identity))
        except Exception as error:
            return LookupFailed(f"raised {type(error).__name__}")

    def _call_in_thread(self, identity: Identity) -> LookupResult:
        deadline = time.monotonic() + self.timeout
        if not self._places.acquire(timeout=self.timeout):
            return LookupFailed(f"{self.concurrency} lookups already running for {self.timeout:g}s")
        try:
            future = self._threads.submit(_call_to_the_end, self.lookup, identity)
        except RuntimeError:  # shut down
            self._places.release()
            return LookupFailed("lookups are shutting down")
        # The place is given back when the call really ends, not when we stop waiting.
        future.add_done_callback(self._give_back)
        try:
            return _answer(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            return LookupFailed(f"timed out after {self.timeout:g}s")
        except Exception as error:
            return LookupFailed(f"raised {type(error).__name__}")

    def _give_back(self, future: Future[object]) -> None:
        self._places.release()

    # -- the async face: ASGI, the proxy --------------------------------------------------------

    async def acall(self, identity: Identity) -> LookupResult:
        cached = self.cache.get(identity, self.clock())
        if cached is not None:
            return cached
        if not self.coroutine:
            if self.inline:
                return self._finished(identity, self._call_inline(identity), time.perf_counter())
            # The sync face keeps the deadline and the bound; this thread only waits on it.
            return await anyio.to_thread.run_sync(self.call, identity)
        started = time.perf_counter()
        try:
            with anyio.fail_after(self.timeout):
                async with self._async_semaphore():
                    answer = _answer(await self.lookup(identity))  # type: ignore[misc]
        except TimeoutError:
            answer = LookupFailed(f"timed out after {self.timeout:g}s")
        except Exception as error:
            answer = LookupFailed(f"raised {type(error).__name__}")
        return self._finished(identity, answer, started)

    def _async_semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._async_places is None or self._async_places[0] is not loop:
            self._async_places = (loop, asyncio.Semaphore(self.concurrency))
        return self._async_places[1]

    # -- both ------------------------------------------------------------------------------------

    def _finished(self, identity: Identity, answer: LookupResult, started: float) -> LookupResult:
        self.cache.put(identity, answer, self.clock())
        seconds = time.perf_counter() - started
        for observe in self.observers:
            observe(seconds, isinstance(answer, LookupReturned))
        return answer

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        close_lookup = getattr(self.lookup, "close", None)
        if callable(close_lookup):
            close_lookup()  # a built-in sql:/http: lookup's connection pool


def _call_to_the_end(lookup: Callable[[Identity], Any], identity: Identity) -> object:
    """Run a plain or ``async def`` lookup to completion in a worker thread."""
    result = lookup(identity)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> object:
    return await awaitable
