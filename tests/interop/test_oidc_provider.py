"""The the user guide's scenarios against an independent, certified provider, through both drivers."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc.jwk import RSAKey

from ..conftest import FakeClock
from ..helpers import HTML, AppClient, Journey, jwks_fetches, record_provider_requests
from .conftest import APPROVER, GP_USER, MEMBER_USER, NEW_USER, PASSWORD, OidcProvider

WRONG_CREDENTIALS = "Incorrect user ID or password"


def session_cookies(client: AppClient) -> list[str]:
    return [name for name in client.cookie_names() if name == "cqrs_sso"]


def test_step1_sign_in_page_and_api_401(journey: Journey) -> None:
    assert journey.open("/messages").status == 303
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in journey.sign_in_page().text
    assert journey.app.get("/api", {"Accept": "application/json"}).status == 401


@pytest.mark.parametrize(
    "auth_method",
    ["client_secret_basic", "client_secret_post", "private_key_jwt", "private_key_jwt:RS256"],
    indirect=True,
)
def test_step3_sign_in_with_each_client_authentication_method(journey: Journey, auth_method: str) -> None:
    reply = journey.sign_in(GP_USER, PASSWORD, path="/messages?x=1")
    assert reply.status == 303, reply.text[:500]
    assert reply.location == "/messages?x=1"
    seen = journey.open("/").json()
    assert seen["user"] == GP_USER
    assert seen["account_id"] == "CQRS-0001"


def test_step3_user_without_email_claim_is_matched_by_preferred_username(journey: Journey) -> None:
    assert journey.sign_in(MEMBER_USER, PASSWORD).status == 303
    assert journey.open("/").json()["user"] == MEMBER_USER


def test_step4_wrong_password_is_refused_by_the_provider(journey: Journey) -> None:
    answer = journey.provider_login(journey.start(), GP_USER, "wrong")
    assert answer.status_code == 200
    assert WRONG_CREDENTIALS in answer.text
    assert not session_cookies(journey.app)


def test_step4_cancelled_sign_in_shows_sign_in_failed(journey: Journey) -> None:
    answer = journey.provider_login(journey.start(), GP_USER, PASSWORD, action="cancel")
    assert "error=access_denied" in answer.headers["location"]
    reply = journey.callback(answer.headers["location"])
    assert reply.status == 401
    assert "Sign in to NHSmail failed" in reply.text


def test_step5_no_cqrs_account(journey: Journey) -> None:
    reply = journey.sign_in(NEW_USER, PASSWORD)
    assert reply.status == 403
    assert NEW_USER in reply.text
    assert not session_cookies(journey.app)


def test_parallel_tabs(journey: Journey) -> None:
    first, second = journey.start("/one"), journey.start("/two")
    second_answer = journey.provider_login(second, GP_USER, PASSWORD)
    first_answer = journey.provider_login(first, GP_USER, PASSWORD)
    assert journey.callback(second_answer.headers["location"]).location == "/two"
    assert journey.callback(first_answer.headers["location"]).location == "/one"


def test_state_reuse_is_refused(journey: Journey) -> None:
    answer = journey.provider_login(journey.start(), GP_USER, PASSWORD)
    assert journey.callback(answer.headers["location"]).status == 303
    assert journey.callback(answer.headers["location"]).status == 400


def test_rp_key_rotation_op_sign_key(make_journey: Callable[..., Journey], idp: OidcProvider) -> None:
    """oidc-provider restarted with a new key right after a sign-in: the next sign-in, a
    moment later, succeeds after exactly one extra JWKS request."""
    journey = make_journey()
    seen = record_provider_requests(journey.app)
    assert journey.sign_in(GP_USER, PASSWORD).status == 303
    assert jwks_fetches(seen) == 1
    idp.rotate_keys()
    assert journey.open("/").status == 200  # the session does not depend on provider keys
    journey.app.clear_cookies()
    journey.provider.cookies.clear()
    assert journey.sign_in(GP_USER, PASSWORD).status == 303
    assert jwks_fetches(seen) == 2


def test_provider_stopped_fails_closed(make_journey: Callable[..., Journey], idp: OidcProvider) -> None:
    warm = make_journey()
    answer = warm.provider_login(warm.start(), GP_USER, PASSWORD)
    idp.stop()
    reply = warm.callback(answer.headers["location"])
    assert reply.status == 503
    assert "temporarily unavailable" in reply.text
    cold = make_journey()
    page = cold.sign_in_page()
    from ..helpers import form_fields

    assert cold.app.post("/oauth2/start", form_fields(page.text), HTML).status == 503
    assert cold.app.get("/readyz").status == 503


@pytest.mark.parametrize("skew", [-120, 120], ids=["clock-2min-behind", "clock-2min-ahead"])
def test_clock_skew_within_leeway(journey: Journey, clock: FakeClock, skew: int) -> None:
    clock.advance(skew)
    assert journey.sign_in(GP_USER, PASSWORD).status == 303


def test_pkce_and_pairwise_subject_are_real(journey: Journey) -> None:
    authorize = journey.start()
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    journey.provider_login(authorize, GP_USER, PASSWORD)
    reply = journey.sign_in(GP_USER, PASSWORD)
    assert reply.status == 303
    info = journey.app.get("/oauth2/userinfo").json()
    assert info["sub"] != info["oid"]  # pairwise sub, stable oid
    assert info["oid"] == "1d2c3b4a-0000-4000-8000-000000000001"


# -- check-config's credential probe against a provider we did not write ------------------------


def _check_config(idp: OidcProvider, client_id: str, **values: str) -> CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CQRS_SSO_ISSUER": idp.issuer,
        "CQRS_SSO_CLIENT_ID": client_id,
        "CQRS_SSO_SECRET_KEYS": secrets.token_urlsafe(32),
        "CQRS_SSO_BASE_URL": "http://localhost",
        "CQRS_SSO_ACCOUNT_LOOKUP": f"csv:{Path(__file__).parents[2] / 'examples' / 'accounts.csv'}",
        **values,
    }
    command = [sys.executable, "-m", "cqrs_sso_middleware.cli", "check-config"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_check_config_proves_and_refuses_client_secrets(idp: OidcProvider, method: str) -> None:
    client = "interop-basic" if method == "client_secret_basic" else "interop-post"
    good = _check_config(idp, client, CQRS_SSO_CLIENT_SECRET=idp.secret, CQRS_SSO_TOKEN_AUTH_METHOD=method)
    assert good.returncode == 0, good.stderr
    assert "credentials ok" in good.stdout
    bad = _check_config(idp, client, CQRS_SSO_CLIENT_SECRET="wrong", CQRS_SSO_TOKEN_AUTH_METHOD=method)
    assert bad.returncode == 1
    assert "credentials refused: the provider answered invalid_client" in bad.stderr


@pytest.mark.parametrize("algorithm", ["PS256", "RS256"])
def test_check_config_proves_and_refuses_private_key_jwt(
    idp: OidcProvider, tmp_path: Path, algorithm: str
) -> None:
    key = tmp_path / "client.pem"
    key.write_bytes(idp.client_key.as_pem(private=True))
    client = f"interop-pkjwt-{algorithm.lower()}"
    good = _check_config(
        idp,
        client,
        CQRS_SSO_PRIVATE_KEY_FILE=str(key),
        CQRS_SSO_CLIENT_ASSERTION_ALGORITHM=algorithm,
    )
    assert good.returncode == 0, good.stderr
    assert f"private_key_jwt ({algorithm})" in good.stdout and "credentials ok" in good.stdout
    other = tmp_path / "other.pem"
    other.write_bytes(RSAKey.generate_key(2048).as_pem(private=True))
    bad = _check_config(
        idp,
        client,
        CQRS_SSO_PRIVATE_KEY_FILE=str(other),
        CQRS_SSO_CLIENT_ASSERTION_ALGORITHM=algorithm,
    )
    assert bad.returncode == 1
    assert "credentials refused: the provider answered invalid_client" in bad.stderr


def test_an_app_role_in_the_id_token_opens_a_ruled_path(make_journey: Callable[..., Journey]) -> None:
    """oidc-provider issues a roles claim to one user, as Entra does for an assigned app role."""
    rules = [{"paths": ["/approvals/**"], "roles": ["CQRS.Approver"]}]
    approver = make_journey(access_rules=rules)
    assert approver.sign_in(APPROVER, PASSWORD).status == 303
    assert approver.open("/approvals/1").status == 200
    other = make_journey(access_rules=rules)
    assert other.sign_in(GP_USER, PASSWORD).status == 303
    assert other.open("/approvals/1").status == 403
