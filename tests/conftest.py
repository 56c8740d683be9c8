from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from cqrs_sso_middleware import Account, ASGISSOMiddleware, Identity, Runtime, Settings, SSOMiddleware
from cqrs_sso_middleware.demo import DemoStack, start_demo
from cqrs_sso_middleware.provider import DemoClient, DemoUser, NHSmailLikeProvider, ProviderFaults
from cqrs_sso_middleware.runtime import Observers
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

from .helpers import APP_ORIGIN, ISSUED_COOKIE_VALUES, AppClient, ASGIClient, Journey, WSGIClient, require

TENANT_ID = "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
CLIENT_ID = "cqrs-test-client"
CLIENT_SECRET = "cqrs-test-secret"
PASSWORD = "cqrs-demo"
GP_USER = "gp.user@nhs.net"
NEW_USER = "new.user@nhs.net"
NO_EMAIL_USER = "member.user@nhs.net"  # a member user without an `email` claim
APPROVER = "approver@nhs.net"  # has the Entra app role CQRS.Approver
# Names outside Latin-1 and with apostrophes, as NHS staff have them: Polish, Welsh, Irish.
NON_LATIN_NAMES = {
    "lukasz.zolc@nhs.net": "Łukasz Żółć",
    "sian.llyr@nhs.net": "Siân Llŷr",
    "siobhan.obrien@nhs.net": "Siobhán O'Brien-Ní Dhuibhir",
}
ACCOUNTS = {
    GP_USER: "CQRS-0001",
    NO_EMAIL_USER: "CQRS-0002",
    APPROVER: "CQRS-0003",
    **{email: f"CQRS-01{number:02d}" for number, email in enumerate(NON_LATIN_NAMES)},
    "app:reporting-script": "CQRS-APP-01",  # an API client's account (client credentials)
}


class SuiteLog(logging.Handler):
    """Every log record of the whole run, formatted, for the no-secrets-in-logs check."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record must not break the run
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        self.lines.append((record.name, text))


SUITE_LOG = SuiteLog()
# Values that must never appear in a log line: filled in as the suite hands them out.
SENSITIVE: set[str] = {CLIENT_SECRET}


@pytest.fixture(scope="session", autouse=True)
def _no_secret_ever_reaches_a_log() -> Iterator[None]:
    """Greps every log line of the whole run for every token, code, cookie value, secret
    and password the run handed out. Client libraries' own request lines (httpx, httpcore:
    the *test's* browser logs the callback URL it follows) are left out."""
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(SUITE_LOG)
    root.setLevel(logging.INFO)
    yield
    root.removeHandler(SUITE_LOG)
    root.setLevel(previous_level)
    password = re.compile(rf"(?<![\w-]){re.escape(PASSWORD)}(?![\w-])")
    SENSITIVE.update(ISSUED_COOKIE_VALUES)
    checked = [
        (name, text) for name, text in SUITE_LOG.lines if not name.startswith(("httpx", "httpcore"))
    ]  # httpx2 too
    leaks = [
        (name, text[:200])
        for name, text in checked
        if password.search(text) or any(secret in text for secret in SENSITIVE if len(secret) >= 8)
    ]
    assert not leaks, f"secrets in {len(leaks)} log lines, e.g. {leaks[:3]}"


class FakeClock:
    """Real time plus an offset tests can move, so provider-issued tokens stay fresh."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def lookup_accounts(identity: Identity) -> Account | None:
    account_id = ACCOUNTS.get(identity.email)
    return Account(account_id, identity.email, {"organisation": "Test Surgery"}) if account_id else None


@pytest.fixture(scope="session")
def provider_server() -> Iterator[NHSmailLikeProvider]:
    """The built-in provider, served by uvicorn on a free loopback port for the whole run."""
    sock = bind_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    users = [
        DemoUser(GP_USER, PASSWORD, "Dr Gita Patel"),
        DemoUser(NEW_USER, PASSWORD, "Nia Evans", company_name="Riverside Practice (Y00002)"),
        DemoUser(NO_EMAIL_USER, PASSWORD, "Sam Member", include_email_claim=False),
        DemoUser(APPROVER, PASSWORD, "Alex Approver", roles=("CQRS.Approver",)),
        *(DemoUser(email, PASSWORD, name) for email, name in NON_LATIN_NAMES.items()),
    ]
    client = DemoClient(
        CLIENT_ID,
        CLIENT_SECRET,
        (f"{APP_ORIGIN}/oauth2/callback",),
        post_logout_redirect_uris=(f"{APP_ORIGIN}/oauth2/signed_out",),
    )
    # Single sign-on off: most tests sign in again and again in one "browser". Tests of the
    # shared-PC story switch it on (the demo and `cqrs-sso provider` have it on, like Entra).
    instance = NHSmailLikeProvider(url, TENANT_ID, users, [client], single_sign_on=False)
    server = BackgroundASGIServer(instance.app, sock).start()
    yield instance
    server.stop()
    SENSITIVE.update(instance.issued_secrets)


@pytest.fixture
def provider(provider_server: NHSmailLikeProvider) -> Iterator[NHSmailLikeProvider]:
    """The shared provider, with any faults a test switched on switched off afterwards."""
    yield provider_server
    provider_server.faults = ProviderFaults()
    provider_server.single_sign_on = False
    provider_server.sends_auth_time = False
    provider_server.sso_sessions.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


REDIS_URL = os.environ.get("CQRS_SSO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_reachable(url: str = REDIS_URL) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the test Redis; every key under it is deleted after."""
    require(redis_reachable(), f"Redis is not reachable at {REDIS_URL} (set CQRS_SSO_TEST_REDIS_URL)")
    prefix = f"cqrs_sso_test:{secrets.token_hex(6)}:"
    yield prefix
    delete_keys(prefix)


def delete_keys(prefix: str) -> None:
    """Every key under ``prefix`` in the test Redis (what a test or module wrote there)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def session_store() -> str:
    """Which session store the app under test uses; modules override it with params."""
    return "cookie"


# -- Redis topologies of the tests' own: TLS, Sentinel, Cluster (tests/redis_servers.py) ----------


def _require_redis_server() -> None:
    from .redis_servers import redis_server_available

    require(redis_server_available(), "redis-server and redis-cli are not installed (Debian: redis-server)")


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One redis-server speaking only TLS, with a CA made here; yields (node, TLS files)."""
    from .redis_servers import free_port, make_tls_files, start_redis

    _require_redis_server()
    folder = tmp_path_factory.mktemp("redis-tls")
    tls = make_tls_files(folder / "tls")
    node = start_redis(folder / "node", free_port(), tls=tls)
    yield node
    node.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A primary, one replica and three Sentinels, shared by the tests that do not kill it."""
    from .redis_servers import start_sentinel_set

    _require_redis_server()
    group = start_sentinel_set(tmp_path_factory.mktemp("redis-sentinel"))
    yield group
    group.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three primaries with a replica each, shared by the tests that do not kill a node."""
    from .redis_servers import start_cluster

    _require_redis_server()
    group = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield group
    group.stop()


def topology_settings(name: str, request: pytest.FixtureRequest, own_prefix: bool = False) -> dict[str, Any]:
    """``session_store`` (and TLS) settings for a store kind; a key prefix of the test's own
    (``own_prefix``: made here, for a fixture wider than one test, which deletes its keys
    with ``delete_keys``)."""
    prefix = f"cqrs_sso_test:{secrets.token_hex(6)}:"
    if name == "redis":
        if own_prefix:
            require(redis_reachable(), f"Redis is not reachable at {REDIS_URL} (set CQRS_SSO_TEST_REDIS_URL)")
            return {"session_store": REDIS_URL, "session_key_prefix": prefix}
        return {"session_store": REDIS_URL, "session_key_prefix": request.getfixturevalue("redis_prefix")}
    if name == "redis-tls":
        node = request.getfixturevalue("redis_tls")
        return {
            "session_store": f"rediss://127.0.0.1:{node.port}/0",
            "redis_tls_ca_file": str(node.tls.ca),
            "session_key_prefix": prefix,
        }
    if name == "sentinel":
        return {"session_store": request.getfixturevalue("redis_sentinel").url, "session_key_prefix": prefix}
    if name == "cluster":
        return {"session_store": request.getfixturevalue("redis_cluster").url, "session_key_prefix": prefix}
    return {"session_store": name}


@pytest.fixture
def store_settings(session_store: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    return topology_settings(session_store, request)


@pytest.fixture
def make_settings(provider: NHSmailLikeProvider, store_settings: dict[str, Any]) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        key = secrets.token_urlsafe(32)
        SENSITIVE.add(key)
        values: dict[str, Any] = {
            "secret_keys": (key,),
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "base_url": APP_ORIGIN,
            "account_lookup": lookup_accounts,
            "public_paths": ("/static/*", "/healthz"),
            "http_timeout_seconds": 3.0,
            **store_settings,
            **overrides,
        }
        return Settings(**values)

    return build


def _names_identity(header: str) -> bool:
    name = header.lower().replace("_", "-")
    return any(word in name for word in ("forwarded", "remote", "cqrs", "auth-request"))


def echo_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The app behind the WSGI middleware: says who it believes is signed in."""
    user = environ.get("cqrs_sso.user")
    leaked = {k: v for k, v in environ.items() if k.startswith("HTTP_") and _names_identity(k)}
    body = {
        "path": environ.get("PATH_INFO"),
        "user": user.email if user else None,
        "remote_user": environ.get("REMOTE_USER"),
        "account_id": user.account.account_id if user else None,
        "roles": sorted(user.roles) if user else None,
        "identity_headers": leaked,
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


async def _echo(request: Request) -> JSONResponse:
    user = request.scope.get("cqrs_sso.user")
    leaked = {k: v for k, v in request.headers.items() if _names_identity(k)}
    return JSONResponse(
        {
            "path": request.url.path,
            "user": user.email if user else None,
            "starlette_user": request.user.display_name if "user" in request.scope else None,
            "auth": list(request.auth.scopes) if "auth" in request.scope else None,
            "account_id": user.account.account_id if user else None,
            "roles": sorted(user.roles) if user else None,
            "identity_headers": leaked,
        }
    )


async def _socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.scope['cqrs_sso.user'].email}")
    await websocket.close()


def echo_asgi() -> Starlette:
    return Starlette(
        routes=[
            Route("/{path:path}", _echo, methods=["GET", "POST", "HEAD", "PUT", "DELETE"]),
            WebSocketRoute("/ws", _socket),
        ]
    )


@pytest.fixture(params=["asgi", "wsgi"])
def demo(request: pytest.FixtureRequest) -> Iterator[DemoStack]:
    """The demo stack (provider + demo app) on free loopback ports, in both variants."""
    stack = start_demo(0, 0, request.param)
    yield stack
    stack.stop()


@pytest.fixture(params=["wsgi", "asgi"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(
    driver: str, make_settings: Callable[..., Settings], clock: FakeClock
) -> Iterator[Callable[..., AppClient]]:
    made: list[AppClient] = []

    def build(
        store: Any = None,
        settings: Settings | None = None,
        metrics: Any = None,
        tracing: Any = None,
        **overrides: Any,
    ) -> AppClient:
        """A client of a new middleware; ``store`` shares a session store between two of
        them, ``settings`` shares their configuration (two instances of one service);
        ``metrics`` (an ``SSOMetrics``) hears the runtime and is served at /metrics."""
        settings = settings or make_settings(**overrides)
        client: AppClient
        observers = metrics.observers() if metrics is not None else Observers()
        runtime = Runtime.from_settings(
            settings, clock=clock, store=store, observers=observers, tracing=tracing
        )
        if driver == "wsgi":
            client = WSGIClient(SSOMiddleware(echo_wsgi, runtime=runtime, metrics=metrics))
        else:
            client = ASGIClient(ASGISSOMiddleware(echo_asgi(), runtime=runtime, metrics=metrics))
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


@pytest.fixture
def make_instance(
    make_client: Callable[..., AppClient], make_settings: Callable[..., Settings], session_store: str
) -> Callable[[], AppClient]:
    """Clients of one service's instances: the same settings and the same session store
    (one MemoryStore object shared, or one Redis URL), as behind a load balancer."""
    from cqrs_sso_middleware.stores import MemoryStore

    settings = make_settings()
    shared = MemoryStore() if session_store == "memory" else None
    return lambda: make_client(store=shared, settings=settings)


@pytest.fixture
def app_client(make_client: Callable[..., AppClient]) -> AppClient:
    return make_client()


@pytest.fixture
def make_journey(make_client: Callable[..., AppClient]) -> Iterator[Callable[..., Journey]]:
    made: list[Journey] = []

    def build(client: AppClient | None = None, **overrides: Any) -> Journey:
        journey = Journey(client or make_client(**overrides))
        made.append(journey)
        return journey

    yield build
    for journey in made:
        journey.close()


@pytest.fixture
def journey(app_client: AppClient, make_journey: Callable[..., Journey]) -> Journey:
    return make_journey(app_client)
