"""What each session store promises, through both drivers: revocation, sharing between
instances, what is in the cookie and in Redis, and failing closed when the store fails."""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from cqrs_sso_middleware.core.sessions.session import NOTICE_GRACE_SECONDS

from ..conftest import GP_USER, REDIS_URL
from ..helpers import HTML, AppClient, Journey, completes, require
from ..proxy.conftest import free_port

SERVER_SIDE = ["memory", "redis"]
REDIS_SERVER = shutil.which("redis-server") or ""


def session_cookie(client: AppClient) -> str:
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    values = [cookie.value for cookie in jar if cookie.name == "cqrs_sso"]
    assert len(values) == 1, values
    return str(values[0])


def signed_in(make_journey: Callable[..., Journey], **kwargs: Any) -> Journey:
    journey = make_journey(**kwargs)
    assert journey.sign_in(GP_USER).status == 303
    assert journey.open("/messages").status == 200
    return journey


def sign_out(journey: Journey) -> None:
    page = journey.app.get("/oauth2/sign_out", HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    reply = journey.app.post(
        "/oauth2/sign_out", {"csrf_token": token.group(1)}, {**HTML, "Origin": "http://localhost"}
    )
    assert reply.status == 303, reply.text[:300]  # our session ended; on to the provider


@pytest.mark.parametrize("session_store", SERVER_SIDE)
def test_copied_cookie_is_refused_after_sign_out(make_journey: Callable[..., Journey]) -> None:
    journey = signed_in(make_journey)
    copied = session_cookie(journey.app)
    sign_out(journey)
    journey.app.set_cookie("cqrs_sso", copied)
    assert journey.open("/messages").status == 303  # back to sign-in: the session is gone
    assert journey.app.get("/oauth2/userinfo", {"Accept": "application/json"}).status == 401


@pytest.mark.parametrize("session_store", ["cookie"])
def test_cookie_store_cannot_revoke_a_copied_cookie(make_journey: Callable[..., Journey]) -> None:
    """What docs/security.md says plainly: with the stateless cookie store, a copy taken
    before sign-out keeps working until its time-out. Use a server-side store to revoke."""
    journey = signed_in(make_journey)
    copied = session_cookie(journey.app)
    sign_out(journey)
    journey.app.set_cookie("cqrs_sso", copied)
    assert journey.open("/messages").status == 200


def _every_reading_of(value: str) -> list[bytes]:
    readings = [value.encode()]
    for text in (value, value.removeprefix("v2."), value.split(".", 1)[-1]):
        for padding in ("", "=", "=="):
            try:
                raw = base64.urlsafe_b64decode(text + padding)
            except ValueError:
                continue
            readings.append(raw)
            for start in range(0, 29):
                with contextlib.suppress(zlib.error):
                    readings.append(zlib.decompress(raw[start:]))
    return readings


@pytest.mark.parametrize("session_store", ["cookie", "memory", "redis"])
def test_no_claim_value_can_be_read_from_the_cookie(make_journey: Callable[..., Journey]) -> None:
    journey = signed_in(make_journey)
    value = session_cookie(journey.app)
    claims = [GP_USER, "Dr Gita Patel", "gita", "CQRS-0001", "Test Surgery"]
    for reading in _every_reading_of(value):
        lowered = reading.lower()
        for claim in claims:
            assert claim.lower().encode() not in lowered, f"{claim!r} readable from the cookie"


@pytest.mark.parametrize("session_store", ["redis"])
def test_redis_holds_no_usable_cookie_and_expires_with_the_idle_timeout(
    make_journey: Callable[..., Journey], redis_prefix: str
) -> None:
    journey = signed_in(make_journey, session_idle_seconds=600, session_max_seconds=3600)
    cookie = session_cookie(journey.app)
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=redis_prefix + "*"))
    session_keys = [k for k in keys if k.startswith(f"{redis_prefix}s:".encode())]
    assert len(session_keys) == 1
    for key in keys:
        assert cookie.encode() not in key
        if client.type(key) == b"string":
            assert cookie.encode() not in client.get(key)  # type: ignore[operator]
    assert 0 < client.ttl(session_keys[0]) <= 600 + NOTICE_GRACE_SECONDS  # type: ignore[operator]
    index_keys = [k for k in keys if k.startswith(f"{redis_prefix}u:".encode())]
    assert len(index_keys) == 1 and client.smembers(index_keys[0]) == {session_keys[0]}
    client.close()


@pytest.mark.parametrize("session_store", SERVER_SIDE)
def test_two_instances_share_sessions_and_a_sign_out_on_one_ends_it_on_both(
    make_journey: Callable[..., Journey],
    make_instance: Callable[[], AppClient],
) -> None:
    first = signed_in(make_journey, client=make_instance())
    cookie = session_cookie(first.app)
    second = make_journey(make_instance())
    second.app.set_cookie("cqrs_sso", cookie)
    assert second.open("/messages").status == 200
    sign_out(second)
    first.app.set_cookie("cqrs_sso", cookie)
    assert first.open("/messages").status == 303


@pytest.mark.parametrize("session_store", SERVER_SIDE)
def test_callback_replayed_to_another_instance_is_refused(
    make_journey: Callable[..., Journey],
    make_instance: Callable[[], AppClient],
) -> None:
    first = make_journey(make_instance())
    answer = first.provider_login(first.start(), GP_USER, "cqrs-demo")
    callback = answer.headers["location"]
    attempt_cookies = {
        name: value
        for name, value in _cookies(first.app).items()
        if "-attempt-" in name or name.endswith("_csrf")
    }
    assert first.callback(callback).status == 303
    second = make_journey(make_instance())
    for name, value in attempt_cookies.items():
        second.app.set_cookie(name, value)
    replay = second.callback(callback)
    assert replay.status == 400
    assert "cqrs_sso" not in second.app.cookie_names()


def _cookies(client: AppClient) -> dict[str, str]:
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    return {cookie.name: str(cookie.value) for cookie in jar}


# -- faults: a Redis of the test's own, stopped, slow, or not Redis at all --------------------


class OwnRedis:
    """A redis-server on a free loopback port, that the test can stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=0.5).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    require(bool(REDIS_SERVER), "redis-server is not installed (apt-get install redis-server)")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def test_redis_stopped_mid_session_fails_closed_then_recovers(
    make_journey: Callable[..., Journey], make_client: Callable[..., AppClient], own_redis: OwnRedis
) -> None:
    journey = signed_in(
        make_journey, client=make_client(session_store=own_redis.url, session_store_timeout_seconds=1)
    )
    own_redis.stop()
    page = journey.open("/messages")
    assert page.status == 503
    assert "temporarily unavailable" in page.text
    api = journey.app.get("/messages", {"Accept": "application/json"})
    assert api.status == 503 and api.json() == {"error": "temporarily_unavailable"}
    ready = journey.app.get("/readyz")
    assert ready.status == 503 and ready.json()["session_store"].startswith("redis:")
    journey.app.clear_cookies()
    assert journey.sign_in_page().status == 200
    assert journey.sign_in(GP_USER).status == 503  # no session can be made without the store
    assert "cqrs_sso" not in journey.app.cookie_names()
    own_redis.start()  # an empty Redis: the old session is gone, a new sign-in works
    assert journey.app.get("/readyz").status == 200
    journey.app.clear_cookies()
    assert journey.sign_in(GP_USER).status == 303
    assert journey.open("/messages").status == 200


class SilentServer:
    """Accepts connections, then either never answers (slow) or answers nonsense."""

    def __init__(self, reply: bytes | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.reply = reply
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.reply is not None:
                try:
                    connection.recv(65536)
                    connection.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for connection in self.connections:
            connection.close()


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(None, id="redis-never-answers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", id="not-redis"),
        pytest.param(b"$-7\r\n\x00\x01garbage\r\n", id="garbage"),
    ],
)
def test_slow_or_garbled_store_fails_closed_without_a_session(
    make_journey: Callable[..., Journey], make_client: Callable[..., AppClient], reply: bytes | None
) -> None:
    server = SilentServer(reply)
    try:
        journey = make_journey(make_client(session_store=server.url, session_store_timeout_seconds=0.5))
        journey.app.set_cookie("cqrs_sso", "A" * 43)  # looks like one of our ids: must be looked up
        page = completes(lambda: journey.open("/messages"), "a request whose store never answers")
        assert page.status == 503
        journey.app.clear_cookies()
        assert journey.sign_in(GP_USER).status == 503
        assert "cqrs_sso" not in journey.app.cookie_names()
    finally:
        server.close()


@pytest.mark.parametrize("session_store", ["cookie", "memory", "redis"])
def test_a_session_of_another_deployment_sharing_keys_and_store_is_refused(
    make_client: Callable[..., AppClient],
    make_settings: Callable[..., Any],
    make_journey: Callable[..., Journey],
    session_store: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Deployment B (another client id and issuer, a lookup that admits nobody) shares A's
    secret_keys and A's session store and key prefix: A's cookie must open nothing on B,
    not even until B's next account re-check."""
    from cqrs_sso_middleware.stores import MemoryStore

    shared = MemoryStore() if session_store == "memory" else None
    settings_a = make_settings()
    settings_b = make_settings(
        client_id="app-b",
        issuer="http://127.0.0.1:9/other-tenant/v2.0",
        secret_keys=settings_a.session.secret_keys,
        account_lookup=lambda identity: None,
        session_key_prefix=settings_a.session.session_key_prefix,
    )
    journey = make_journey(make_client(store=shared, settings=settings_a))
    assert journey.sign_in(GP_USER).status == 303
    cookie = session_cookie(journey.app)
    deployment_b = make_client(store=shared, settings=settings_b)
    deployment_b.set_cookie("cqrs_sso", cookie)
    assert deployment_b.get("/messages", HTML).status == 303  # to B's sign-in page
    assert deployment_b.get("/oauth2/userinfo", {"Accept": "application/json"}).status == 401
    if session_store == "cookie":  # decryption itself fails under B's keys: refused as junk
        assert journey.open("/messages").status == 200


def _every_value_in(session_store: str, shared: Any) -> list[bytes]:
    """The whole store as raw bytes: every key and every value (a dump, a backup)."""
    if session_store == "memory":
        values = [key.encode() + b" " + value for key, (value, _) in shared._values.items()]
        values += [
            key.encode() + b" " + " ".join(members).encode() for key, (members, _) in shared._indexes.items()
        ]
        return values
    client = redis.Redis.from_url(REDIS_URL)
    dumped = []
    for key in client.scan_iter(count=1000):  # the whole test database, not just our prefix
        kind = client.type(key)
        if kind == b"string":
            dumped.append(key + b" " + client.get(key))  # type: ignore[operator]
        elif kind == b"set":
            dumped.append(key + b" " + b" ".join(client.smembers(key)))  # type: ignore[arg-type]
        else:
            dumped.append(key + b" " + (client.dump(key) or b""))  # type: ignore[operator]
    client.close()
    return dumped


@pytest.mark.parametrize("session_store", ["memory", "redis"])
def test_a_store_dump_after_sign_in_holds_no_email_name_or_token(
    make_client: Callable[..., AppClient], make_journey: Callable[..., Journey], session_store: str
) -> None:
    """Session records are encrypted: a dump or backup of the store shows neither the
    person's address, nor their name, nor any JWT (the ID token kept for sign-out)."""
    from cqrs_sso_middleware.stores import MemoryStore

    shared = MemoryStore() if session_store == "memory" else None
    journey = make_journey(make_client(store=shared))
    assert journey.sign_in(GP_USER).status == 303
    assert journey.open("/messages").status == 200
    dump = _every_value_in(session_store, shared)
    assert dump, "the sign-in wrote nothing to the store"
    jwt = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
    for entry in dump:
        lowered = entry.lower()
        assert GP_USER.encode() not in lowered and b"gita" not in lowered and b"patel" not in lowered
        assert not jwt.search(entry), entry[:80]
