"""API clients with access tokens on ``api_paths``, through both drivers: a script's own
token (client credentials, from the built-in provider's token endpoint) and a person's
(``scp``) are served as a signed-in person would be; every forged or misused token in the
table below is refused with RFC 6750's challenge, never with a sign-in page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider

from ..conftest import APPROVER, CLIENT_ID, GP_USER, SENSITIVE
from ..helpers import AppClient

API = "api://cqrs-reports"
SCRIPT, SCRIPT_SECRET = "reporting-script", "reporting-script-secret"
UNKNOWN_SCRIPT = "unknown-script"
OTHER_TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ENTRA = "https://login.microsoftonline.com"
ATTACKER = RSAKey.generate_key(2048, parameters={"kid": "attacker", "alg": "RS256"})


@pytest.fixture
def api_provider(provider: NHSmailLikeProvider) -> Iterator[NHSmailLikeProvider]:
    provider.clients[SCRIPT] = DemoClient(SCRIPT, SCRIPT_SECRET, ())
    provider.clients[UNKNOWN_SCRIPT] = DemoClient(UNKNOWN_SCRIPT, SCRIPT_SECRET, ())
    provider.api.app_roles[API] = {SCRIPT: ("Reports.Export",), UNKNOWN_SCRIPT: ("Reports.Export",)}
    SENSITIVE.add(SCRIPT_SECRET)
    yield provider
    provider.clients.pop(SCRIPT)
    provider.clients.pop(UNKNOWN_SCRIPT)
    provider.api.app_roles.clear()


@pytest.fixture
def api(make_client: Callable[..., AppClient], api_provider: NHSmailLikeProvider) -> AppClient:
    return make_client(
        api_paths=("/api/**",),
        api_audiences=(API,),
        api_scopes=("Reports.Read",),
        access_rules=({"paths": ["/api/exports/**"], "roles": ["Reports.Export"]},),
    )


def client_credentials(provider: NHSmailLikeProvider, client_id: str = SCRIPT) -> str:
    """What a script does: the client credentials grant at the token endpoint."""
    token_endpoint = f"{provider.base_url}/{provider.tenant_id}/oauth2/v2.0/token"
    reply = httpx.post(
        token_endpoint,
        data={"grant_type": "client_credentials", "scope": f"{API}/.default"},
        auth=(client_id, SCRIPT_SECRET),
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def signed(claims: dict[str, Any], key: Any, alg: str = "RS256", kid: str | None = "attacker") -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    return jwt.encode(header, claims, key, algorithms=[alg])


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256(claims: dict[str, Any], secret: str | bytes, kid: str) -> str:
    """The alg confusion attack: HMAC with the provider's public key as the secret (made by
    hand: joserfc refuses to use a public key so)."""
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64(claims)}"
    key = secret if isinstance(secret, bytes) else secret.encode()
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def test_a_script_with_its_own_token_reaches_the_api_as_its_account(
    api: AppClient, api_provider: NHSmailLikeProvider
) -> None:
    reply = api.get("/api/exports/2026", bearer(client_credentials(api_provider)))
    assert reply.status == 200, reply.text
    seen = reply.json()
    assert seen["user"] == "app:reporting-script" and seen["account_id"] == "CQRS-APP-01"
    assert "Reports.Export" in seen["roles"]
    assert seen["identity_headers"] == {}


def test_a_persons_token_reaches_the_api_with_their_account(
    api: AppClient, api_provider: NHSmailLikeProvider
) -> None:
    user = api_provider.users[GP_USER]
    token = api_provider.api.access_token_for(user, "cqrs-reports-spa", API, "Reports.Read")
    reply = api.get("/api/reports/2026", bearer(token))
    assert reply.status == 200 and reply.json()["user"] == GP_USER
    # An access rule applies to the token's roles: this person has no Reports.Export.
    refused = api.get("/api/exports/2026", bearer(token))
    assert refused.status == 403
    challenge = refused.header("WWW-Authenticate") or ""
    assert challenge.startswith('Bearer realm="CQRS", error="insufficient_scope"')


def test_without_a_token_an_api_path_answers_401_bearer_never_a_sign_in_page(api: AppClient) -> None:
    reply = api.get("/api/reports/2026", {"Accept": "text/html"})
    assert reply.status == 401
    assert reply.header("WWW-Authenticate") == 'Bearer realm="CQRS"'
    assert reply.header("Location") is None


def test_a_checked_token_is_remembered_until_it_expires(
    api: AppClient, api_provider: NHSmailLikeProvider
) -> None:
    token = client_credentials(api_provider)
    assert api.get("/api/reports/1", bearer(token)).status == 200
    api_provider.rotate_keys(retire_old=True)  # the key that signed it is no longer published
    assert api.get("/api/reports/2", bearer(token)).status == 200  # no second signature check


def forged_tokens(provider: NHSmailLikeProvider) -> dict[str, tuple[str, int]]:
    """Name: (token, the status it must get). Each breaks one rule."""
    user = provider.users[GP_USER]
    now = int(time.time())
    good = claims_of(provider.api.access_token_for(user, "cqrs-reports-spa", API, "Reports.Read"))
    app = claims_of(provider.api.access_token_for(None, SCRIPT, API))
    public_pem = provider.signing_key.as_pem(private=False)
    real_kid = provider.signing_key.kid

    def provider_signed(**changes: Any) -> str:
        return provider.api.access_token_for(user, "cqrs-reports-spa", API, "Reports.Read", **changes)

    tampered_parts = provider_signed().split(".")
    tampered_parts[1] = b64({**good, "roles": ["Reports.Export"]})
    return {
        "expired": (provider_signed(exp=now - 3600, iat=now - 7200, nbf=now - 7200), 401),
        "not-yet-valid": (provider_signed(nbf=now + 3600), 401),
        "another-api": (provider_signed(aud="api://another-service"), 401),
        "id-token-for-the-web-app": (provider.id_token_for(user, CLIENT_ID, "n-0nce"), 401),
        "id-token-with-the-api-audience": (provider.id_token_for(user, API, "n-0nce"), 401),
        "another-tenant": (provider_signed(tid=OTHER_TENANT), 401),
        "another-issuer": (
            provider_signed(iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"),
            401,
        ),
        "v1-issuer": (provider_signed(iss=f"https://sts.windows.net/{provider.tenant_id}/"), 401),
        "alg-none": (f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(good)}.", 401),
        "hs256-with-the-public-key": (hs256(good, public_pem, real_kid), 401),
        "attackers-key-real-kid": (signed(good, ATTACKER, kid=real_kid), 401),
        "attackers-key-own-kid": (signed(good, ATTACKER), 401),
        "payload-changed-after-signing": (".".join(tampered_parts), 401),
        "not-a-jwt": ("not-a-token", 401),
        "scope-not-for-reports": (provider_signed(scp="Other.Write"), 403),
        "application-without-roles": (
            signed({**app, "roles": []}, provider.signing_key, kid=real_kid),
            403,
        ),
        "application-without-an-account": (
            provider.api.access_token_for(None, UNKNOWN_SCRIPT, API),
            403,
        ),
    }


FORGED = [
    "expired",
    "not-yet-valid",
    "another-api",
    "id-token-for-the-web-app",
    "id-token-with-the-api-audience",
    "another-tenant",
    "another-issuer",
    "v1-issuer",
    "alg-none",
    "hs256-with-the-public-key",
    "attackers-key-real-kid",
    "attackers-key-own-kid",
    "payload-changed-after-signing",
    "not-a-jwt",
    "scope-not-for-reports",
    "application-without-roles",
    "application-without-an-account",
]


@pytest.mark.parametrize("name", FORGED)
def test_a_forged_or_misused_token_is_refused(
    api: AppClient, api_provider: NHSmailLikeProvider, name: str
) -> None:
    token, status = forged_tokens(api_provider)[name]
    reply = api.get("/api/reports/2026", bearer(token))
    assert reply.status == status, (name, reply.status, reply.text)
    challenge = reply.header("WWW-Authenticate") or ""
    expected = "invalid_token" if status == 401 else "insufficient_scope"
    assert challenge.startswith('Bearer realm="CQRS"') and f'error="{expected}"' in challenge
    assert reply.json().get("user") is None  # the app never answered


def test_another_authorization_scheme_is_an_invalid_request(api: AppClient) -> None:
    reply = api.get("/api/reports/2026", {"Authorization": "Basic cmVwb3J0aW5nOnNlY3JldA=="})
    assert reply.status == 401 and 'error="invalid_request"' in (reply.header("WWW-Authenticate") or "")


def test_outside_api_paths_a_token_opens_nothing(api: AppClient, api_provider: NHSmailLikeProvider) -> None:
    reply = api.get("/messages", {**bearer(client_credentials(api_provider)), "Accept": "text/html"})
    assert reply.status == 303 and "/oauth2/sign_in" in reply.location


def test_an_api_audience_that_is_the_sign_in_client_is_refused_at_start_up(
    make_settings: Callable[..., Any],
) -> None:
    with pytest.raises(Exception, match="api_audiences: 'cqrs-test-client' is a sign-in client id"):
        make_settings(api_paths=("/api/**",), api_audiences=(CLIENT_ID,))


def test_a_session_still_works_on_api_paths_for_the_apps_own_scripts(
    make_client: Callable[..., AppClient], api_provider: NHSmailLikeProvider
) -> None:
    from ..helpers import Journey

    journey = Journey(make_client(api_paths=("/api/**",), api_audiences=(API,)))
    try:
        journey.sign_in(APPROVER)
        reply = journey.app.get("/api/reports/2026", {"Accept": "application/json"})
        assert reply.status == 200 and reply.json()["user"] == APPROVER
    finally:
        journey.close()


def test_forward_auth_checks_an_api_paths_token_and_names_the_caller(
    api: AppClient, api_provider: NHSmailLikeProvider
) -> None:
    token = client_credentials(api_provider)
    reply = api.get("/oauth2/auth", {**bearer(token), "X-Original-URI": "/api/exports/2026"})
    assert reply.status == 202
    assert reply.header("X-Auth-Request-User") == "app:reporting-script"
    assert reply.header("X-Auth-Request-Email") == "app:reporting-script"


@pytest.mark.parametrize("name", FORGED)
def test_forward_auth_refuses_a_forged_token_as_the_api_does(
    api: AppClient, api_provider: NHSmailLikeProvider, name: str
) -> None:
    token, status = forged_tokens(api_provider)[name]
    reply = api.get("/oauth2/auth", {**bearer(token), "X-Original-URI": "/api/reports/2026"})
    assert reply.status == status
    expected = "invalid_token" if status == 401 else "insufficient_scope"
    assert f'error="{expected}"' in (reply.header("WWW-Authenticate") or "")
    assert reply.header("X-Auth-Request-User") is None


def test_forward_auth_ignores_a_token_outside_api_paths(
    api: AppClient, api_provider: NHSmailLikeProvider
) -> None:
    token = client_credentials(api_provider)
    reply = api.get("/oauth2/auth", {**bearer(token), "X-Original-URI": "/messages"})
    assert reply.status == 401 and reply.json()["error"] == "unauthenticated"
