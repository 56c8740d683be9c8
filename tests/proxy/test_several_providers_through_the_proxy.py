"""Two providers through `cqrs-sso proxy` and its forward-auth endpoint: the chooser, a
sign-in with the CIS2-like provider whose national RBAC role reaches an access rule, and a
response from one provider refused at the other's attempt."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from cqrs_sso_middleware.provider import Cis2LikeProvider, DemoClient, DemoUser, NHSmailLikeProvider
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

from ..conftest import CLIENT_SECRET, GP_USER, PASSWORD, SENSITIVE
from ..helpers import HTML, form_fields
from .conftest import Browser, ProxyProcess

pytestmark = pytest.mark.xdist_group("several_providers_proxy")

CIS2_CLIENT = "proxy-cis2"
ROLE = {
    "person_roleid": "555000000002",
    "role_code": "S0080:G0450:R5080",
    "role_name": "Admin and Clerical",
    "org_code": "Y00001",
    "org_name": "Test Surgery",
}


@pytest.fixture(scope="module")
def cis2() -> Iterator[Cis2LikeProvider]:
    sock = bind_socket()
    instance = Cis2LikeProvider(
        f"http://127.0.0.1:{sock.getsockname()[1]}",
        "cis2",
        [DemoUser(GP_USER, PASSWORD, "Dr Gita Patel", nrbac_roles=(ROLE,))],
        [],
        single_sign_on=False,
    )
    server = BackgroundASGIServer(instance.app, sock).start()
    yield instance
    server.stop()
    SENSITIVE.update(instance.issued_secrets)


@pytest.fixture(scope="module")
def proxy(
    start_module_proxy: Callable[..., ProxyProcess],
    provider_server: NHSmailLikeProvider,
    cis2: Cis2LikeProvider,
) -> ProxyProcess:
    providers = [
        {
            "name": "nhsmail",
            "issuer": provider_server.issuer,
            "client_id": "{client_id}",
            "client_secret": CLIENT_SECRET,
        },
        {
            "name": "cis2",
            "profile": "cis2",
            "issuer": cis2.issuer,
            "client_id": CIS2_CLIENT,
            "client_secret": CLIENT_SECRET,
            "role_mapping": {"cis2:R5080": "practice_admin"},
        },
    ]
    rules = json.dumps([{"paths": ["/admin/**"], "roles": ["practice_admin"]}])
    started = start_module_proxy(CQRS_SSO_PROVIDERS=json.dumps(providers), CQRS_SSO_ACCESS_RULES=rules)
    cis2.clients[CIS2_CLIENT] = DemoClient(
        CIS2_CLIENT, CLIENT_SECRET, (f"{started.url}/oauth2/callback/cis2",)
    )
    return started


def start(browser: Browser, provider: str, path: str) -> str:
    first = browser.get(path)
    page = browser.client.get(browser.origin + first.headers["location"], headers=HTML)
    assert "Sign in with your NHS Care Identity" in page.text
    reply = browser.client.post(
        browser.origin + "/oauth2/start", data={**form_fields(page.text), "provider": provider}, headers=HTML
    )
    assert reply.status_code == 303, reply.text[:300]
    return reply.headers["location"]


def test_cis2_through_the_proxy_reaches_an_access_rule_and_forward_auth(
    proxy: ProxyProcess, make_browser: Callable[[str], Browser], cis2: Cis2LikeProvider
) -> None:
    browser = make_browser(proxy.url)
    authorize = start(browser, "cis2", "/admin/users")
    assert authorize.startswith(cis2.issuer + "/authorize?")
    back = browser.at_provider(authorize, GP_USER)
    assert back.status_code == 303 and back.headers["location"] == "/admin/users"
    seen = browser.get("/admin/users")
    assert seen.status_code == 200, seen.text[:300]
    assert seen.json()["headers"]["x-forwarded-email"] == GP_USER
    auth = browser.client.get(proxy.url + "/oauth2/auth", headers={"X-Original-URI": "/admin/users"})
    assert auth.status_code == 202
    assert auth.headers["x-auth-request-email"] == GP_USER


def test_nhsmail_through_the_proxy_does_not_give_the_cis2_role(
    proxy: ProxyProcess, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(proxy.url)
    back = browser.at_provider(start(browser, "nhsmail", "/messages"), GP_USER)
    assert back.status_code == 303
    assert browser.get("/messages").status_code == 200
    assert browser.get("/admin/users").status_code == 403


def test_a_cis2_response_at_the_nhsmail_callback_is_refused_by_the_proxy(
    proxy: ProxyProcess, make_browser: Callable[[str], Browser], cis2: Cis2LikeProvider
) -> None:
    browser = make_browser(proxy.url)
    authorize = start(browser, "cis2", "/messages")
    login = browser.client.get(authorize)
    fields = {**form_fields(login.text), "login": GP_USER, "passwd": PASSWORD, "action": "sign_in"}
    answer = browser.client.post(authorize.split("?")[0], data=fields)
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    before = len(cis2.access_grants)
    page = browser.callback(f"{proxy.url}/oauth2/callback?{urlencode(query)}")
    assert page.status_code == 401
    assert len(cis2.access_grants) == before
    assert browser.get("/messages").status_code in (302, 303)
    assert httpx.get(proxy.url + "/readyz").status_code == 200  # both providers' metadata loaded
