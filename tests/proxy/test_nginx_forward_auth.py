"""nginx with examples/nginx/cqrs-sso.conf (ports substituted) in front of the legacy app,
with the sign-in service (`cqrs-sso proxy` without an upstream) answering auth_request."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import APPROVER, GP_USER, NEW_USER, REDIS_URL
from ..helpers import require, wait_for_http
from .conftest import Browser, LegacyServer, ProxyProcess, free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "nginx" / "cqrs-sso.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def require_nginx() -> None:
    require(Path(NGINX).exists(), "nginx is not installed (apt-get install nginx)")


def nginx_conf(directory: Path, port: int, sso: str, app: str) -> Path:
    site = (
        EXAMPLE.read_text()
        .replace("@LISTEN@", f"127.0.0.1:{port}")
        .replace("@SSO@", sso)
        .replace("@APP@", app)
    )
    (directory / "cqrs-sso.conf").write_text(site)
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = f"""{user}worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {directory}/cqrs-sso.conf;
}}
"""
    path = directory / "nginx.conf"
    path.write_text(main)
    return path


@pytest.fixture
def nginx_service_env() -> dict[str, str]:
    """Extra settings of the sign-in service behind nginx; tests override it."""
    return {}


@pytest.fixture
def nginx_stack(
    start_proxy: Callable[..., ProxyProcess],
    legacy: LegacyServer,
    tmp_path: Path,
    nginx_service_env: dict[str, str],
) -> Iterator[str]:
    require_nginx()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    sso = start_proxy(
        CQRS_SSO_UPSTREAM="", CQRS_SSO_BASE_URL=origin, redirect_origin=origin, **nginx_service_env
    )
    conf = nginx_conf(tmp_path, port, sso.url.removeprefix("http://"), legacy.url.removeprefix("http://"))
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_for_http(origin + "/oauth2/sign_in", process, "nginx", log=tmp_path / "error.log")
    yield origin
    process.terminate()
    process.wait(timeout=10)


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


@pytest.mark.parametrize(
    "nginx_service_env",
    [pytest.param({"CQRS_SSO_SESSION_STORE": REDIS_URL}, id="redis")],
)
def test_revoked_session_is_refused_through_nginx_within_a_second(
    nginx_stack: str, make_browser: Callable[[str], Browser], redis_prefix: str
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
    assert "CQRS.Approver role" in refused.text
    assert practice.get("/messages").status_code == 200  # other locations are not affected


@pytest.mark.parametrize(
    "nginx_service_env",
    [{"CQRS_SSO_ACCESS_RULES": '[{"paths": ["/declarations/**"], "max_auth_age_seconds": 900}]'}],
)
def test_a_service_wide_step_up_rule_through_nginx(
    nginx_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(nginx_stack)
    assert browser.sign_in(GP_USER).status_code == 303
    asked = browser.get("/declarations/1")
    assert asked.status_code == 401  # error_page 401: the sign-in page, now asking again
    assert "Sign in again to continue" in asked.text
