"""Access rules and claim headers through `cqrs-sso proxy` as a real process, in front of the
legacy app: the upstream never sees a refused request, and gets the claims it is given."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ..conftest import APPROVER, GP_USER
from .conftest import Browser, ProxyProcess

RULES = json.dumps(
    [
        {"paths": ["/approvals/**"], "roles": ["CQRS.Approver"]},
        {"paths": ["/admin/**", "/admin"], "roles": ["CQRS.Admin"]},
        {"paths": ["/declarations/**"], "max_auth_age_seconds": 900},
    ]
)
CLAIMS = json.dumps({"X-Forwarded-Oid": "oid", "X-Forwarded-Roles": "roles"})


# One proxy for the module (each test signs in with a browser of its own), on one worker.
pytestmark = pytest.mark.xdist_group("access_rules_through_the_proxy")


@pytest.fixture(scope="module")
def ruled_proxy(start_module_proxy: Callable[..., ProxyProcess]) -> ProxyProcess:
    return start_module_proxy(CQRS_SSO_ACCESS_RULES=RULES, CQRS_SSO_CLAIM_HEADERS=CLAIMS)


def test_an_approver_reaches_approvals_with_their_claims_as_headers(
    ruled_proxy: ProxyProcess, make_browser: Callable[[str], Browser]
) -> None:
    browser = make_browser(ruled_proxy.url)
    assert browser.sign_in(APPROVER, path="/approvals/2026").status_code == 303
    seen = browser.get(
        "/approvals/2026", headers={"X_Forwarded_Roles": "CQRS.Admin", "X-Forwarded-Oid": "forged"}
    )
    assert seen.status_code == 200
    headers = seen.json()["headers"]
    assert headers["x-forwarded-roles"] == "CQRS.Approver"  # the session's, not the client's
    assert headers["x-forwarded-oid"] != "forged" and headers["x-forwarded-oid"]
    assert "x_forwarded_roles" not in headers


@pytest.mark.parametrize("path", ["/admin", "/approvals/../admin", "/messages/%2e%2e/admin", "/admin;x=1"])
def test_a_refused_request_never_reaches_the_upstream(
    ruled_proxy: ProxyProcess, make_browser: Callable[[str], Browser], path: str
) -> None:
    browser = make_browser(ruled_proxy.url)
    browser.sign_in(APPROVER)
    reply = browser.get(path)
    assert reply.status_code in (400, 403), (path, reply.status_code)
    assert "headers" not in reply.text  # the legacy app's echo never answered
    if reply.status_code == 403:
        assert "You do not have access to this part of CQRS" in reply.text


def test_step_up_through_the_proxy(ruled_proxy: ProxyProcess, make_browser: Callable[[str], Browser]) -> None:
    browser = make_browser(ruled_proxy.url)
    browser.sign_in(GP_USER)
    asked = browser.get("/declarations/2026")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/oauth2/sign_in?rd=%2Fdeclarations%2F2026&max_auth_age=900"
    assert "Sign in again to continue" in browser.get(asked.headers["location"]).text
