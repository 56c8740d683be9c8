"""Caddy with examples/caddy/Caddyfile (as it is) in front of the legacy app, with the
sign-in service (`cqrs-sso proxy` without an upstream) answering forward_auth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cqrs_sso_middleware.core.security.header_values import decode_header_value
from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import APPROVER, GP_USER, NEW_USER, NON_LATIN_NAMES
from ..helpers import HTML, form_fields, require, wait_for_http
from .conftest import Browser, LegacyServer, ProxyProcess, free_port

# One stack serves the module, on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("caddy_forward_auth")]
CADDYFILE = Path(__file__).parents[2] / "examples" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"


# The sign-in service as the Caddyfile's header comment asks, with rules to step around.
SERVICE_ENV = {
    "CQRS_SSO_UPSTREAM": "",
    "CQRS_SSO_FORWARD_AUTH_URI_HEADER": "X-Forwarded-Uri",
    "CQRS_SSO_PUBLIC_PATHS": "/public/**",
    "CQRS_SSO_ACCESS_RULES": json.dumps([{"paths": ["/admin/**", "/admin"], "roles": ["CQRS.Admin"]}]),
    "CQRS_SSO_ROLE_LABELS": json.dumps({"CQRS.Approver": "approver"}),
    "CQRS_SSO_CLAIM_HEADERS": json.dumps({"X-Forwarded-Org": "companyName"}),
}


def start_caddy(caddyfile: str, origin: str, sso: str, app: str, folder: Path) -> subprocess.Popen[bytes]:
    require(Path(CADDY).exists(), "caddy is not installed (apt-get install caddy)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Caddyfile").write_text(caddyfile)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "XDG_DATA_HOME": str(folder / "data"),
        "XDG_CONFIG_HOME": str(folder / "config"),
        "CQRS_SITE": origin,
        "CQRS_SSO": sso.removeprefix("http://"),
        "CQRS_APP": app.removeprefix("http://"),
    }
    log = folder / "caddy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CADDY, "run", "--config", str(folder / "Caddyfile"), "--adapter", "caddyfile"],
            env=env,
            stdout=out,
            stderr=out,
        )
    wait_for_http(origin + "/oauth2/sign_in", process, "caddy", log=log, server="Caddy")
    return process


@dataclass
class CaddyStack:
    origin: str
    sso: ProxyProcess
    # The same service behind a Caddyfile a deployer changed: the client's X-Original-URI is
    # not stripped, and a claim header is copied for a claim some people do not have.
    variant: str


@pytest.fixture(scope="module")
def stack(
    start_module_proxy: Callable[..., ProxyProcess],
    legacy: LegacyServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CaddyStack]:
    """One sign-in service and Caddy with examples/caddy/Caddyfile as it is, for the module."""
    port, variant_port = free_port(), free_port()
    origin = f"http://127.0.0.1:{port}"
    sso = start_module_proxy(CQRS_SSO_BASE_URL=origin, redirect_origin=origin, **SERVICE_ENV)
    folder = tmp_path_factory.mktemp("caddy")
    example = CADDYFILE.read_text()
    caddy = start_caddy(example, origin, sso.url, legacy.url, folder / "example")
    changed = example.replace("\t\t\trequest_header -X-Original-URI\n", "").replace(
        "copy_headers X-Auth-Request-User>X-Forwarded-User",
        "copy_headers X-Forwarded-Org X-Auth-Request-User>X-Forwarded-User",
    )
    assert changed.count("X-Forwarded-Org") == 3 and "request_header -X-Original-URI" not in changed
    variant_origin = f"http://127.0.0.1:{variant_port}"
    variant = start_caddy(changed, variant_origin, sso.url, legacy.url, folder / "variant")
    yield CaddyStack(origin, sso, variant_origin)
    for process in (caddy, variant):
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def caddy_stack(stack: CaddyStack) -> str:
    return stack.origin


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
    assert "the approver role" in refused.text  # role_labels: the site's words


def is_the_app(reply: httpx.Response) -> bool:
    return reply.headers.get("content-type", "").startswith("application/json") and "path" in reply.json()


def test_a_clients_x_original_uri_cannot_choose_the_path_caddy_is_asked_for(
    stack: CaddyStack, make_browser: Callable[[str], Browser]
) -> None:
    """The review's spoofs: a public path named to skip the session, an open path named to
    skip the role rule. The Caddyfile strips the header; a Caddyfile that does not gets 400."""
    spoofed = {"X-Original-URI": "/public/x", **HTML}
    anonymous = httpx.get(stack.origin + "/admin/x", headers=spoofed)
    assert not is_the_app(anonymous) and "Welcome to the Calculating Quality" in anonymous.text
    browser = make_browser(stack.origin)
    browser.sign_in(GP_USER)  # no CQRS.Admin role
    refused = browser.get("/admin/x", headers={"X-Original-URI": "/messages"})
    assert refused.status_code == 403 and not is_the_app(refused)
    unstripped = httpx.get(stack.variant + "/admin/x", headers=spoofed)
    assert unstripped.status_code == 400 and unstripped.json() == {"error": "ambiguous_original_uri"}
    assert any('"event": "ambiguous_original_uri"' in line for line in stack.sso.log_lines())


@pytest.mark.parametrize("email", list(NON_LATIN_NAMES))
def test_people_whose_names_are_not_latin_1_get_through_caddy(
    caddy_stack: str, make_browser: Callable[[str], Browser], email: str
) -> None:
    """Forward-auth answered 500 for "Łukasz Żółć" (X-Auth-Request-Preferred-Username) on every page."""
    browser = make_browser(caddy_stack)
    assert browser.sign_in(email).status_code == 303
    seen = browser.get("/messages")
    assert seen.status_code == 200 and seen.json()["headers"]["x-forwarded-user"] == email


def test_a_claim_a_person_lacks_never_reaches_the_upstream_as_a_placeholder(
    stack: CaddyStack, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(stack.variant)
    browser.sign_in(GP_USER)  # has no companyName claim
    seen = browser.get("/messages").json()["headers"]
    assert "{http." not in json.dumps(seen)  # Caddy 2.6's unreplaced placeholder
    assert seen.get("x-forwarded-org", "") == ""


def test_a_route_asking_for_a_recent_sign_in_steps_up_through_caddy(
    caddy_stack: str, make_browser: Callable[[str], Browser], provider_server: NHSmailLikeProvider
) -> None:
    """examples/caddy/Caddyfile's /payments/*: ?max_auth_age=900 on the check and on the
    sign-in page it is answered with: the password is asked again, then the page opens."""
    browser = make_browser(caddy_stack)
    browser.sign_in(GP_USER)  # no auth_time: when this sign-in happened is not known
    browser.steps_up_for("/payments/1", GP_USER, provider_server)


def test_an_encoded_name_reaches_the_upstream_through_the_proxy(
    start_proxy: Callable[..., ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    """The proxy's own upstream headers follow the same rule as forward-auth's answers."""
    proxy = start_proxy(CQRS_SSO_CLAIM_HEADERS=json.dumps({"X-Forwarded-Name": "name"}))
    for email, name in NON_LATIN_NAMES.items():
        browser = make_browser(proxy.url)
        browser.sign_in(email)
        sent = browser.get("/messages").json()["headers"]["x-forwarded-name"]
        assert sent.startswith("UTF-8''") and decode_header_value(sent) == name
