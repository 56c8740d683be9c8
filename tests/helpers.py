"""Test helpers: one browser-like interface over both drivers, and the provider's login form."""

from __future__ import annotations

import html
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest
import webtest
from starlette.testclient import TestClient

HTML = {"Accept": "text/html,application/xhtml+xml"}
# The repository's lock. Tests that install the package into a new venv the way a user would
# (`pip install '.[examples]'`, the wheel, the image's line) install these versions, so that
# a release elsewhere cannot turn the suite red.
CONSTRAINTS = Path(__file__).parent.parent / "requirements" / "constraints.txt"
LOCKED_PIP = {"PIP_CONSTRAINT": str(CONSTRAINTS)}
T = TypeVar("T")
APP_ORIGIN = "http://localhost"


# Ports for the servers tests start (nginx, Caddy, proxies, Redis nodes) come from a range of
# this test process's own, below the kernel's ephemeral range (32768-60999 on Linux): no
# bind to port 0, no outgoing connection and no other pytest-xdist worker can take a port
# between our choosing it and the server binding it. Each call moves on, so one process
# does not hand out the same port twice until its range wraps.
_FIRST_PORT, _PORTS_PER_WORKER, _WORKERS = 10000, 1200, 8
_next_port: list[int] = []


def free_port(with_bus: bool = False, count: int = 1) -> int:
    """A loopback port nobody listens on (and the ``count - 1`` above it; ``with_bus``: its
    Redis cluster-bus port, +10000, too), from this process's own range."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % _WORKERS
    first = _FIRST_PORT + worker * _PORTS_PER_WORKER
    if not _next_port:
        _next_port.append(first)
    for _ in range(_PORTS_PER_WORKER):
        port = _next_port[0]
        _next_port[0] = first + (port + count - first) % (_PORTS_PER_WORKER - count)
        wanted = [*range(port, port + count), *([port + 10000] if with_bus else [])]
        if all(_bindable(candidate) for candidate in wanted):
            return port
    raise RuntimeError("no free port in this test process's range")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require(condition: bool, reason: str) -> None:
    """Skip when a component (Node, Chromium, nginx) is missing — fail instead under CI=true."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing component is a failure)")
    pytest.skip(reason)


def lands_on_our_origin(path: str, origin: str = "https://cqrs.example.nhs.uk") -> bool:
    """Resolve a return path as a lenient browser would, at every decoding depth."""
    host = urlsplit(origin).netloc
    value = path
    for _ in range(5):
        browser_view = value.replace("\\", "/").replace("\t", "").replace("\r", "").replace("\n", "")
        if urlsplit(urljoin(origin + "/", browser_view)).netloc != host:
            return False
        value = unquote(value)
    return True


# Every cookie value the middleware hands out; tests/conftest.py checks none is ever logged.
ISSUED_COOKIE_VALUES: set[str] = set()


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    text: str
    body: bytes = b""

    def __post_init__(self) -> None:
        for name, value in self.headers:
            if name.lower() == "set-cookie":
                cookie_value = value.split(";", 1)[0].partition("=")[2]
                if len(cookie_value) >= 16:
                    ISSUED_COOKIE_VALUES.add(cookie_value)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def location(self) -> str:
        value = self.header("location")
        assert value is not None, f"no Location in {self.status} reply"
        return value

    def json(self) -> Any:
        import json

        return json.loads(self.text)


class AppClient(Protocol):
    driver: str

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply: ...

    def post(self, path: str, data: Mapping[str, str], headers: Mapping[str, str] | None = None) -> Reply: ...

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply: ...

    def cookie_names(self) -> list[str]: ...

    def set_cookie(self, name: str, value: str) -> None: ...

    def clear_cookies(self) -> None: ...

    def close(self) -> None: ...


class WSGIClient:
    driver = "wsgi"

    def __init__(self, app: Any) -> None:
        self.middleware = app
        self.test_app = webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"})

    def close(self) -> None:
        self.middleware.close()

    def _reply(self, response: Any) -> Reply:
        return Reply(response.status_int, list(response.headerlist), response.text, response.body)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self._reply(self.test_app.get(path, headers=dict(headers or {}), expect_errors=True))

    def post(self, path: str, data: Mapping[str, str], headers: Mapping[str, str] | None = None) -> Reply:
        return self._reply(
            self.test_app.post(path, dict(data), headers=dict(headers or {}), expect_errors=True)
        )

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self._reply(
            self.test_app.request(path, method=method, headers=dict(headers or {}), expect_errors=True)
        )

    def cookie_names(self) -> list[str]:
        return [cookie.name for cookie in self.test_app.cookiejar]

    def set_cookie(self, name: str, value: str) -> None:
        self.test_app.set_cookie(name, value)

    def clear_cookies(self) -> None:
        self.test_app.reset()


class ASGIClient:
    driver = "asgi"

    def __init__(self, app: Any) -> None:
        self.middleware = app
        # Entered once: one event loop for the client's lifetime, as under a real server,
        # so the middleware's connection pool is not bound to a loop that has gone.
        self.client = TestClient(app, base_url=APP_ORIGIN, follow_redirects=False).__enter__()

    def close(self) -> None:
        assert self.client.portal is not None
        self.client.portal.call(self.middleware.aclose)
        self.client.__exit__(None, None, None)

    def _reply(self, response: httpx.Response) -> Reply:
        return Reply(
            response.status_code, list(response.headers.multi_items()), response.text, response.content
        )

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self._reply(self.client.get(path, headers=dict(headers or {})))

    def post(self, path: str, data: Mapping[str, str], headers: Mapping[str, str] | None = None) -> Reply:
        return self._reply(self.client.post(path, data=dict(data), headers=dict(headers or {})))

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self._reply(self.client.request(method, path, headers=dict(headers or {})))

    def cookie_names(self) -> list[str]:
        return [cookie.name for cookie in self.client.cookies.jar]

    def set_cookie(self, name: str, value: str) -> None:
        # httpx files cookies of a dot-less host under "<host>.local" (RFC 2965 §3.3.1, via
        # http.cookiejar); a cookie set for plain "localhost" would never be sent.
        self.client.cookies.set(name, value, domain="localhost.local")

    def clear_cookies(self) -> None:
        self.client.cookies.clear()


def form_fields(page: str) -> dict[str, str]:
    """Hidden and value-bearing inputs of the first form on a page."""
    first_form = page.split("</form>", 1)[0]
    pairs = re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', first_form)
    return {name: html.unescape(value) for name, value in pairs}


def visible_text(page: str) -> str:
    """A page's text as a person reads it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Journey:
    """A person going through the steps of the user guide with one browser (one cookie jar)."""

    app: AppClient
    provider: httpx.Client = field(default_factory=lambda: httpx.Client(follow_redirects=False, timeout=10))

    def open(self, path: str = "/messages") -> Reply:
        return self.app.get(path, HTML)

    def sign_in_page(self, path: str = "/messages") -> Reply:
        first = self.open(path)
        assert first.status == 303, first.status
        return self.app.get(first.location, HTML)

    def click_sign_in(self, sign_in_page: Reply) -> str:
        """Seed step 2: POST the Sign In form; return the provider's authorize URL."""
        fields = form_fields(sign_in_page.text)
        reply = self.app.post("/oauth2/start", fields, HTML)
        assert reply.status == 303, (reply.status, reply.text[:300])
        return reply.location

    def provider_login(
        self, authorize_url: str, email: str, password: str, action: str = "sign_in"
    ) -> httpx.Response:
        page = self.provider.get(authorize_url)
        assert page.status_code == 200, page.text[:300]
        fields = form_fields(page.text)
        fields.update(login=email, passwd=password, action=action)
        return self.provider.post(authorize_url.split("?")[0], data=fields)

    def start(self, path: str = "/messages") -> str:
        return self.click_sign_in(self.sign_in_page(path))

    def callback(self, callback_url: str) -> Reply:
        """The callback, followed to the page it ends on, as a browser would: a sign-in that
        gives no session ends on ``/oauth2/sign_in_result`` (POST/redirect/GET)."""
        assert callback_url.startswith(APP_ORIGIN + "/oauth2/callback"), callback_url
        reply = self.app.get(path_of(callback_url), HTML)
        if reply.status == 303 and reply.location == "/oauth2/sign_in_result":
            return self.app.get(reply.location, HTML)
        return reply

    def close(self) -> None:
        self.provider.close()

    def sign_in(self, email: str, password: str = "cqrs-demo", path: str = "/messages") -> Reply:
        """Steps 1–3 end to end; returns the callback's reply."""
        answer = self.provider_login(self.start(path), email, password)
        assert answer.status_code in (302, 303), answer.text[:300]
        return self.callback(answer.headers["location"])


def record_provider_requests(client: AppClient) -> list[str]:
    """URLs of every request the middleware behind ``client`` sends to the provider."""
    seen: list[str] = []
    provider_http = client.middleware.runtime.provider_http  # type: ignore[attr-defined]
    if client.driver == "wsgi":
        provider_http.sync.client.event_hooks["request"].append(lambda request: seen.append(str(request.url)))
    else:
        http = provider_http.async_.client

        async def record(request: httpx.Request) -> None:
            seen.append(str(request.url))

        http.event_hooks["request"].append(record)
    return seen


def jwks_fetches(seen: list[str]) -> int:
    return sum(1 for url in seen if "keys" in url.rsplit("/", 1)[-1] or url.endswith("/jwks"))


def wait_until(condition: Callable[[], T | None], what: str, seconds: float = 10) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail naming
    ``what`` when the time runs out. For things that happen soon but not at once (a log
    line flushed in a batch, a process that finished starting), instead of a fixed sleep."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g}s for {what}")
        time.sleep(0.02)


def completes(call: Callable[[], T], what: str, seconds: float = 30) -> T:
    """``call()``, failing instead of hanging when it has not returned after ``seconds``: a
    generous bound that turns a missing time-out into a failed test. Nothing is timed."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        try:
            return future.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            raise AssertionError(f"{what} did not return: it would have hung") from None


def wait_for_http(
    url: str, process: Any, what: str, seconds: float = 20, log: Any = None, server: str = ""
) -> None:
    """Wait until ``url`` answers at all (any status) — with ``server``, in a ``Server``
    header starting so, so that another process on the port cannot pass for this one; fail
    with ``what`` (and the end of ``log``, a path) if ``process`` exits or the time runs
    out. The process is killed then."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            reply = httpx.get(url, timeout=1)
            if reply.headers.get("server", "").lower().startswith(server.lower()):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            detail = f":\n{Path(log).read_text(errors='replace')[-2000:]}" if log else ""
            raise RuntimeError(f"{what} did not start{detail}")
        time.sleep(0.05)
