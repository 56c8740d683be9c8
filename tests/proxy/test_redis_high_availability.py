"""Redis in the topologies a national service runs — Sentinel, Cluster, TLS — against real
redis-server processes on loopback (tests/redis_servers.py): revocations that survive a
fail-over, sessions that survive it under load, and TLS verified as a deployer expects."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cqrs_sso_middleware.core.identity import Account, Identity, User
from cqrs_sso_middleware.core.interpreter import StoreOnly, run_sync
from cqrs_sso_middleware.core.protocol import (
    StoreDelete,
    StoreFailed,
    StoreGet,
    StorePing,
    StorePut,
    StoreReply,
)
from cqrs_sso_middleware.core.sessions.keeper import SessionKeeper
from cqrs_sso_middleware.core.sessions.session import Deployment, Session, SessionTimeouts
from cqrs_sso_middleware.stores.redis import RedisStore

from ..conftest import GP_USER
from ..helpers import HTML, form_fields, wait_until
from ..redis_servers import (
    RedisClusterSet,
    SentinelSet,
    TlsFiles,
    free_port,
    make_tls_files,
    start_cluster,
    start_redis,
    start_sentinel_set,
)
from .conftest import Browser, ProxyProcess

pytestmark = pytest.mark.integration
DEPLOYMENT = Deployment("http://127.0.0.1:9/t/v2.0", "c")
KEY = "k" * 40


@pytest.fixture
def own_sentinel_set(tmp_path: Path, redis_sentinel: SentinelSet) -> Iterator[SentinelSet]:
    """A Sentinel set of this test's own (it will kill the primary); ``redis_sentinel``
    first, so that a machine without redis-server skips before anything starts."""
    group = start_sentinel_set(tmp_path / "sentinel")
    yield group
    group.stop()


@pytest.fixture
def own_cluster(tmp_path: Path, redis_cluster: RedisClusterSet) -> Iterator[RedisClusterSet]:
    group = start_cluster(tmp_path / "cluster")
    yield group
    group.stop()


def saved_session(store: RedisStore, keeper: SessionKeeper, email: str = GP_USER) -> Session:
    user = User(Identity(email=email, subject="s", issuer=DEPLOYMENT.issuer, object_id="oid-1"), Account("A"))
    session = Session.start(user, time.time(), DEPLOYMENT)
    run_sync(keeper.save(session, time.time()), StoreOnly(store.perform))
    return session


def keeper_for(url: str) -> SessionKeeper:
    return SessionKeeper(url, [KEY], SessionTimeouts(3600, 43200), DEPLOYMENT, "ha:")


def stored(store: RedisStore, keeper: SessionKeeper, session: Session) -> bool:
    reply = store.perform(StoreGet(keeper.session_key(session.session_id)))
    assert isinstance(reply, StoreReply), reply
    return reply.value is not None


# -- revocations wait for a replica ---------------------------------------------------------------


def test_a_revocation_waits_for_a_replica_and_says_so_when_none_confirms(
    redis_sentinel: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore.from_url(redis_sentinel.url, revocation_wait_seconds=0.4)
    keeper = keeper_for(redis_sentinel.url)
    try:
        first = saved_session(store, keeper)
        run_sync(keeper.end(first), StoreOnly(store.perform))
        assert "revocation_unconfirmed" not in caplog.text  # the replica confirmed at once
        second = saved_session(store, keeper)
        replica = redis_sentinel.replicas[0]
        replica.pause()  # connected, but holding nothing new: WAIT cannot be satisfied
        try:
            with caplog.at_level(logging.WARNING, logger="cqrs_sso.store"):
                run_sync(keeper.end(second), StoreOnly(store.perform))
        finally:
            replica.resume()
        # It waited for the replica, up to revocation_wait_seconds, and said so: the line is
        # written only when WAIT returned with no replica acknowledging.
        unconfirmed = [
            json.loads(r.getMessage()) for r in caplog.records if "revocation_unconfirmed" in r.getMessage()
        ]
        assert unconfirmed and unconfirmed[0]["waited_ms"] == store.wait_ms
        assert not stored(store, keeper, second)  # signed out here either way
    finally:
        store.close()


def test_a_revocation_survives_the_primary_dying_right_after_it(own_sentinel_set: SentinelSet) -> None:
    """The replica is paused while the revocation is written, and WAIT holds the sign-out
    until the replica has it; then the primary dies, and the promoted replica still has the
    session ended. (On loopback the kernel keeps the replication stream of a paused
    replica, so the loss WAIT closes cannot be produced here: that WAIT is sent, on the
    revocation's own connection, is pinned by the next test.)"""
    group = own_sentinel_set
    store = RedisStore.from_url(group.url, revocation_wait_seconds=5, timeout_seconds=1)
    keeper = keeper_for(group.url)
    try:
        session = saved_session(store, keeper)
        wait_until(
            lambda: group.replicas[0].client().get(keeper.session_key(session.session_id)), "replication"
        )
        replica = group.replicas[0]
        replica.pause()
        threading.Timer(0.5, replica.resume).start()  # the replica comes back while WAIT waits
        run_sync(keeper.end(session), StoreOnly(store.perform))
        old = group.kill_primary()
        replica.resume()
        group.wait_for_new_primary(old.port)
        # Through the new primary, the session is still gone.
        assert (
            wait_until(lambda: _read_after_failover(store, keeper, session), "the store after fail-over")
            == "gone"
        )
    finally:
        store.close()


def test_a_revocation_is_followed_by_wait_on_its_own_connection(redis_sentinel: SentinelSet) -> None:
    """WAIT counts only the writes of the connection it is sent on: it must follow the DEL
    on the same connection (one pipeline), or it confirms nothing."""
    primary = redis_sentinel.node(redis_sentinel.current_primary_port())
    store = RedisStore.from_url(redis_sentinel.url, revocation_wait_seconds=1)
    keeper = keeper_for(redis_sentinel.url)
    seen: list[str] = []
    with primary.client().monitor() as monitor:
        try:
            session = saved_session(store, keeper)
            run_sync(keeper.end(session), StoreOnly(store.perform))
            deadline = time.monotonic() + 5  # the Sentinels' own commands keep the stream going
            for command in monitor.listen():
                seen.append(f"{command['client_address']}:{command['client_port']} {command['command']}")
                if command["command"].upper().startswith("WAIT") or time.monotonic() > deadline:
                    break
        finally:
            store.close()
    deleting = next(line for line in seen if line.split(" ", 1)[1].upper().startswith("DEL "))
    waiting = next((line for line in seen if line.split(" ", 1)[1].upper().startswith("WAIT")), "")
    assert waiting, "no WAIT followed the revocation"
    assert deleting.split(" ", 1)[0] == waiting.split(" ", 1)[0]  # the same connection
    assert waiting.split(" ", 1)[1] == "WAIT 1 1000"


def _read_after_failover(store: RedisStore, keeper: SessionKeeper, session: Session) -> str | None:
    reply = store.perform(StoreGet(keeper.session_key(session.session_id)))
    if isinstance(reply, StoreFailed):
        return None
    return "gone" if reply.value is None else "back"


# -- fail-over under load, through two proxy processes --------------------------------------------


class Load:
    """Steady signed-in GETs from a few threads against both proxies, every answer kept."""

    def __init__(self, urls: list[str], cookie: str) -> None:
        self.urls, self.cookie = urls, cookie
        self.answers: list[tuple[float, str, int | str]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(4)]

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=10, headers={**HTML, "Cookie": f"cqrs_sso={self.cookie}"}) as client:
            while not self.stopping.is_set():
                url = self.urls[n % len(self.urls)]
                try:
                    status: int | str = client.get(url + "/messages").status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                self.answers.append((time.monotonic(), url, status))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=20)

    def statuses(self) -> Counter[int | str]:
        return Counter(status for _, _, status in self.answers)


def two_proxies(start_proxy: Callable[..., ProxyProcess], url: str) -> tuple[ProxyProcess, ProxyProcess]:
    shared = {
        "CQRS_SSO_SESSION_STORE": url,
        "CQRS_SSO_SECRET_KEYS": KEY,
        "CQRS_SSO_SESSION_KEY_PREFIX": "ha:",
    }
    first = start_proxy(**shared)
    port = first.url.rsplit(":", 1)[1]
    second = start_proxy(**shared, CQRS_SSO_CLIENT_ID=f"proxy-{port}", CQRS_SSO_BASE_URL=first.url)
    return first, second


def signed_in_cookie(make_browser: Callable[[str], Browser], proxy: ProxyProcess) -> tuple[Browser, str]:
    browser = make_browser(proxy.url)
    assert browser.sign_in(GP_USER).status_code == 303
    return browser, str(browser.client.cookies["cqrs_sso"])


def assert_fail_over_kept_everything(
    load: Load, proxies: tuple[ProxyProcess, ProxyProcess], kept: str, revoked: str
) -> None:
    statuses = load.statuses()
    assert set(statuses) <= {200, 503}, statuses  # no other 5xx, no transport error, never a 401
    assert statuses[200] > 0 and statuses[503] >= 0
    for proxy in proxies:
        alive = httpx.get(proxy.url + "/messages", headers={**HTML, "Cookie": f"cqrs_sso={kept}"}, timeout=10)
        assert alive.status_code == 200, f"the session made before the fail-over is gone on {proxy.url}"
        ended = httpx.get(
            proxy.url + "/messages", headers={**HTML, "Cookie": f"cqrs_sso={revoked}"}, timeout=10
        )
        assert ended.status_code == 303, f"a revocation made before the fail-over came back on {proxy.url}"


def test_sentinel_fail_over_under_load_keeps_sessions_and_revocations(
    own_sentinel_set: SentinelSet,
    start_proxy: Callable[..., ProxyProcess],
    make_browser: Callable[[str], Browser],
) -> None:
    group = own_sentinel_set
    proxies = two_proxies(start_proxy, group.url)
    _, kept = signed_in_cookie(make_browser, proxies[0])
    leaving, revoked = signed_in_cookie(make_browser, proxies[0])
    with Load([p.url for p in proxies], kept) as load:
        wait_until(lambda: load.statuses()[200] >= 50 or None, "traffic")
        _sign_out(leaving, proxies[1])  # written during the traffic, just before the kill
        old = group.kill_primary()
        group.wait_for_new_primary(old.port)
        recovered = lambda: _answers_200(proxies, kept)  # noqa: E731
        wait_until(recovered, "both proxies answering after the fail-over", seconds=30)
        _some_traffic_after(load)
    assert_fail_over_kept_everything(load, proxies, kept, revoked)
    ready = httpx.get(proxies[0].url + "/readyz").json()
    assert f"master cqrs at 127.0.0.1:{group.current_primary_port()}" in ready["session_store"]
    started = [line for line in proxies[0].log_lines() if line.startswith("cqrs-sso proxy: listening")]
    assert f"session store {group.url} (sentinel (master cqrs, 3 sentinels))" in started[0]


def test_cluster_fail_over_under_load_keeps_sessions_and_revocations(
    own_cluster: RedisClusterSet,
    start_proxy: Callable[..., ProxyProcess],
    make_browser: Callable[[str], Browser],
) -> None:
    group = own_cluster
    proxies = two_proxies(start_proxy, group.url)
    _, kept = signed_in_cookie(make_browser, proxies[0])
    leaving, revoked = signed_in_cookie(make_browser, proxies[0])
    with Load([p.url for p in proxies], kept) as load:
        wait_until(lambda: load.statuses()[200] >= 50 or None, "traffic")
        _sign_out(leaving, proxies[1])
        store = RedisStore.from_url(group.url)
        session_key = next(key for key, _ in store.scan("ha:s:*"))  # the one left: kept's
        store.close()
        group.kill_primary_of(session_key)
        wait_until(
            lambda: _answers_200(proxies, kept), "both proxies answering after the fail-over", seconds=40
        )
        _some_traffic_after(load)
    assert_fail_over_kept_everything(load, proxies, kept, revoked)


def _some_traffic_after(load: Load) -> None:
    """A little traffic after recovery, in the record: 20 more answers of 200."""
    answered = load.statuses()[200]
    wait_until(lambda: load.statuses()[200] >= answered + 20 or None, "traffic after recovery")


def _sign_out(browser: Browser, proxy: ProxyProcess) -> None:
    """Sign out through ``proxy``; the public origin is the first proxy's (``base_url``)."""
    page = browser.client.get(proxy.url + "/oauth2/sign_out", headers=HTML)
    done = browser.client.post(
        proxy.url + "/oauth2/sign_out",
        data=form_fields(page.text),
        headers={**HTML, "Origin": browser.origin},
    )
    assert done.status_code == 303


def _answers_200(proxies: tuple[ProxyProcess, ProxyProcess], cookie: str) -> bool | None:
    headers = {**HTML, "Cookie": f"cqrs_sso={cookie}"}
    try:
        return (
            all(
                httpx.get(p.url + "/messages", headers=headers, timeout=5).status_code == 200 for p in proxies
            )
            or None
        )
    except httpx.HTTPError:
        return None


# -- TLS as a deployer expects it -----------------------------------------------------------------


def _ping(url: str, **settings: Any) -> StoreReply | StoreFailed:
    store = RedisStore.from_url(url, timeout_seconds=2, **settings)
    try:
        return store.perform(StorePing())  # type: ignore[return-value]
    finally:
        store.close()


def test_tls_verifies_the_server_against_the_configured_ca(redis_tls: Any) -> None:
    url = f"rediss://127.0.0.1:{redis_tls.port}/0"
    assert isinstance(_ping(url, redis_tls_ca_file=str(redis_tls.tls.ca)), StoreReply)
    refused = _ping(url)  # the system's CAs do not know the test CA
    assert isinstance(refused, StoreFailed)


def test_tls_checks_the_host_name_by_default(tmp_path: Path, redis_tls: Any) -> None:
    tls = redis_tls.tls
    wrong_name = TlsFiles(
        tls.ca,
        tls.other_name_cert,
        tls.other_name_key,
        tls.client_cert,
        tls.client_key,
        tls.other_name_cert,
        tls.other_name_key,
    )
    node = start_redis(tmp_path / "other-name", free_port(), tls=wrong_name)
    try:
        url = f"rediss://127.0.0.1:{node.port}/0"
        assert isinstance(_ping(url, redis_tls_ca_file=str(tls.ca)), StoreFailed)  # names redis.elsewhere
        assert isinstance(
            _ping(url, redis_tls_ca_file=str(tls.ca), redis_tls_check_hostname=False), StoreReply
        )
    finally:
        node.stop()


def test_tls_client_certificate_when_the_server_requires_one(tmp_path: Path, redis_tls: Any) -> None:
    tls = redis_tls.tls
    node = start_redis(tmp_path / "mutual", free_port(), "--tls-auth-clients", "yes", tls=tls)
    try:
        url = f"rediss://127.0.0.1:{node.port}/0"
        assert isinstance(_ping(url, redis_tls_ca_file=str(tls.ca)), StoreFailed)
        with_certificate = _ping(
            url,
            redis_tls_ca_file=str(tls.ca),
            redis_tls_cert_file=str(tls.client_cert),
            redis_tls_key_file=str(tls.client_key),
        )
        assert isinstance(with_certificate, StoreReply)
    finally:
        node.stop()


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_sentinel_and_cluster_over_tls(tmp_path: Path, redis_tls: Any, kind: str) -> None:
    tls = make_tls_files(tmp_path / "tls")
    group: SentinelSet | RedisClusterSet = (
        start_sentinel_set(tmp_path / "s", tls=tls)
        if kind == "sentinel"
        else start_cluster(tmp_path / "c", tls=tls)
    )
    try:
        assert group.url.startswith(f"rediss+{kind}://")
        store = RedisStore.from_url(group.url, redis_tls_ca_file=str(tls.ca))
        try:
            assert isinstance(store.perform(StorePut("tls:a", b"x", 60)), StoreReply)
            assert store.perform(StoreGet("tls:a")) == StoreReply(b"x")
            assert store.perform(StoreDelete(("tls:a",))) == StoreReply(1)
        finally:
            store.close()
    finally:
        group.stop()
