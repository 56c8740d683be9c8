"""What each driver does itself: lookups (sync, async, slow), websockets, lifespan, HEAD, and
never leaking a traceback."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from cqrs_sso_middleware import Account, ASGISSOMiddleware, Identity, Settings, SSOMiddleware

from ..conftest import GP_USER, echo_asgi
from ..helpers import HTML, AppClient, ASGIClient, Journey


def sync_lookup(identity: Identity) -> Account | None:
    return Account("SYNC-1", identity.email)


async def async_lookup(identity: Identity) -> Account | None:
    await asyncio.sleep(0)
    return Account("ASYNC-1", identity.email)


class AsyncCallableLookup:
    async def __call__(self, identity: Identity) -> Account | None:
        return Account("OBJ-1", identity.email)


# Held until the test ends: a lookup that answers (with an account) only if nobody gave up.
RELEASE = threading.Event()


def slow_sync_lookup(identity: Identity) -> Account | None:
    RELEASE.wait(30)
    return Account("SLOW", identity.email)


async def slow_async_lookup(identity: Identity) -> Account | None:
    for _ in range(3000):
        if RELEASE.is_set():
            break
        await asyncio.sleep(0.01)
    return Account("SLOW", identity.email)


def raising_lookup(identity: Identity) -> Account | None:
    raise ConnectionError("database is down: password=hunter2")


@pytest.mark.parametrize(
    "lookup,account_id",
    [
        pytest.param(sync_lookup, "SYNC-1", id="plain-function"),
        pytest.param(async_lookup, "ASYNC-1", id="async-def"),
        pytest.param(AsyncCallableLookup(), "OBJ-1", id="async-callable-object"),
    ],
)
def test_sync_and_async_lookups_work_in_both_drivers(
    make_journey: Callable[..., Journey], lookup: Any, account_id: str
) -> None:
    journey = make_journey(account_lookup=lookup)
    assert journey.sign_in(GP_USER).status == 303
    assert journey.open("/").json()["account_id"] == account_id


@pytest.mark.parametrize("lookup", [slow_sync_lookup, slow_async_lookup], ids=["sync", "async"])
def test_slow_lookup_times_out_to_unavailable_without_a_session(
    make_journey: Callable[..., Journey], lookup: Any
) -> None:
    """The lookup would answer with an account, but only after the deadline: the 503 shows
    the request did not wait for it (and the session it would have given never exists)."""
    RELEASE.clear()
    journey = make_journey(account_lookup=lookup, account_lookup_timeout_seconds=0.3)
    try:
        reply = journey.sign_in(GP_USER)
    finally:
        RELEASE.set()
    assert reply.status == 503
    assert "cqrs_sso" not in journey.app.cookie_names()


def test_raising_lookup_is_503_and_its_message_is_not_logged(
    make_journey: Callable[..., Journey], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    journey = make_journey(account_lookup=raising_lookup)
    reply = journey.sign_in(GP_USER)
    assert reply.status == 503
    assert "hunter2" not in reply.text
    assert "hunter2" not in caplog.text
    assert "ConnectionError" in caplog.text


class ThreadRecordingLookup:
    def __init__(self, nonblocking: bool) -> None:
        self.nonblocking = nonblocking
        self.threads: list[str] = []

    def __call__(self, identity: Identity) -> Account | None:
        self.threads.append(threading.current_thread().name)
        if self.nonblocking:
            raise ConnectionError("an inline lookup failing is a 503 like any other")
        return Account("T-1", identity.email)


def test_nonblocking_lookup_runs_inline_and_others_in_a_worker_thread(
    make_journey: Callable[..., Journey],
) -> None:
    inline, threaded = ThreadRecordingLookup(True), ThreadRecordingLookup(False)
    assert make_journey(account_lookup=inline).sign_in(GP_USER).status == 503
    assert make_journey(account_lookup=threaded).sign_in(GP_USER).status == 303
    workers = ("cqrs-sso-lookup", "AnyIO worker thread")  # the WSGI and ASGI lookup threads
    assert inline.threads and not inline.threads[0].startswith(workers)
    assert threaded.threads and threaded.threads[0].startswith(workers)


def test_head_request_to_a_page_has_no_body(app_client: AppClient) -> None:
    reply = app_client.request("HEAD", "/oauth2/sign_in", HTML)
    assert reply.status == 200
    assert reply.body == b""


def test_internal_bug_gives_a_plain_page_never_a_traceback(
    make_client: Callable[..., AppClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()

    def explode(request: Any) -> Any:
        raise RuntimeError("bug in the core")

    client.middleware._router.handle = explode  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        reply = client.get("/messages", HTML)
    assert reply.status == 500
    assert "Traceback" not in reply.text
    assert "bug in the core" not in reply.text
    assert "internal error" in caplog.text


# -- ASGI only ------------------------------------------------------------------------------


@pytest.fixture
def asgi_app(make_settings: Callable[..., Settings]) -> ASGISSOMiddleware:
    return ASGISSOMiddleware(echo_asgi(), make_settings())


def test_websocket_without_session_is_closed_4401(asgi_app: ASGISSOMiddleware) -> None:
    with TestClient(asgi_app, base_url="http://localhost") as client:
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws"):
            pass
        assert closed.value.code == 4401


def test_websocket_with_session_reaches_the_app_with_the_user(make_settings: Callable[..., Settings]) -> None:
    client = ASGIClient(ASGISSOMiddleware(echo_asgi(), make_settings()))
    journey = Journey(client)
    try:
        journey.sign_in(GP_USER)
        with client.client.websocket_connect("ws://localhost/ws") as socket:
            assert socket.receive_text() == f"hello {GP_USER}"
    finally:
        journey.close()
        client.close()


def test_lifespan_passes_through_to_the_app(make_settings: Callable[..., Settings]) -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    with TestClient(ASGISSOMiddleware(app, make_settings())):
        pass
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_wsgi_remote_user_from_the_client_never_survives(make_settings: Callable[..., Settings]) -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return [b""]

    middleware = SSOMiddleware(app, make_settings(public_paths=("/public",)))
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/public",
        "REMOTE_USER": "set-by-something-upstream",
        "HTTP_X_FORWARDED_USER": "attacker",
        "HTTP_REMOTE_USER": "attacker",
        "wsgi.input": None,
    }
    middleware(environ, lambda *a: None)
    middleware.close()
    assert "REMOTE_USER" not in seen
    assert "HTTP_X_FORWARDED_USER" not in seen
    assert "HTTP_REMOTE_USER" not in seen


def test_sql_lookup_end_to_end(make_journey: Callable[..., Journey], tmp_path: Any) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'cqrs.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE users (email TEXT, account_id TEXT, practice TEXT)"))
        connection.execute(text("INSERT INTO users VALUES ('gp.user@nhs.net', 'SQL-1', 'Y00001')"))
    engine.dispose()
    journey = make_journey(
        account_lookup=f"sql:{url}",
        account_query="SELECT account_id, practice FROM users WHERE email = :email",
    )
    assert journey.sign_in(GP_USER).status == 303
    assert journey.open("/").json()["account_id"] == "SQL-1"
