"""Back-channel logout sent by oidc-provider (OpenID Certified) to the middleware served on a
real socket — the ASGI driver, the WSGI driver and `cqrs-sso proxy` — so that a sign-out at
the provider ends the CQRS session server to server (Back-Channel Logout 1.0)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cqrs_sso_middleware import ASGISSOMiddleware, Settings, SSOMiddleware
from cqrs_sso_middleware.serving import BackgroundASGIServer, BackgroundWSGIServer, bind_socket

from ..conftest import SENSITIVE, echo_asgi, echo_wsgi, lookup_accounts
from ..helpers import HTML, form_fields, free_port, require
from .conftest import GP_USER, PASSWORD, PROVIDER_DIR, OidcProvider, new_key

pytestmark = pytest.mark.integration
VARIANTS = ("asgi", "wsgi", "proxy")


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {variant: free_port() for variant in VARIANTS}


@pytest.fixture(scope="module")
def logout_idp(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[OidcProvider]:
    """oidc-provider with one client per variant, each registering its back-channel URL."""
    require(
        (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(),
        "oidc-provider is not installed (make test runs npm ci in tests/interop/provider)",
    )
    instance = OidcProvider(tmp_path_factory.mktemp("logout-idp"), free_port(), [new_key()], new_key())
    for variant, port in ports.items():
        origin = f"http://127.0.0.1:{port}"
        instance.extra_clients.append(
            {
                "client_id": f"logout-{variant}",
                "client_secret": instance.secret,
                "token_endpoint_auth_method": "client_secret_basic",
                "redirect_uris": [f"{origin}/oauth2/callback"],
                "post_logout_redirect_uris": [f"{origin}/oauth2/signed_out"],
                "backchannel_logout_uri": f"{origin}/oauth2/backchannel_logout",
                "backchannel_logout_session_required": True,
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            }
        )
    instance.start()
    yield instance
    instance.stop()


def settings_for(idp: OidcProvider, variant: str, origin: str) -> dict[str, Any]:
    key = secrets.token_urlsafe(32)
    SENSITIVE.add(key)
    return {
        "issuer": idp.issuer,
        "client_id": f"logout-{variant}",
        "client_secret": idp.secret,
        "secret_keys": (key,),
        "base_url": origin,
        "session_store": "memory",
        "http_timeout_seconds": 5.0,
    }


@pytest.fixture
def served(
    request: pytest.FixtureRequest, logout_idp: OidcProvider, ports: dict[str, int], tmp_path: Path
) -> Iterator[str]:
    """The middleware of the requested variant on its registered port; yields its origin."""
    variant = request.param
    port = ports[variant]
    origin = f"http://127.0.0.1:{port}"
    values = settings_for(logout_idp, variant, origin)
    if variant == "asgi":
        sock = bind_socket("127.0.0.1", port)
        asgi = BackgroundASGIServer(
            ASGISSOMiddleware(echo_asgi(), Settings(**values, account_lookup=lookup_accounts)), sock
        ).start()
        yield origin
        asgi.stop()
    elif variant == "wsgi":
        middleware = SSOMiddleware(echo_wsgi, Settings(**values, account_lookup=lookup_accounts))
        wsgi = BackgroundWSGIServer(middleware, bind_socket("127.0.0.1", port)).start()
        yield origin
        wsgi.stop()
        middleware.close()
    else:
        upstream = BackgroundASGIServer(echo_asgi(), bind_socket()).start()
        accounts = tmp_path / "accounts.csv"
        accounts.write_text("email,account_id\ngp.user@nhs.net,CQRS-0001\n")
        env = {f"CQRS_SSO_{k.upper()}": str(v) for k, v in values.items() if k != "secret_keys"}
        env |= {
            "CQRS_SSO_SECRET_KEYS": values["secret_keys"][0],
            "CQRS_SSO_ACCOUNT_LOOKUP": f"csv:{accounts}",
            "CQRS_SSO_UPSTREAM": upstream.url,
            "PATH": "/usr/bin:/bin",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "cqrs_sso_middleware.cli", "proxy", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{origin}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield origin
        process.terminate()
        process.wait(timeout=20)
        upstream.stop()


def follow_at_provider(browser: httpx.Client, reply: httpx.Response, origin: str) -> httpx.Response:
    for _ in range(10):
        location = reply.headers.get("location", "")
        if reply.status_code in (302, 303) and not location.startswith(origin):
            reply = browser.get(httpx.URL(str(reply.url)).join(location))
            continue
        break
    return reply


def sign_in(browser: httpx.Client, origin: str) -> None:
    sign_in_page = browser.get(origin + browser.get(origin + "/messages", headers=HTML).headers["location"])
    start = browser.post(origin + "/oauth2/start", data=form_fields(sign_in_page.text), headers=HTML)
    assert start.status_code == 303, start.text[:300]
    login = follow_at_provider(browser, browser.get(start.headers["location"]), origin)
    uid = str(login.url).rsplit("/interaction/", 1)[1].split("/")[0]
    base = f"{login.url.scheme}://{login.url.host}:{login.url.port}"
    answer = browser.post(f"{base}/interaction/{uid}/login", data={"login": GP_USER, "password": PASSWORD})
    callback = follow_at_provider(browser, answer, origin)
    assert callback.headers["location"].startswith(origin + "/oauth2/callback"), callback.headers
    landed = browser.get(callback.headers["location"], headers=HTML)
    assert landed.status_code == 303, landed.text[:300]
    assert browser.get(origin + "/messages", headers=HTML).status_code == 200


def sign_out_at_the_provider(browser: httpx.Client, idp: OidcProvider) -> None:
    """The person signs out at the provider itself (its end_session page and confirm form);
    oidc-provider then POSTs a logout token to every client of that session."""
    page = browser.get(f"{idp.issuer}/session/end")
    assert page.status_code == 200, page.text[:300]
    form = re.search(
        r'<form id="op.logoutForm" method="post" action="([^"]+)">.*?name="xsrf" value="([^"]+)"', page.text
    )
    assert form, page.text[:500]
    done = browser.post(form.group(1), data={"xsrf": form.group(2), "logout": "yes"})
    assert done.status_code in (200, 302, 303), done.text[:300]


@pytest.mark.parametrize("served", VARIANTS, indirect=True)
def test_sign_out_at_oidc_provider_ends_the_cqrs_session_by_back_channel(
    served: str, logout_idp: OidcProvider, make_browser_client: Callable[[], httpx.Client]
) -> None:
    browser = make_browser_client()
    sign_in(browser, served)
    cookie = browser.cookies["cqrs_sso"]
    sign_out_at_the_provider(browser, logout_idp)
    browser.cookies.set("cqrs_sso", cookie)  # our cookie was never touched: only the store
    after = browser.get(served + "/messages", headers=HTML)
    assert after.status_code == 303
    assert after.headers["location"].startswith("/oauth2/sign_in")


@pytest.fixture
def make_browser_client() -> Iterator[Callable[[], httpx.Client]]:
    made: list[httpx.Client] = []

    def build() -> httpx.Client:
        client = httpx.Client(follow_redirects=False, timeout=15)
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()
