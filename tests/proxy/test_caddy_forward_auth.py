"""Caddy with examples/caddy/Caddyfile (as it is) in front of the legacy app, with the
sign-in service (`cqrs-sso proxy` without an upstream) answering forward_auth."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import APPROVER, GP_USER, NEW_USER
from ..helpers import form_fields, require, wait_for_http
from .conftest import Browser, LegacyServer, ProxyProcess, free_port

pytestmark = pytest.mark.integration
CADDYFILE = Path(__file__).parents[2] / "examples" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"


@pytest.fixture
def caddy_stack(
    start_proxy: Callable[..., ProxyProcess], legacy: LegacyServer, tmp_path: Path
) -> Iterator[str]:
    require(Path(CADDY).exists(), "caddy is not installed (apt-get install caddy)")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    sso = start_proxy(
        CQRS_SSO_UPSTREAM="",
        CQRS_SSO_BASE_URL=origin,
        CQRS_SSO_PUBLIC_PATHS="/public/**",
        redirect_origin=origin,
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CQRS_SITE": origin,
        "CQRS_SSO": sso.url.removeprefix("http://"),
        "CQRS_APP": legacy.url.removeprefix("http://"),
    }
    log = (tmp_path / "caddy.log").open("wb")
    process = subprocess.Popen(
        [CADDY, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"], env=env, stdout=log, stderr=log
    )
    wait_for_http(origin + "/oauth2/sign_in", process, "caddy", log=tmp_path / "caddy.log")
    yield origin
    process.terminate()
    process.wait(timeout=10)
    log.close()


def test_signs_in_through_caddy_forward_auth(
    caddy_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(caddy_stack)
    first = browser.get("/messages?tab=a&b=c")
    assert first.status_code == 200  # the sign-in page, served in place for the 401
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in first.text
    reply = browser.sign_in(GP_USER, path="/messages?tab=a&b=c")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/messages?tab=a&b=c"  # X-Forwarded-Uri, "&" included
    seen = browser.get(
        "/messages?tab=a&b=c",
        headers={"X-Forwarded-User": "attacker@nhs.net", "Remote-User": "attacker@nhs.net"},
    ).json()
    assert seen["path"] == "/messages"
    assert seen["headers"]["x-forwarded-user"] == GP_USER
    assert seen["headers"]["x-forwarded-email"] == GP_USER
    assert seen["headers"]["x-cqrs-account"] == "CQRS-0001"
    assert "remote-user" not in seen["headers"]


def test_sign_out_through_caddy_ends_access(caddy_stack: str, make_browser: Callable[[str], Browser]) -> None:
    browser = make_browser(caddy_stack)
    browser.sign_in(GP_USER)
    confirm = browser.get("/oauth2/sign_out")
    ended = browser.client.post(caddy_stack + "/oauth2/sign_out", data=form_fields(confirm.text))
    assert ended.status_code == 303  # on to the provider's sign-out
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in browser.get("/messages").text


def test_no_cqrs_account_through_caddy(caddy_stack: str, make_browser: Callable[[str], Browser]) -> None:
    reply = make_browser(caddy_stack).sign_in(NEW_USER)
    assert reply.status_code == 403
    assert "no CQRS account is associated" in reply.text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Accept": "application/json"}, id="accept-json"),
        pytest.param({"X-Requested-With": "XMLHttpRequest"}, id="xhr"),
    ],
)
def test_api_calls_through_caddy_get_401_json(caddy_stack: str, headers: dict[str, str]) -> None:
    reply = httpx.get(caddy_stack + "/api/data?x=1&y=2", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"] == "unauthenticated"
    assert reply.json()["sign_in_url"] == "/oauth2/sign_in?rd=%2Fapi%2Fdata%3Fx%3D1%26y%3D2"


@pytest.mark.parametrize(
    "header", ["X-Forwarded-User", "X_Forwarded_User", "Remote-User", "X-CQRS-Account", "X-Auth-Request-User"]
)
def test_spoofed_identity_header_never_reaches_the_app_without_a_session(
    caddy_stack: str, header: str
) -> None:
    reply = httpx.get(caddy_stack + "/messages", headers={header: "attacker@nhs.net", "Accept": "text/html"})
    assert reply.status_code == 200
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in reply.text  # not the app


@pytest.mark.parametrize("header", ["X-Forwarded-User", "X_Forwarded_User", "X-CQRS-Account", "Remote-User"])
def test_public_path_passes_without_any_client_identity_header(caddy_stack: str, header: str) -> None:
    """forward_auth answers 202 without a user for public_paths; Caddy 2.6 would then keep
    the client's own copy of a copy_headers field — the Caddyfile strips them first."""
    seen = httpx.get(caddy_stack + "/public/page", headers={header: "attacker@nhs.net"}).json()
    assert seen["path"] == "/public/page"
    assert "attacker@nhs.net" not in str(seen["headers"])


def test_a_route_with_its_own_role_rule_through_caddy(
    caddy_stack: str, make_browser: Callable[[str], Browser]
) -> None:
    """examples/caddy/Caddyfile's /approvals/*: forward_auth with ?roles=CQRS.Approver, and a
    403 answered with CQRS's page."""
    approver = make_browser(caddy_stack)
    assert approver.sign_in(APPROVER, path="/approvals/2026").status_code == 303
    seen = approver.get("/approvals/2026")
    assert seen.status_code == 200 and seen.json()["headers"]["x-forwarded-user"] == APPROVER
    practice = make_browser(caddy_stack)
    assert practice.sign_in(GP_USER).status_code == 303
    refused = practice.get("/approvals/2026")
    assert refused.status_code == 403
    assert "You do not have access to this part of CQRS" in refused.text
