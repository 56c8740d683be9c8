"""The built-in NHSmail-like provider, tested as a provider (it must be strict too: a lax
test provider would let middleware bugs through)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from cqrs_sso_middleware.provider import (
    DEMO_NOTICE,
    WRONG_CREDENTIALS,
    DemoClient,
    DemoUser,
    NHSmailLikeProvider,
)

BASE = "http://127.0.0.1:8001"
TENANT = "8e1f2b4c-3d5a-4f6e-9a7b-0c1d2e3f4a5b"
REDIRECT = "http://127.0.0.1:8000/oauth2/callback"
ROOT = f"/{TENANT}/oauth2/v2.0"


@pytest.fixture
def provider() -> NHSmailLikeProvider:
    return NHSmailLikeProvider(
        BASE,
        TENANT,
        [DemoUser("gp.user@nhs.net", "cqrs-demo", "Dr Gita Patel")],
        [DemoClient("app", "app-secret", (REDIRECT,))],
    )


@pytest.fixture
def client(provider: NHSmailLikeProvider) -> Iterator[TestClient]:
    with TestClient(provider.app, base_url=BASE, follow_redirects=False) as test_client:
        yield test_client


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str, **changes: str) -> dict[str, str]:
    params = {
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile",
        "state": "st",
        "nonce": "nn",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return params


def get_code(client: TestClient, challenge: str, **changes: str) -> str:
    params = authorize_params(challenge, **changes)
    reply = client.post(
        f"{ROOT}/authorize", data={**params, "login": "GP.User@nhs.net", "passwd": "cqrs-demo"}
    )
    assert reply.status_code == 302, reply.text
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["state"] == ["st"]
    return query["code"][0]


def redeem(client: TestClient, code: str, verifier: str, **changes: Any) -> Any:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    form.update(changes.pop("form", {}))
    auth = changes.pop("auth", ("app", "app-secret"))
    return client.post(f"{ROOT}/token", data=form, auth=auth)


def test_discovery_is_entra_shaped(client: TestClient, provider: NHSmailLikeProvider) -> None:
    document = client.get(f"/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert document["issuer"] == f"{BASE}/{TENANT}/v2.0"
    assert document["jwks_uri"] == f"{BASE}/{TENANT}/discovery/v2.0/keys"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["frontchannel_logout_supported"] is True
    assert "backchannel_logout_supported" not in document


def test_login_page_reads_like_nhsmail_and_says_it_is_a_demo(client: TestClient) -> None:
    _, challenge = pkce()
    page = client.get(f"{ROOT}/authorize?{urlencode(authorize_params(challenge))}")
    assert page.status_code == 200
    for text in (
        "Sign in with your NHSmail account",
        "Email Address",
        "Password",
        ">Sign in</button>",
        DEMO_NOTICE,
    ):
        assert text in page.text
    assert '<html lang="en-GB">' in page.text


def test_wrong_password_shows_the_seed_error_text(client: TestClient) -> None:
    _, challenge = pkce()
    params = authorize_params(challenge)
    reply = client.post(f"{ROOT}/authorize", data={**params, "login": "gp.user@nhs.net", "passwd": "nope"})
    assert reply.status_code == 200
    assert WRONG_CREDENTIALS in reply.text


def test_authorization_code_flow_issues_a_valid_entra_shaped_id_token(
    client: TestClient, provider: NHSmailLikeProvider
) -> None:
    verifier, challenge = pkce()
    reply = redeem(client, get_code(client, challenge), verifier)
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store"
    token = jwt.decode(reply.json()["id_token"], provider.key_set(), algorithms=["RS256"])
    claims = token.claims
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == "app"
    assert claims["nonce"] == "nn"
    assert claims["tid"] == TENANT
    assert claims["ver"] == "2.0"
    assert claims["preferred_username"] == "gp.user@nhs.net"
    assert re.fullmatch(r"[0-9a-f-]{36}", claims["oid"])
    assert claims["sub"] != claims["oid"]  # pairwise
    assert token.header["kid"] == provider.signing_key.kid


def test_client_secret_post_is_accepted(client: TestClient) -> None:
    verifier, challenge = pkce()
    reply = redeem(
        client,
        get_code(client, challenge),
        verifier,
        auth=None,
        form={"client_id": "app", "client_secret": "app-secret"},
    )
    assert reply.status_code == 200


@pytest.mark.parametrize(
    "changes,error",
    [
        pytest.param({"auth": ("app", "wrong")}, "invalid_client", id="wrong-secret"),
        pytest.param({"auth": None}, "invalid_request", id="no-client-auth"),
        pytest.param({"auth": ("nobody", "app-secret")}, "unauthorized_client", id="unknown-client"),
        pytest.param({"form": {"code_verifier": "x" * 43}}, "invalid_grant", id="wrong-pkce-verifier"),
        pytest.param(
            {"form": {"redirect_uri": "http://127.0.0.1:8000/other"}}, "invalid_grant", id="other-redirect"
        ),
        pytest.param({"form": {"grant_type": "password"}}, "unsupported_grant_type", id="grant-type"),
    ],
)
def test_token_endpoint_refuses_bad_requests(client: TestClient, changes: dict[str, Any], error: str) -> None:
    verifier, challenge = pkce()
    reply = redeem(client, get_code(client, challenge), verifier, **changes)
    assert reply.json()["error"] == error


def test_codes_are_single_use(client: TestClient) -> None:
    verifier, challenge = pkce()
    code = get_code(client, challenge)
    assert redeem(client, code, verifier).status_code == 200
    assert redeem(client, code, verifier).json()["error"] == "invalid_grant"


def test_codes_expire_after_ten_minutes(provider: NHSmailLikeProvider, client: TestClient) -> None:
    verifier, challenge = pkce()
    code = get_code(client, challenge)
    real_clock = provider.clock
    provider.clock = lambda: real_clock() + 601
    assert redeem(client, code, verifier).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"code_challenge_method": "plain"}, id="plain-pkce"),
        pytest.param({"code_challenge": ""}, id="no-pkce"),
        pytest.param({"response_type": "token"}, id="implicit"),
        pytest.param({"scope": "email"}, id="no-openid-scope"),
    ],
)
def test_authorize_requires_code_flow_with_pkce_s256(client: TestClient, changes: dict[str, str]) -> None:
    _, challenge = pkce()
    reply = client.get(f"{ROOT}/authorize?{urlencode(authorize_params(challenge, **changes))}")
    assert reply.status_code == 302
    assert "error=invalid_request" in reply.headers["location"]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"redirect_uri": "https://evil.example/cb"}, id="unregistered-redirect"),
        pytest.param({"client_id": "unknown"}, id="unknown-client"),
    ],
)
def test_authorize_never_redirects_to_an_unregistered_address(
    client: TestClient, changes: dict[str, str]
) -> None:
    _, challenge = pkce()
    reply = client.get(f"{ROOT}/authorize?{urlencode(authorize_params(challenge, **changes))}")
    assert reply.status_code == 400
    assert "location" not in reply.headers


def test_cancel_returns_access_denied_to_the_app(client: TestClient) -> None:
    _, challenge = pkce()
    reply = client.post(f"{ROOT}/authorize", data={**authorize_params(challenge), "action": "cancel"})
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["st"]


def test_key_rotation_publishes_old_and_new_until_retired(
    client: TestClient, provider: NHSmailLikeProvider
) -> None:
    first = provider.signing_key.kid
    second = provider.rotate_keys().kid
    kids = [k["kid"] for k in client.get(f"/{TENANT}/discovery/v2.0/keys").json()["keys"]]
    assert kids == [second, first]
    provider.rotate_keys(retire_old=True)
    keys = KeySet.import_key_set(client.get(f"/{TENANT}/discovery/v2.0/keys").json())
    assert [k.kid for k in keys] == [provider.signing_key.kid]
    assert all("d" not in k.as_dict(private=False) for k in keys)  # public parts only
