"""htmx in a real browser meets an ended session: it loads the sign-in page, back to the
page the person was on, instead of swapping nothing into the page. htmx 2 (the version most
sites run) and htmx 4 (the current one), from npm, in Debian's Chromium."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Route

from cqrs_sso_middleware import ASGISSOMiddleware, Settings
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

from ..helpers import require
from .test_user_guide_steps_in_chromium import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS

MODULES = Path(__file__).parents[1] / "interop" / "provider" / "node_modules"
HTMX = {"2": MODULES / "htmx2" / "dist" / "htmx.min.js", "4": MODULES / "htmx4" / "dist" / "htmx.js"}

PAGE = """<!doctype html>
<html lang="en"><head><title>Messages</title><script src="/static/htmx-{version}.js"></script></head>
<body><main><h1>Messages</h1>
<button hx-get="/messages/inbox" hx-target="#inbox">Refresh the inbox</button>
<div id="inbox">(not loaded)</div></main></body></html>"""


def app() -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.format(version=request.path_params["version"]))

    async def script(request: Request) -> FileResponse:
        return FileResponse(HTMX[request.path_params["version"]], media_type="text/javascript")

    async def inbox(request: Request) -> HTMLResponse:
        return HTMLResponse("<p>3 new messages</p>")

    return Starlette(
        routes=[
            Route("/messages/page/{version}", page),
            Route("/static/htmx-{version}.js", script),
            Route("/messages/inbox", inbox),
        ]
    )


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    require(all(path.exists() for path in HTMX.values()), "htmx is not installed (make node-deps)")
    sock = bind_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        issuer="http://127.0.0.1:9/never-asked",  # the sign-in page needs no provider
        client_id="htmx-test",
        client_secret="htmx-test-secret",
        secret_keys=(secrets.token_urlsafe(32),),
        base_url=url,
        account_lookup=lambda identity: None,
        public_paths=("/static/*", "/messages/page/*"),
    )
    server = BackgroundASGIServer(ASGISSOMiddleware(app(), settings), sock).start()
    yield url
    server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    require(shutil.which("node") is not None, "Node.js is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.mark.parametrize("version", ["2", "4"])
def test_htmx_loads_the_sign_in_page_when_the_session_has_ended(
    site: str, chromium: Any, version: str
) -> None:
    page = chromium.new_page()
    try:
        page.goto(f"{site}/messages/page/{version}")
        assert page.evaluate("typeof htmx") == "object", "htmx did not load"
        page.get_by_role("button", name="Refresh the inbox").click()
        page.wait_for_url(f"{site}/oauth2/sign_in?rd=%2Fmessages%2Fpage%2F{version}", timeout=10_000)
        assert "Sign in" in page.inner_text("body")
        folder = ARTIFACTS / "htmx"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"htmx-{version}-sign-in.png"))
    finally:
        page.close()
