"""What the proxy does from the moment it is asked to stop, without a process: /readyz says
503 at once, and the stop signal reaches both that flag and the server's own handler."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest
from starlette.testclient import TestClient

from cqrs_sso_middleware.proxy.app import ReadinessWhileStopping, hear_stop_signals


async def ready_app(scope: dict[str, object], receive: object, send: object) -> None:
    assert callable(send)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ready"})


def test_readyz_answers_503_once_a_stop_is_asked_for() -> None:
    stopping = threading.Event()
    client = TestClient(ReadinessWhileStopping(ready_app, "/readyz", stopping))  # type: ignore[arg-type]
    assert client.get("/readyz").status_code == 200
    stopping.set()
    reply = client.get("/readyz")
    assert reply.status_code == 503 and reply.json() == {"status": "stopping"}
    assert client.get("/other").status_code == 200  # requests still in flight are served


@pytest.fixture
def server_handler() -> Iterator[list[int]]:
    """A stand-in for uvicorn's SIGTERM handler, restored afterwards."""
    heard: list[int] = []

    def handler(sig: int, frame: FrameType | None) -> None:
        heard.append(sig)

    previous = signal.signal(signal.SIGTERM, handler)
    interrupt = signal.getsignal(signal.SIGINT)
    yield heard
    signal.signal(signal.SIGTERM, previous)
    signal.signal(signal.SIGINT, interrupt)


def test_sigterm_sets_stopping_and_still_reaches_the_servers_handler(server_handler: list[int]) -> None:
    stopping = threading.Event()
    hear_stop_signals(stopping)
    signal.raise_signal(signal.SIGTERM)
    assert stopping.is_set()
    assert server_handler == [signal.SIGTERM]  # uvicorn still begins its graceful stop
