"""The proxy as a real `cqrs-sso proxy` process in front of a real legacy app server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider
from cqrs_sso_middleware.serving import bind_socket

from ..conftest import ACCOUNTS, CLIENT_SECRET, NO_EMAIL_USER, SENSITIVE
from ..helpers import HTML, form_fields, free_port, require, wait_for_http

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def start_nginx(
    folder: Path, port: int, site: str, workers: int = 1, access_log: bool = True
) -> subprocess.Popen[bytes]:
    """nginx (Debian's) serving ``site`` — a server block listening on ``port`` — from a
    folder of its own; returns once it answers. The test (or benchmark) stops it."""
    require(Path(NGINX).exists(), "nginx is not installed (apt-get install nginx)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.conf").write_text(site)
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    log = f"{folder}/access.log" if access_log else "off"
    main = f"""{user}worker_processes {workers};
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {log};
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {folder}/site.conf;
}}
"""
    (folder / "nginx.conf").write_text(main)
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf")], stderr=subprocess.DEVNULL
    )
    wait_for_http(f"http://127.0.0.1:{port}/", process, "nginx", log=folder / "error.log", server="nginx")
    return process


@dataclass
class ProxyProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) if match else 0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 35) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The proxy runs in a process group of its own: a SIGKILL reaches the supervisor
        # only, and its workers would outlive the test (and the suite) without this.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


@dataclass
class LegacyServer:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def legacy() -> Iterator[LegacyServer]:
    """tests/proxy/legacy_app.py served by gunicorn, as a legacy WSGI service would be."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "gthread",
            "--threads",
            "8",
            "-w",
            "2",
            "--timeout",
            "120",
            "--graceful-timeout",
            "5",
            "tests.proxy.legacy_app:legacy_app",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/ping", process, "gunicorn")
    yield LegacyServer(url, process)
    process.terminate()
    process.wait(timeout=15)


def launch_proxy(
    provider: NHSmailLikeProvider,
    upstream: str,
    folder: Path,
    args: Sequence[str] = (),
    redirect_origin: str = "",
    **env: str,
) -> ProxyProcess:
    """A `cqrs-sso proxy` process on a free port, registered with ``provider`` as a client
    of its own, its accounts file and log in ``folder``; returns once /healthz answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client_id = f"proxy-{port}"
    callback = f"{redirect_origin or url}/oauth2/callback"
    provider.clients[client_id] = DemoClient(client_id, CLIENT_SECRET, (callback,))
    accounts = folder / "accounts.csv"
    rows = [f"{email},{account}" for email, account in ACCOUNTS.items() if email != NO_EMAIL_USER]
    accounts.write_text("email,account_id\n" + "\n".join(rows) + "\n")
    key = secrets.token_urlsafe(32)
    SENSITIVE.add(key)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CQRS_SSO_ISSUER": provider.issuer,
        "CQRS_SSO_CLIENT_ID": client_id,
        "CQRS_SSO_CLIENT_SECRET": CLIENT_SECRET,
        "CQRS_SSO_SECRET_KEYS": key,
        "CQRS_SSO_BASE_URL": url,
        "CQRS_SSO_ACCOUNT_LOOKUP": f"csv:{accounts}",
        "CQRS_SSO_UPSTREAM": upstream,
        **env,
    }
    if "CQRS_SSO_PROVIDERS" in env:
        # Several providers: the first is this provider with the client just registered
        # ("{client_id}" in the JSON), instead of the flat variables.
        for flat in ("CQRS_SSO_ISSUER", "CQRS_SSO_CLIENT_ID", "CQRS_SSO_CLIENT_SECRET"):
            environment.pop(flat)
        environment["CQRS_SSO_PROVIDERS"] = env["CQRS_SSO_PROVIDERS"].replace("{client_id}", client_id)
    log_path = folder / f"proxy-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cqrs_sso_middleware.cli",
                "proxy",
                "--listen",
                f"127.0.0.1:{port}",
                *args,
            ],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proxy = ProxyProcess(url, process, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("proxy exited:\n" + "\n".join(proxy.log_lines()[-20:]))
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proxy
        except httpx.HTTPError:
            time.sleep(0.1)
    proxy.stop(signal.SIGKILL)
    raise RuntimeError("proxy did not start:\n" + "\n".join(proxy.log_lines()[-20:]))


@pytest.fixture
def start_proxy(
    provider: NHSmailLikeProvider, legacy: LegacyServer, tmp_path: Path
) -> Iterator[Callable[..., ProxyProcess]]:
    """Proxies of this test's own, stopped when it ends."""
    started: list[ProxyProcess] = []

    def start(*args: str, redirect_origin: str = "", **env: str) -> ProxyProcess:
        env.setdefault("CQRS_SSO_UPSTREAM", legacy.url)
        proxy = launch_proxy(provider, env.pop("CQRS_SSO_UPSTREAM"), tmp_path, args, redirect_origin, **env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def start_module_proxy(
    provider_server: NHSmailLikeProvider, legacy: LegacyServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ProxyProcess]]:
    """Proxies shared by every test of a module (each test signs in with a browser of its
    own): one process start per module instead of one per test."""
    started: list[ProxyProcess] = []
    folder = tmp_path_factory.mktemp("module-proxy")

    def start(*args: str, redirect_origin: str = "", **env: str) -> ProxyProcess:
        env.setdefault("CQRS_SSO_UPSTREAM", legacy.url)
        upstream = env.pop("CQRS_SSO_UPSTREAM")
        proxy = launch_proxy(provider_server, upstream, folder, args, redirect_origin, **env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop(signal.SIGKILL)


@dataclass
class Browser:
    """An HTTP client walking the steps of the user guide through a proxy (or nginx)."""

    origin: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(follow_redirects=False, timeout=30))

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.client.get(self.origin + path, headers={**HTML, **kwargs.pop("headers", {})}, **kwargs)  # type: ignore[arg-type]

    def sign_in(self, email: str, password: str = "cqrs-demo", path: str = "/messages") -> httpx.Response:
        first = self.get(path)
        page = (
            self.client.get(self.origin + first.headers["location"], headers=HTML)
            if first.status_code in (302, 303)
            else first
        )
        assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in page.text, page.text[:300]
        start = self.client.post(self.origin + "/oauth2/start", data=form_fields(page.text), headers=HTML)
        assert start.status_code == 303, start.text[:300]
        return self.at_provider(start.headers["location"], email, password)

    def at_provider(self, authorize_url: str, email: str, password: str = "cqrs-demo") -> httpx.Response:
        """The provider's login form, then the callback."""
        login = self.client.get(authorize_url)
        fields = {**form_fields(login.text), "login": email, "passwd": password, "action": "sign_in"}
        answer = self.client.post(authorize_url.split("?")[0], data=fields)
        assert answer.status_code == 302, answer.text[:300]
        return self.callback(answer.headers["location"])

    def step_up(self, page: httpx.Response, email: str) -> httpx.Response:
        """The step-up page's button ("Sign in again"), then the password at the provider."""
        start = self.client.post(self.origin + "/oauth2/start", data=form_fields(page.text), headers=HTML)
        assert start.status_code == 303, start.text[:300]
        return self.at_provider(start.headers["location"], email)

    def steps_up_for(self, path: str, email: str, provider: NHSmailLikeProvider) -> None:
        """Signed in without a known sign-in time, ``path`` asks for a recent sign-in (the
        step-up page, in place); after the password again — with ``auth_time`` in the token
        this time — it opens."""
        asked = self.get(path)
        assert asked.status_code == 401 and "Sign in again to continue" in asked.text, asked.text[:300]
        provider.sends_auth_time = True
        try:
            back = self.step_up(asked, email)
        finally:
            provider.sends_auth_time = False
        assert back.status_code == 303 and back.headers["location"] == path
        seen = self.get(path)
        assert seen.status_code == 200 and seen.json()["path"] == path

    def callback(self, url: str) -> httpx.Response:
        """The callback, followed to ``/oauth2/sign_in_result`` when the sign-in ends there."""
        reply = self.client.get(url, headers=HTML)
        if reply.status_code == 303 and reply.headers["location"] == "/oauth2/sign_in_result":
            return self.client.get(self.origin + reply.headers["location"], headers=HTML)
        return reply

    def close(self) -> None:
        self.client.close()


class RecordingUpstream(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 server that answers 200 with the request target exactly as received, and
    keeps every request head byte for byte (``heads``): what really reached the upstream."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.targets: list[bytes] = []
        self.heads: list[bytes] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, RecordingUpstream)
        request_line = self.rfile.readline(65537)
        head = [request_line]
        while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            head.append(line)
        target = request_line.split(b" ")[1] if request_line.count(b" ") >= 2 else b""
        server.targets.append(target)
        server.heads.append(b"".join(head))
        body = json.dumps({"target": target.decode("latin-1")}).encode()
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


def serve_recorder() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


recorder = pytest.fixture(serve_recorder, name="recorder")
module_recorder = pytest.fixture(serve_recorder, name="module_recorder", scope="module")


def raw_get(
    origin: str, target: str, headers: Sequence[tuple[str, str]] = ()
) -> tuple[int, dict[str, str], bytes]:
    """GET with the request target and ``headers`` sent byte for byte (HTTP clients
    normalise both: names' case and spelling, the path)."""
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"GET " + target.encode("latin-1") + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
            + b"\r\nAccept: text/html\r\n" + extra + b"Connection: close\r\n\r\n"
        )  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def make_browser() -> Iterator[Callable[[str], Browser]]:
    made: list[Browser] = []

    def build(origin: str) -> Browser:
        browser = Browser(origin)
        made.append(browser)
        return browser

    yield build
    for browser in made:
        browser.close()


@pytest.fixture
def websocket_upstream() -> Iterator[str]:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from cqrs_sso_middleware.serving import BackgroundASGIServer

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        user = websocket.headers.get("x-forwarded-user")
        async for text in websocket.iter_text():
            await websocket.send_text(f"{user}: {text}")

    server = BackgroundASGIServer(Starlette(routes=[WebSocketRoute("/ws", echo)]), bind_socket()).start()
    yield server.url
    server.stop()
