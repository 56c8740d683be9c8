"""Many threads at once, as under a threaded WSGI server: single use must stay single use."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cqrs_sso_middleware import Runtime

from .test_flow import Browser, ScriptedProvider


@pytest.mark.parametrize("store", ["cookie", "memory"])
def test_a_callback_replayed_from_many_threads_at_once_is_admitted_once(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, store: str
) -> None:
    """The state is spent with one atomic claim (SET NX, or the memory store's lock): of 16
    copies of one callback racing, exactly one signs in. (A check-then-set without a lock
    let two through when threads interleaved between the check and the set.)"""
    runtime = make_flow(session_store=store)
    first = Browser(runtime, provider)
    state = first.start()
    copies = [Browser(runtime, provider) for _ in range(16)]
    for copy in copies:
        copy.cookies = dict(first.cookies)
    start = threading.Barrier(len(copies))
    statuses: list[int] = []

    def replay(browser: Browser) -> None:
        start.wait()
        statuses.append(browser.callback(state).status)

    threads = [threading.Thread(target=replay, args=(copy,)) for copy in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [400] * 15
