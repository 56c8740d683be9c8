"""`cqrs-sso proxy` as a real process: the steps of the user guide, header hygiene, streaming, faults,
operations."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import GP_USER, NEW_USER
from ..helpers import wait_until
from .conftest import Browser, ProxyProcess, free_port, start_nginx

GIB = 1 << 30


# The tests that only read through a proxy share one for the module (each signs in with a
# browser of its own); the module runs on one worker, so the proxy starts once.
pytestmark = pytest.mark.xdist_group("proxy_process")


@pytest.fixture(scope="module")
def proxy(start_module_proxy: Callable[..., ProxyProcess]) -> ProxyProcess:
    return start_module_proxy()


@pytest.fixture
def signed_in(proxy: ProxyProcess, make_browser: Callable[[str], Browser]) -> Browser:
    browser = make_browser(proxy.url)
    reply = browser.sign_in(GP_USER)
    assert reply.status_code == 303
    return browser


def test_seed_steps_through_the_proxy(proxy: ProxyProcess, make_browser: Callable[[str], Browser]) -> None:
    browser = make_browser(proxy.url)
    assert browser.get("/messages").status_code == 303  # step 1
    assert browser.get("/api", headers={"Accept": "application/json"}).status_code == 401
    reply = browser.sign_in(GP_USER, path="/messages?tab=1")  # steps 2-3
    assert reply.headers["location"] == "/messages?tab=1"
    seen = browser.get("/messages?tab=1").json()
    assert seen["path"] == "/messages"
    assert seen["query"] == "tab=1"
    assert seen["headers"]["x-forwarded-user"] == GP_USER
    assert seen["headers"]["x-forwarded-email"] == GP_USER
    assert seen["headers"]["x-cqrs-account"] == "CQRS-0001"
    other = make_browser(proxy.url)
    denied = other.sign_in(NEW_USER)  # step 5
    assert denied.status_code == 403
    assert "no CQRS account is associated" in denied.text


@pytest.mark.parametrize(
    "header",
    [
        "X-Forwarded-User",
        "X_Forwarded_User",
        "X-Forwarded-Email",
        "X-CQRS-Account",
        "Remote-User",
        "X-Auth-Request-User",
    ],
)
def test_spoofed_identity_headers_never_reach_the_legacy_app(signed_in: Browser, header: str) -> None:
    seen = signed_in.get("/echo", headers={header: "attacker@nhs.net"}).json()["headers"]
    assert "attacker@nhs.net" not in json.dumps(seen)
    assert seen["x-forwarded-user"] == GP_USER


def test_our_cookies_and_hop_by_hop_headers_do_not_pass(signed_in: Browser) -> None:
    signed_in.client.cookies.set("app_pref", "dark", domain="127.0.0.1")
    reply = signed_in.get(
        "/echo", headers={"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "TE": "trailers"}
    )
    seen = reply.json()["headers"]
    assert seen.get("cookie") == "app_pref=dark"  # session, CSRF and attempt cookies removed
    assert "x-secret-hop" not in seen
    assert "te" not in seen
    assert "keep-alive" not in reply.headers
    assert len(reply.headers.get_list("date")) == 1
    assert "uvicorn" not in reply.headers.get_list("server")


def test_forwarded_headers_from_an_untrusted_client_are_replaced(signed_in: Browser) -> None:
    spoof = {"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    seen = signed_in.get("/echo", headers=spoof).json()["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == signed_in.origin.removeprefix("http://")


def test_forwarded_headers_from_a_trusted_proxy_are_kept(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    proxy = start_proxy(CQRS_SSO_TRUSTED_PROXIES="127.0.0.1/32")
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER)
    spoof = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "cqrs.example.nhs.uk",
    }
    seen = browser.get("/echo", headers=spoof).json()["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "cqrs.example.nhs.uk"


def test_upstream_location_is_rewritten_to_the_public_origin(signed_in: Browser) -> None:
    reply = signed_in.get("/redirect")
    assert reply.status_code == 302
    assert reply.headers["location"] == f"{signed_in.origin}/landing?x=1"


def test_request_id_is_propagated_and_logged_as_json(proxy: ProxyProcess, signed_in: Browser) -> None:
    reply = signed_in.get("/echo", headers={"X-Request-ID": "lb-42-abc"})
    assert reply.headers["x-request-id"] == "lb-42-abc"
    assert reply.json()["headers"]["x-request-id"] == "lb-42-abc"

    def access_lines() -> list[dict[str, object]]:
        return [
            json.loads(line)
            for line in proxy.log_lines()
            if '"request_id"' in line and '"duration_ms"' in line
        ]

    # Access lines are written in batches (at most 0.25 s late): wait for ours.
    entry = wait_until(
        lambda: next((e for e in access_lines() if e["request_id"] == "lb-42-abc"), None), "the access line"
    )
    lines = access_lines()
    assert entry["path"] == "/echo"
    assert entry["status"] == 200
    callback = [e for e in lines if e["path"] == "/oauth2/callback"]
    assert callback
    assert all("code" not in json.dumps(e) for e in callback)  # no query strings in the log


def test_health_readiness_and_metrics(proxy: ProxyProcess, signed_in: Browser) -> None:
    assert httpx.get(f"{proxy.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{proxy.url}/readyz").json()["status"] == "ready"
    signed_in.get("/echo")
    metrics = httpx.get(f"{proxy.url}/metrics").text
    signed_in_count = re.search(r'cqrs_sso_sign_ins_total\{outcome="success"\} (\d+)\.0', metrics)
    assert signed_in_count and int(signed_in_count.group(1)) >= 1  # this test's, and the module's others
    assert 'cqrs_sso_upstream_responses_total{status="2xx"}' in metrics
    assert "cqrs_sso_lookup_seconds_count" in metrics
    assert 'cqrs_sso_session_checks_total{result="authenticated"}' in metrics


def test_metrics_are_refused_to_addresses_not_allowed(start_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = start_proxy(CQRS_SSO_METRICS_ALLOW="10.0.0.0/8")
    assert httpx.get(f"{proxy.url}/metrics").status_code == 404


def test_metrics_on_a_listener_of_their_own_cannot_be_read_through_a_front_proxy(
    start_proxy: Callable[..., ProxyProcess], tmp_path: Path
) -> None:
    """Behind nginx every request comes from nginx's address, which metrics_allow allows
    (loopback here, a private range in a container): without metrics_listen anybody could
    ask nginx for /metrics. With it, only the listener nginx does not route to answers."""
    metrics_port, front_port = free_port(), free_port()
    proxy = start_proxy(CQRS_SSO_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
    site = f"""server {{
    listen 127.0.0.1:{front_port};
    location / {{
        proxy_pass {proxy.url};
        proxy_set_header Host $host;
    }}
}}
"""
    nginx = start_nginx(tmp_path / "nginx", front_port, site)
    try:
        assert httpx.get(f"http://127.0.0.1:{front_port}/metrics").status_code == 404
        assert httpx.get(f"{proxy.url}/metrics").status_code == 404  # the main listener, from loopback
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200 and "cqrs_sso_sign_ins_total" in scraped.text
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/messages").status_code == 404  # metrics only
        started = next(line for line in proxy.log_lines() if line.startswith("cqrs-sso proxy: listening"))
        assert f"metrics on 127.0.0.1:{metrics_port}" in started
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


# -- streaming ---------------------------------------------------------------------------------


def test_one_gib_download_and_upload_stream_with_flat_memory(proxy: ProxyProcess, signed_in: Browser) -> None:
    baseline = proxy.peak_rss_kib()
    digest, received = hashlib.sha256(), 0
    with signed_in.client.stream("GET", f"{proxy.url}/download?size={GIB}") as reply:
        assert reply.status_code == 200
        for chunk in reply.iter_raw(1 << 20):
            received += len(chunk)
    assert received == GIB

    def body() -> Iterator[bytes]:
        block = b"y" * (1 << 20)
        for _ in range(1024):
            digest.update(block)
            yield block

    upload = signed_in.client.post(
        f"{proxy.url}/upload", content=body(), headers={"Content-Length": str(GIB)}
    )
    assert upload.json() == {"received": GIB, "sha256": digest.hexdigest()}
    growth_mib = (proxy.peak_rss_kib() - baseline) / 1024
    print(f"proxy peak RSS: {baseline / 1024:.0f} MiB before, +{growth_mib:.1f} MiB after 1 GiB each way")
    assert growth_mib < 64, f"proxy peak memory grew by {growth_mib:.0f} MiB while streaming 2 GiB"


# -- faults -------------------------------------------------------------------------------------


def test_upstream_refused_is_a_502_page(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    proxy = start_proxy(CQRS_SSO_UPSTREAM=f"http://127.0.0.1:{free_port()}")
    browser = make_browser(proxy.url)
    reply = browser.sign_in(GP_USER)
    page = browser.get(reply.headers["location"])
    assert page.status_code == 502
    assert "The service is not available" in page.text
    assert "support@cqrs.co.uk" in page.text
    assert "Traceback" not in page.text


def test_slow_upstream_is_a_504_page(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    proxy = start_proxy(CQRS_SSO_UPSTREAM_TIMEOUT_SECONDS="0.5")
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER)
    page = browser.get("/slow?s=2")
    assert page.status_code == 504
    assert "took too long" in page.text


def test_upstream_closing_mid_body_cuts_the_connection(signed_in: Browser) -> None:
    with pytest.raises(httpx.HTTPError):
        signed_in.get("/broken")


def test_provider_down_fails_closed(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    proxy = start_proxy(CQRS_SSO_ISSUER=f"http://127.0.0.1:{free_port()}/tenant/v2.0")
    assert httpx.get(f"{proxy.url}/readyz").status_code == 503
    browser = make_browser(proxy.url)
    first = browser.get("/messages")
    page = browser.client.get(proxy.url + first.headers["location"])
    from ..helpers import form_fields

    reply = browser.client.post(proxy.url + "/oauth2/start", data=form_fields(page.text))
    assert reply.status_code == 503
    assert browser.get("/messages").status_code == 303  # never a pass-through


def test_sigterm_lets_in_flight_requests_finish(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser], tmp_path: Path
) -> None:
    proxy = start_proxy()  # its own: this test stops it
    signed_in = make_browser(proxy.url)
    assert signed_in.sign_in(GP_USER).status_code == 303
    result: dict[str, httpx.Response] = {}
    arrived = tmp_path / "arrived"
    worker = threading.Thread(
        target=lambda: result.update(reply=signed_in.get(f"/slow?s=1.5&mark={arrived}"))
    )
    worker.start()
    wait_until(arrived.exists, "the slow request to reach the upstream")
    proxy.process.send_signal(signal.SIGTERM)
    worker.join(timeout=20)
    assert result["reply"].status_code == 200
    assert result["reply"].json() == {"slept": True}
    # uvicorn re-raises SIGTERM once shut down: "terminated by SIGTERM", after the request.
    assert proxy.process.wait(timeout=30) in (0, -signal.SIGTERM)


def test_bad_configuration_fails_at_start_with_one_line_per_problem(provider: NHSmailLikeProvider) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "cqrs_sso_middleware.cli", "proxy", "--upstream", "not-a-url"],
        env={
            "PATH": "/usr/bin:/bin",
            "CQRS_SSO_ISSUER": provider.issuer,
            "CQRS_SSO_CLIENT_ID": "x",
            "CQRS_SSO_CLIENT_SECRET": "y",
            "CQRS_SSO_SECRET_KEYS": "short",
            "CQRS_SSO_BASE_URL": "http://127.0.0.1:1",
            "CQRS_SSO_ACCOUNT_LOOKUP": "csv:/nonexistent.csv",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("config error: ") for line in lines)
    assert any("upstream (CQRS_SSO_UPSTREAM): " in line for line in lines)
    assert any("secret_keys (CQRS_SSO_SECRET_KEYS): " in line for line in lines)
    assert any("account_lookup:" in line for line in lines)
    assert "Traceback" not in result.stderr


# -- websockets -----------------------------------------------------------------------------------


def test_websocket_passes_through_after_the_session_check(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser], websocket_upstream: str
) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    proxy = start_proxy(CQRS_SSO_UPSTREAM=websocket_upstream)
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER, path="/")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.client.cookies.jar)
    ws_url = proxy.url.replace("http://", "ws://") + "/ws"

    async def talk() -> str:
        async with connect(
            ws_url, additional_headers={"Cookie": cookie, "X-Forwarded-User": "attacker"}
        ) as socket:
            await socket.send("hello")
            return str(await socket.recv())

    assert asyncio.run(talk()) == f"{GP_USER}: hello"

    async def anonymous() -> None:
        async with connect(ws_url):
            pass

    with pytest.raises(InvalidStatus):  # closed before accept: the handshake is refused
        asyncio.run(anonymous())


def test_start_up_line_says_what_runs_and_never_a_secret(start_proxy: Callable[..., ProxyProcess]) -> None:
    proxy = start_proxy(CQRS_SSO_SESSION_STORE="redis://:pw-s3cret-pw@127.0.0.1:6379/15")
    lines = [line for line in proxy.log_lines() if line.startswith("cqrs-sso proxy: listening on")]
    assert len(lines) == 1, proxy.log_lines()[-10:]
    line = lines[0]
    port = proxy.url.rsplit(":", 1)[1]
    assert f"listening on 127.0.0.1:{port}, upstream http://127.0.0.1:" in line
    assert "issuer http://127.0.0.1:" in line and "account lookup csv" in line
    assert "session store redis://:***@127.0.0.1:6379/15" in line
    assert line.endswith(f"open {proxy.url}/")
    everything = "\n".join(proxy.log_lines())
    assert "pw-s3cret-pw" not in everything
    assert "cqrs-test-secret" not in everything


def test_an_idle_keep_alive_connection_lasts_keep_alive_seconds(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    """keep_alive_seconds (default 75, as nginx) must outlast a load balancer's idle time-out,
    so it is what uvicorn is given: with 1 s here, the connection serves a second request
    and is then closed by the proxy well before uvicorn's own default of 5 s would."""
    import socket

    proxy = start_proxy(CQRS_SSO_KEEP_ALIVE_SECONDS="1")
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER)
    cookie = "; ".join(f"{name}={value}" for name, value in browser.client.cookies.items())
    host, port = proxy.url.removeprefix("http://").rsplit(":", 1)
    request = (
        f"GET /messages HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\nAccept: text/html\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for attempt in range(2):
            sock.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed before answer {attempt + 1}"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200"), head[:100]
            length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += sock.recv(65536)
        # Idle now: the proxy closes it (recv sees the end); a time-out here means it did
        # not, and uvicorn's 5 s default was in force.
        sock.settimeout(4)
        assert sock.recv(65536) == b""
