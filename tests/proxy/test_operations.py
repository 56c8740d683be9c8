"""The proxy as a hosting team runs it: one scrape of /metrics adds up every worker, and
SIGTERM lets a request in flight finish while new connections are refused."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import GP_USER
from ..helpers import wait_until
from .conftest import Browser, ProxyProcess


def counter(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def refuses_connections(proxy: ProxyProcess) -> bool:
    parts = urlsplit(proxy.url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_one_scrape_of_a_two_worker_proxy_counts_every_request(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser], tmp_path: Path
) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left by an earlier run")  # emptied at start
    proxy = start_proxy("--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(shared))

    def workers_writing() -> set[str]:
        return {path.stem.rpartition("_")[2] for path in shared.glob("*.db")}

    wait_until(lambda: len(workers_writing()) == 2 or None, "both workers to start", seconds=20)
    browser = make_browser(proxy.url)
    assert browser.sign_in(GP_USER).status_code == 303
    before = httpx.get(f"{proxy.url}/metrics").text
    requests = 400
    # A new connection each time, so that the kernel hands them to both workers.
    for _ in range(requests):
        assert httpx.get(f"{proxy.url}/echo", cookies=browser.client.cookies).status_code == 200
    # Each worker writes its per-request counts in batches, at most FLUSH_SECONDS late.
    name, labels = "cqrs_sso_upstream_responses_total", {"status": "2xx"}
    wait_until(
        lambda: (
            counter(httpx.get(f"{proxy.url}/metrics").text, name, **labels) - counter(before, name, **labels)
            >= requests
        ),
        "both workers' batches to be written",
    )
    for _ in range(6):  # whichever worker answers the scrape, the whole tree is counted
        after = httpx.get(f"{proxy.url}/metrics").text
        for name, labels in [
            ("cqrs_sso_upstream_responses_total", {"status": "2xx"}),
            ("cqrs_sso_session_checks_total", {"result": "authenticated"}),
        ]:
            assert counter(after, name, **labels) - counter(before, name, **labels) == requests
        assert counter(after, "cqrs_sso_sign_ins_total", outcome="success") == 1
    served = {path.stem for path in shared.glob("counter_*.db")}
    assert len(served) == 2, f"one worker served everything: {served}"


def test_sigterm_lets_a_request_in_flight_finish_and_refuses_new_connections(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser], tmp_path: Path
) -> None:
    proxy = start_proxy(CQRS_SSO_SHUTDOWN_GRACE_SECONDS="20")
    browser = make_browser(proxy.url)
    assert browser.sign_in(GP_USER).status_code == 303
    answers: list[httpx.Response] = []
    arrived = tmp_path / "arrived"  # the legacy app writes it when the request reaches it
    slow = threading.Thread(
        target=lambda: answers.append(
            httpx.get(f"{proxy.url}/slow?s=3&mark={arrived}", cookies=browser.client.cookies, timeout=30)
        )
    )
    slow.start()
    # The stop comes once the request is in flight: it has reached the upstream.
    wait_until(arrived.exists, "the slow request to reach the upstream")
    proxy.process.send_signal(15)
    wait_until(lambda: refuses_connections(proxy), "new connections to be refused", seconds=5)  # at once …
    assert proxy.process.poll() is None  # … while the slow request is still being served
    slow.join(timeout=30)
    assert answers and answers[0].status_code == 200, "the request in flight was cut"
    assert proxy.process.wait(timeout=20) == 0


@pytest.mark.parametrize("grace", ["1"])
def test_a_request_longer_than_the_grace_is_ended_and_the_process_still_exits(
    start_proxy: Callable[..., ProxyProcess],
    make_browser: Callable[[str], Browser],
    tmp_path: Path,
    grace: str,
) -> None:
    proxy = start_proxy(CQRS_SSO_SHUTDOWN_GRACE_SECONDS=grace)
    arrived = tmp_path / "arrived"
    browser = make_browser(proxy.url)
    assert browser.sign_in(GP_USER).status_code == 303
    outcomes: list[object] = []

    def slow_request() -> None:
        try:
            reply = httpx.get(
                f"{proxy.url}/slow?s=30&mark={arrived}", cookies=browser.client.cookies, timeout=40
            )
            outcomes.append(reply.status_code)
        except httpx.HTTPError as error:
            outcomes.append(error)

    slow = threading.Thread(target=slow_request)
    slow.start()
    wait_until(arrived.exists, "the slow request to reach the upstream")
    proxy.process.send_signal(15)
    # The grace (1 s), not the 30 s request, decides when the process ends.
    assert proxy.process.wait(timeout=15) == 0
    slow.join(timeout=40)
    assert outcomes and outcomes[0] != 200, "the request outlived the grace"


def test_sigterm_gives_an_open_websocket_the_grace_then_closes_it_with_1012(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser], websocket_upstream: str
) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    proxy = start_proxy(CQRS_SSO_UPSTREAM=websocket_upstream, CQRS_SSO_SHUTDOWN_GRACE_SECONDS="3")
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER, path="/")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.client.cookies.jar)

    async def talk_through_the_stop() -> tuple[str, int | None]:
        async with connect(
            proxy.url.replace("http://", "ws://") + "/ws", additional_headers={"Cookie": cookie}
        ) as ws:
            await ws.send("before")
            assert await ws.recv() == f"{GP_USER}: before"
            proxy.process.send_signal(15)
            # The stop has begun once new connections are refused …
            await asyncio.to_thread(wait_until, lambda: refuses_connections(proxy), "the stop to begin")
            await ws.send("during")  # … but this WebSocket still relays
            answer = str(await ws.recv())
            try:
                await asyncio.wait_for(ws.recv(), timeout=10)
            except ConnectionClosed as closed:
                return answer, closed.rcvd.code if closed.rcvd else None
            return answer, None

    answer, code = asyncio.run(talk_through_the_stop())
    assert answer == f"{GP_USER}: during"
    assert code == 1012  # "service restart": the browser reconnects elsewhere
    assert proxy.process.wait(timeout=20) == 0
