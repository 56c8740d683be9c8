"""nginx with examples/nginx/cqrs-sso.conf (ports substituted) in front of the legacy app,
with the sign-in service (`cqrs-sso proxy` without an upstream) answering auth_request.
One stack serves the module, on one worker."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider

from ..conftest import APPROVER, GP_USER, NEW_USER, NON_LATIN_NAMES, REDIS_URL, delete_keys, redis_reachable
from ..drivers.test_api_clients import API, SCRIPT, SCRIPT_SECRET, bearer, client_credentials, forged_tokens
from ..helpers import HTML, require
from .conftest import Browser, LegacyServer, ProxyProcess, free_port, start_nginx

EXAMPLE = Path(__file__).parents[2] / "examples" / "nginx" / "cqrs-sso.conf"
pytestmark = pytest.mark.xdist_group("nginx_forward_auth")


def example_site(port: int, sso: str, app: str, example: str | None = None) -> str:
    """examples/nginx/cqrs-sso.conf (or a deployer's variant of it) with its placeholders set."""
    return (
        (example or EXAMPLE.read_text())
        .replace("@LISTEN@", f"127.0.0.1:{port}")
        .replace("@SSO@", sso.removeprefix("http://"))
        .replace("@APP@", app.removeprefix("http://"))
    )


# The sign-in service behind the example: a Redis store (revocation is immediate), a public
# prefix and rules to step around, the words for the example's role, IIS-style paths.
SERVICE_ENV = {
    "CQRS_SSO_UPSTREAM": "",
    # API clients' access tokens on /reports-api/ (tests/drivers/test_api_clients.py).
    "CQRS_SSO_API_PATHS": "/reports-api/**",
    "CQRS_SSO_API_AUDIENCES": API,
    "CQRS_SSO_SESSION_STORE": REDIS_URL,
    "CQRS_SSO_PUBLIC_PATHS": "/public/**",
    "CQRS_SSO_ACCESS_RULES": json.dumps(
        [
            {"paths": ["/admin/**", "/admin"], "roles": ["CQRS.Admin"]},
            {"paths": ["/declarations/**"], "max_auth_age_seconds": 900},
        ]
    ),
    "CQRS_SSO_ROLE_LABELS": json.dumps({"CQRS.Approver": "approver"}),
    "CQRS_SSO_CASE_INSENSITIVE_PATHS": "true",
}


@dataclass
class NginxStack:
    origin: str
    sso: ProxyProcess


@pytest.fixture(scope="module")
def stack(
    start_module_proxy: Callable[..., ProxyProcess],
    legacy: LegacyServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NginxStack]:
    """One sign-in service and nginx with examples/nginx/cqrs-sso.conf, for the module."""
    require(redis_reachable(), f"Redis is not reachable at {REDIS_URL}")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    prefix = f"cqrs_sso_test:{secrets.token_hex(6)}:"
    sso = start_module_proxy(
        CQRS_SSO_BASE_URL=origin, CQRS_SSO_SESSION_KEY_PREFIX=prefix, redirect_origin=origin, **SERVICE_ENV
    )
    process = start_nginx(tmp_path_factory.mktemp("nginx"), port, example_site(port, sso.url, legacy.url))
    yield NginxStack(origin, sso)
    process.terminate()
    process.wait(timeout=10)
    delete_keys(prefix)


@pytest.fixture
def nginx_stack(stack: NginxStack) -> str:
    return stack.origin


def test_signs_in_through_nginx_auth_request(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(nginx_stack)
    first = browser.get("/messages?tab=a&b=c")
    assert first.status_code == 200  # error_page 401 serves the sign-in page in place
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in first.text
    reply = browser.sign_in(GP_USER, path="/messages?tab=a&b=c")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/messages?tab=a&b=c"  # the whole URI, "&" included
    seen = browser.get(
        "/messages?tab=a&b=c",
        headers={"X-Forwarded-User": "attacker@nhs.net", "Remote-User": "attacker@nhs.net"},
    ).json()
    assert seen["path"] == "/messages"
    assert seen["headers"]["x-forwarded-user"] == GP_USER
    assert seen["headers"]["x-cqrs-account"] == "CQRS-0001"
    assert "remote-user" not in seen["headers"]


def test_sign_out_through_nginx_ends_access(nginx_stack: str, make_browser: Callable[[str], Browser]) -> None:
    browser = make_browser(nginx_stack)
    browser.sign_in(GP_USER)
    assert browser.get("/messages").json()["headers"]["x-forwarded-user"] == GP_USER
    confirm = browser.get("/oauth2/sign_out")
    from ..helpers import form_fields

    browser.client.post(nginx_stack + "/oauth2/sign_out", data=form_fields(confirm.text))
    page = browser.get("/messages")
    assert (
        "Welcome to the Calculating Quality Reporting Service (CQRS)" in page.text
    )  # every request is checked: nothing of the old session is reused


def test_no_cqrs_account_through_nginx(nginx_stack: str, make_browser: Callable[[str], Browser]) -> None:
    reply = make_browser(nginx_stack).sign_in(NEW_USER)
    assert reply.status_code == 403
    assert "no CQRS account is associated" in reply.text


@pytest.mark.parametrize(
    "method,headers",
    [
        pytest.param("GET", {"Accept": "application/json"}, id="accept-json"),
        pytest.param("GET", {"X-Requested-With": "XMLHttpRequest"}, id="xhr"),
        pytest.param("POST", {"Sec-Fetch-Mode": "cors", "Accept": "*/*"}, id="fetch-post"),
    ],
)
def test_api_calls_through_nginx_get_401_json(nginx_stack: str, method: str, headers: dict[str, str]) -> None:
    reply = httpx.request(method, nginx_stack + "/api/data?x=1&y=2", headers=headers)
    assert reply.status_code == 401
    assert reply.json() == {
        "error": "unauthenticated",
        "sign_in_url": "/oauth2/sign_in?rd=%2Fapi%2Fdata%3Fx%3D1%26y%3D2",
    }


def test_forward_auth_endpoint_is_not_reachable_from_outside(nginx_stack: str) -> None:
    assert httpx.get(nginx_stack + "/oauth2/auth").status_code == 404


def test_forward_auth_answers_202_or_401_never_a_redirect(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    service = start_proxy(CQRS_SSO_UPSTREAM="")
    anonymous = httpx.get(service.url + "/oauth2/auth", headers={"X-Original-URI": "/reports?y=1"})
    assert anonymous.status_code == 401
    assert anonymous.json()["sign_in_url"] == "/oauth2/sign_in?rd=%2Freports%3Fy%3D1"
    browser = make_browser(service.url)
    browser.sign_in(GP_USER, path="/")
    ok = browser.client.get(service.url + "/oauth2/auth")
    assert ok.status_code == 202
    assert ok.headers["x-auth-request-user"] == GP_USER
    assert ok.headers["x-auth-request-email"] == GP_USER
    assert ok.headers["x-cqrs-account"] == "CQRS-0001"


def test_revoked_session_is_refused_through_nginx_within_a_second(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    """Revocation reaches nginx at once (the example checks every request): sign out, then
    the copied cookie through nginx. An auth cache in nginx would delay this (docs/proxy.md)."""
    browser = make_browser(nginx_stack)
    browser.sign_in(GP_USER)
    assert browser.get("/messages").json()["headers"]["x-forwarded-user"] == GP_USER
    cookie = browser.client.cookies["cqrs_sso"]
    confirm = browser.get("/oauth2/sign_out")
    from ..helpers import form_fields

    browser.client.post(nginx_stack + "/oauth2/sign_out", data=form_fields(confirm.text))
    browser.client.cookies.set("cqrs_sso", cookie)
    # The very next request is refused: nothing between the sign-out and it may let it pass.
    page = browser.get("/messages")
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in page.text, (
        "a revoked session still passes nginx"
    )


def test_a_location_with_its_own_role_rule_through_nginx(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    """examples/nginx/cqrs-sso.conf's /approvals/: /oauth2/auth?roles=CQRS.Approver, and a 403
    becomes CQRS's page."""
    approver = make_browser(nginx_stack)
    assert approver.sign_in(APPROVER, path="/approvals/2026").status_code == 303
    seen = approver.get("/approvals/2026")
    assert seen.status_code == 200 and seen.json()["headers"]["x-forwarded-user"] == APPROVER
    practice = make_browser(nginx_stack)
    assert practice.sign_in(GP_USER).status_code == 303
    refused = practice.get("/approvals/2026")
    assert refused.status_code == 403
    assert "You do not have access to this part of CQRS" in refused.text
    assert "the approver role" in refused.text  # role_labels: the site's words
    assert practice.get("/messages").status_code == 200  # other locations are not affected


def test_a_service_wide_step_up_rule_through_nginx(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(nginx_stack)
    assert browser.sign_in(GP_USER).status_code == 303
    asked = browser.get("/declarations/1")
    assert asked.status_code == 401  # error_page 401: the sign-in page, now asking again
    assert "Sign in again to continue" in asked.text


def test_a_location_asking_for_a_recent_sign_in_steps_up_instead_of_looping(
    nginx_stack: str, make_browser: Callable[[str], Browser], provider_server: NHSmailLikeProvider
) -> None:
    """examples/nginx/cqrs-sso.conf's /payments/, exactly as documented: the check's
    ?max_auth_age=900 and error_page 401's. Without the latter /payments/1 sent the person
    back to itself, for ever."""
    browser = make_browser(nginx_stack)
    browser.sign_in(GP_USER)  # no auth_time: when this sign-in happened is not known
    assert "within the last 15 minutes" in browser.get("/payments/1").text  # the location's own
    browser.steps_up_for("/payments/1", GP_USER, provider_server)


def test_a_location_whose_error_page_forgets_max_auth_age_asks_instead_of_looping(
    stack: NginxStack, legacy: LegacyServer, tmp_path: Path, make_browser: Callable[[str], Browser]
) -> None:
    """A deployer's copy of /payments/ with a plain `error_page 401 = /oauth2/sign_in`: the
    sign-in page learns from X-Original-URI that it stands in for /payments/1, and asks for
    a fresh sign-in rather than sending the person back to be refused again."""
    port = free_port()
    forgetful = EXAMPLE.read_text().replace(
        "error_page 401 = /oauth2/sign_in?max_auth_age=900;", "error_page 401 = /oauth2/sign_in;"
    )
    assert "max_auth_age=900;" not in forgetful.split("location /payments/")[1].split("}")[0]
    process = start_nginx(
        tmp_path / "forgetful", port, example_site(port, stack.sso.url, legacy.url, forgetful)
    )
    try:
        browser = make_browser(stack.origin)
        browser.sign_in(GP_USER)
        # The same cookies (a cookie's scope is the host, not the port), another nginx.
        asked = browser.client.get(f"http://127.0.0.1:{port}/payments/1", headers=HTML)
        assert asked.status_code == 401 and "Sign in again to continue" in asked.text
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_clients_x_forwarded_uri_cannot_choose_the_path_nginx_is_asked_for(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    spoofed = {"X-Forwarded-Uri": "/public/x", **HTML}
    anonymous = httpx.get(nginx_stack + "/admin/x", headers=spoofed)
    assert "Welcome to the Calculating Quality" in anonymous.text  # the sign-in page, not the app
    browser = make_browser(nginx_stack)
    browser.sign_in(GP_USER)
    refused = browser.get("/admin/x", headers={"X-Forwarded-Uri": "/messages"})
    assert refused.status_code == 403


@pytest.mark.parametrize("email", list(NON_LATIN_NAMES))
def test_people_whose_names_are_not_latin_1_get_through_nginx(
    nginx_stack: str, make_browser: Callable[[str], Browser], email: str
) -> None:
    browser = make_browser(nginx_stack)
    assert browser.sign_in(email).status_code == 303
    seen = browser.get("/messages")
    assert seen.status_code == 200 and seen.json()["headers"]["x-forwarded-user"] == email


@pytest.mark.parametrize(
    "path,status",
    [("/ADMIN/x", 403), ("/Admin", 403), ("/admin%3Bx/y", 403), ("/admin./x", 400), ("/admin%20/x", 400)],
)
def test_no_spelling_of_a_ruled_path_reaches_the_upstream_through_nginx(
    nginx_stack: str, make_browser: Callable[[str], Browser], path: str, status: int
) -> None:
    """case_insensitive_paths (for IIS and ASP.NET upstreams), %3B read as a parameter, and
    segments Windows would serve without their trailing dot or space. nginx's auth_request
    passes on 401 and 403 only, and answers any other refusal (forward-auth's 400) with 500:
    refused either way."""
    browser = make_browser(nginx_stack)
    browser.sign_in(GP_USER)  # no CQRS.Admin role
    reply = browser.get(path)
    assert reply.status_code == (500 if status == 400 else status), reply.text[:200]
    assert "application/json" not in reply.headers.get("content-type", "") or "path" not in reply.json()


def test_words_in_the_forbidden_pages_query_are_never_shown(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(nginx_stack)
    browser.sign_in(GP_USER)
    injected = "Your account is suspended: call 0800 000 000 now"
    page = browser.get("/oauth2/forbidden?roles=" + quote(f"{injected},CQRS.Approver"))
    assert page.status_code == 403
    assert "0800 000 000" not in page.text and "suspended" not in page.text
    assert "the approver role" in page.text


def test_an_api_clients_token_is_checked_through_nginx_auth_request(
    nginx_stack: str, provider_server: NHSmailLikeProvider
) -> None:
    """nginx passes the client's Authorization to the auth subrequest: forward-auth checks
    the token and nginx hands the caller to the upstream; a forged token is refused."""
    provider_server.clients[SCRIPT] = DemoClient(SCRIPT, SCRIPT_SECRET, ())
    provider_server.api.app_roles[API] = {SCRIPT: ("Reports.Export",)}
    try:
        token = client_credentials(provider_server)
        seen = httpx.get(nginx_stack + "/reports-api/2026", headers=bearer(token))
        assert seen.status_code == 200, seen.text
        assert seen.json()["headers"]["x-forwarded-user"] == "app:reporting-script"
        forged, _ = forged_tokens(provider_server)["attackers-key-real-kid"]
        refused = httpx.get(nginx_stack + "/reports-api/2026", headers=bearer(forged))
        assert refused.status_code == 401 and "headers" not in refused.text
    finally:
        provider_server.clients.pop(SCRIPT)
        provider_server.api.app_roles.clear()
