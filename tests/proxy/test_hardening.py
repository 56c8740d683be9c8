"""The attacker's review of the proxy, replayed against the real `cqrs-sso proxy` process in
front of an upstream that records every request head byte for byte."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator

import pytest

from ..conftest import GP_USER
from .conftest import Browser, ProxyProcess, RecordingUpstream, raw_get

pytestmark = pytest.mark.integration

REWRITING = [
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Original-URI",
    "X-Forwarded-Uri",
    "X-Forwarded-Prefix",
    "X-Forwarded-Path",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
]


def header_names(head: bytes) -> set[str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {line.split(":", 1)[0].strip().lower().replace("_", "-") for line in lines if ":" in line}


# The proxy in front of the recording upstream serves the whole module, on one worker.
pytestmark = pytest.mark.xdist_group("hardening")


@pytest.fixture
def recorder(module_recorder: RecordingUpstream) -> RecordingUpstream:
    """The module's recording upstream (the proxy below sends to it)."""
    return module_recorder


@pytest.fixture(scope="module")
def public_proxy(
    start_module_proxy: Callable[..., ProxyProcess], module_recorder: RecordingUpstream
) -> ProxyProcess:
    return start_module_proxy(
        CQRS_SSO_UPSTREAM=module_recorder.url, CQRS_SSO_PUBLIC_PATHS="/public/**,re:.*\\.css"
    )


@pytest.mark.parametrize("spelling", ["canonical", "lower", "underscores"])
def test_url_rewriting_headers_never_reach_the_upstream(
    public_proxy: ProxyProcess, recorder: RecordingUpstream, spelling: str
) -> None:
    """GET /public/a with X-Original-URL: /admin: the check saw /public/a; an IIS or old
    Symfony upstream would have served /admin."""

    def spell(name: str) -> str:
        return {"canonical": name, "lower": name.lower(), "underscores": name.replace("-", "_")}[spelling]

    status, _, _ = raw_get(public_proxy.url, "/public/a", [(spell(name), "/admin") for name in REWRITING])
    assert status == 200
    head = recorder.heads[-1]
    assert head.startswith(b"GET /public/a HTTP/1.1\r\n")
    assert b"/admin" not in head
    assert header_names(head) & {name.lower() for name in REWRITING} == set()


def test_our_cookies_never_reach_the_upstream_whatever_their_name(
    public_proxy: ProxyProcess, recorder: RecordingUpstream
) -> None:
    cookies = "cqrs_sso_notice=idle; cqrs_sso=abc; cqrs_sso_csrf=x; cqrs_sso_added_later=y; theme=dark"
    status, _, _ = raw_get(public_proxy.url, "/public/a", [("Cookie", cookies)])
    assert status == 200
    cookie_lines = [line for line in recorder.heads[-1].split(b"\r\n") if line.lower().startswith(b"cookie:")]
    assert [line.lower() for line in cookie_lines] == [b"cookie: theme=dark"]


@pytest.mark.parametrize("path", ["/admin;.css", "/admin;x=1.css", "/public;/../admin", "/admin%3B.css"])
def test_a_path_parameter_never_makes_a_protected_path_public(
    public_proxy: ProxyProcess, recorder: RecordingUpstream, path: str
) -> None:
    """With a public pattern such as ``re:.*\\.css``, Tomcat and Spring would serve
    /admin;.css as /admin: a ";" segment needs a session."""
    before = len(recorder.heads)
    status, headers, _ = raw_get(public_proxy.url, path)
    assert status in (303, 400), status
    if status == 303:
        assert "/oauth2/sign_in" in headers["location"]
    assert len(recorder.heads) == before  # the upstream never saw it
    assert raw_get(public_proxy.url, "/site.css")[0] == 200  # the pattern still works


SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY.items():
        assert headers.get(name) == value, (name, headers)
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_the_proxys_own_error_pages_carry_the_security_headers(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    from .conftest import free_port

    proxy = start_proxy(CQRS_SSO_UPSTREAM=f"http://127.0.0.1:{free_port()}")  # nobody listens
    browser = make_browser(proxy.url)
    reply = browser.sign_in(GP_USER)
    assert reply.status_code == 303
    bad_gateway = browser.get("/messages")
    assert bad_gateway.status_code == 502
    assert_security_headers(dict(bad_gateway.headers))
    refused_metrics = raw_get(proxy.url, "/metrics")  # allowed from loopback: 200, still headed
    assert refused_metrics[0] == 200 and refused_metrics[1]["x-content-type-options"] == "nosniff"


def test_forward_auth_only_service_404_carries_the_security_headers(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    proxy = start_proxy(CQRS_SSO_UPSTREAM="")
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER)
    reply = browser.get("/messages")
    assert reply.status_code == 404
    assert_security_headers(dict(reply.headers))


# -- WebSocket upgrades from another origin ------------------------------------------------------


@pytest.fixture
def counting_websocket_upstream() -> Iterator[tuple[str, list[str]]]:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

    accepted: list[str] = []

    async def echo(websocket: WebSocket) -> None:
        accepted.append(websocket.headers.get("origin", ""))
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    server = BackgroundASGIServer(Starlette(routes=[WebSocketRoute("/ws", echo)]), bind_socket()).start()
    yield server.url, accepted
    server.stop()


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://sibling.127.0.0.1.nip.io", "null"],
    ids=["other-site", "sibling", "null"],
)
def test_websocket_upgrade_from_another_origin_is_refused_before_the_upstream(
    start_proxy: Callable[..., ProxyProcess],
    make_browser: Callable[[str], Browser],
    counting_websocket_upstream: tuple[str, list[str]],
    origin: str,
) -> None:
    """SameSite=Lax lets a sibling sub-domain's page open a socket with our cookie
    (cross-site WebSocket hijacking): a browser's upgrade must come from base_url's origin."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    url, accepted = counting_websocket_upstream
    proxy = start_proxy(CQRS_SSO_UPSTREAM=url)
    browser = make_browser(proxy.url)
    browser.sign_in(GP_USER, path="/")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.client.cookies.jar)
    ws_url = proxy.url.replace("http://", "ws://") + "/ws"

    async def talk(from_origin: str) -> str:
        async with connect(ws_url, origin=from_origin, additional_headers={"Cookie": cookie}) as socket:  # type: ignore[arg-type]
            await socket.send("hello")
            return str(await socket.recv())

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(talk(origin))
    assert refused.value.response.status_code == 403
    assert accepted == []  # never reached the upstream
    assert asyncio.run(talk(proxy.url)) == "hello"  # the page's own origin is welcome
    assert accepted == [proxy.url]
    assert re.search(r'"event": "websocket_refused"', "\n".join(proxy.log_lines()))
