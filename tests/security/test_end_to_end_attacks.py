"""Attacks and faults end to end, through both drivers and the real provider on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from cqrs_sso_middleware import Account, Settings
from cqrs_sso_middleware.core.oidc.tokens import FAILED_REFRESH_RETRY_SECONDS
from cqrs_sso_middleware.core.security.redirects import safe_return_path
from cqrs_sso_middleware.core.sessions.attempts import MAX_OPEN_ATTEMPTS
from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import GP_USER, PASSWORD, FakeClock
from ..helpers import HTML, AppClient, Journey, form_fields, jwks_fetches, record_provider_requests

PAYLOADS = Path(__file__).parent.parent / "data" / "openredirects.txt"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def alg_none(token: str) -> str:
    _, payload, _ = token.split(".")
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."


def resigned_with_another_key(token: str) -> str:
    header, payload, _ = token.split(".")
    kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
    stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, stranger, algorithms=["RS256"])


def truncated(token: str) -> str:
    return token[:-10]


@pytest.mark.parametrize(
    "rewrite,claims",
    [
        pytest.param(alg_none, {}, id="alg-none"),
        pytest.param(resigned_with_another_key, {}, id="right-kid-wrong-key"),
        pytest.param(truncated, {}, id="truncated"),
        pytest.param(None, {"iss": "https://login.microsoftonline.com/other-tenant/v2.0"}, id="other-tenant"),
        pytest.param(None, {"aud": "someone-elses-app"}, id="wrong-audience"),
        pytest.param(None, {"exp": 1_000_000_000}, id="expired"),
        pytest.param(None, {"nonce": "from-another-attempt"}, id="wrong-nonce"),
    ],
)
def test_forged_id_token_end_to_end_is_refused_without_a_session(
    journey: Journey,
    provider: NHSmailLikeProvider,
    rewrite: Callable[[str], str] | None,
    claims: dict[str, object],
) -> None:
    provider.faults.id_token_rewrite = rewrite
    provider.faults.claim_overrides = dict(claims)
    reply = journey.sign_in(GP_USER)
    assert reply.status == 401
    assert "Sign in to NHSmail failed" in reply.text
    assert "cqrs_sso" not in journey.app.cookie_names()
    assert journey.open("/").status == 303


def test_rp_key_rotation_op_sign_key(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider
) -> None:
    """The provider rolls its key right after a sign-in; the next sign-in, a moment later,
    succeeds after exactly one extra JWKS request, and the session never needed the keys."""
    first = make_journey()
    seen = record_provider_requests(first.app)
    assert first.sign_in(GP_USER).status == 303
    assert jwks_fetches(seen) == 1
    provider.rotate_keys(retire_old=True)
    assert first.open("/").status == 200
    second = make_journey(first.app)
    second.app.clear_cookies()
    assert second.sign_in(GP_USER).status == 303
    assert jwks_fetches(seen) == 2


def test_rotation_while_the_jwks_endpoint_is_down_is_unavailable_then_accepted(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider, clock: FakeClock
) -> None:
    journey = make_journey()
    assert journey.sign_in(GP_USER).status == 303
    provider.rotate_keys()
    provider.faults.jwks_status = 503
    journey.app.clear_cookies()
    down = journey.sign_in(GP_USER)
    assert down.status == 503
    assert "temporarily unavailable" in down.text
    provider.faults.jwks_status = None
    clock.advance(FAILED_REFRESH_RETRY_SECONDS)
    journey.app.clear_cookies()
    assert journey.sign_in(GP_USER).status == 303


def test_forged_unknown_kids_cost_the_provider_at_most_one_jwks_request(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider
) -> None:
    journey = make_journey()
    seen = record_provider_requests(journey.app)
    assert journey.sign_in(GP_USER).status == 303
    forger = RSAKey.generate_key(2048, parameters={"kid": "forger", "use": "sig"})
    counter = iter(range(1_000_000))

    def forge(token: str) -> str:
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        return jwt.encode({"alg": "RS256", "kid": f"forged-{next(counter)}"}, claims, forger)

    provider.faults.id_token_rewrite = forge
    for _ in range(25):
        journey.app.clear_cookies()
        assert journey.sign_in(GP_USER).status == 401
    assert jwks_fetches(seen) <= 2  # the first fetch, and at most one unknown-kid refresh


def test_twenty_tabs_signing_in_at_once_all_succeed(journey: Journey) -> None:
    authorize_urls = [journey.start(f"/tab/{n}") for n in range(20)]
    answers = [journey.provider_login(url, GP_USER, PASSWORD) for url in authorize_urls]
    for n, answer in reversed(list(enumerate(answers))):
        reply = journey.callback(answer.headers["location"])
        assert reply.status == 303, n
        assert reply.location == f"/tab/{n}"


def test_attempt_cookies_are_bounded_and_the_cookie_header_stays_under_8k(journey: Journey) -> None:
    long_path = "/reports/" + "x" * 400
    for _ in range(MAX_OPEN_ATTEMPTS + 5):
        journey.start(long_path)
    attempts = [n for n in journey.app.cookie_names() if "-attempt-" in n]
    assert len(attempts) <= MAX_OPEN_ATTEMPTS
    journey.sign_in(GP_USER)
    client = journey.app
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    header = "; ".join(f"{c.name}={c.value}" for c in jar)
    assert len(header) < 8192


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("code=abc", id="state-missing"),
        pytest.param("state=unknown-state&code=abc", id="state-unknown"),
        pytest.param("", id="nothing"),
        pytest.param("state=&code=", id="empty-values"),
    ],
)
def test_callback_without_a_matching_state_is_refused(journey: Journey, query: str) -> None:
    journey.start()
    reply = journey.app.get(f"/oauth2/callback?{query}", HTML)
    assert reply.status == 400
    assert "cqrs_sso" not in journey.app.cookie_names()


def test_every_open_redirect_payload_ends_same_origin_through_the_sign_in_page(app_client: AppClient) -> None:
    for payload in PAYLOADS.read_text(encoding="utf-8").splitlines():
        if not payload.strip():
            continue
        page = app_client.get(f"/oauth2/sign_in?rd={quote(payload, safe='')}", HTML)
        assert page.status == 200, payload
        kept = form_fields(page.text)["rd"]
        assert kept == "/" or safe_return_path(kept, reserved_prefix="/oauth2") == kept, payload


def test_protected_path_redirect_never_points_off_site(app_client: AppClient) -> None:
    for path in ("//evil.example/x", "/\\evil.example", "/%2F%2Fevil.example", "/a?next=//evil.example"):
        reply = app_client.get(path, HTML)
        if reply.status == 400:
            continue  # refused as an ambiguous path (core.paths): no redirect at all
        assert reply.status == 303
        location = reply.location
        assert location.startswith("/oauth2/sign_in?rd=")
        rd = parse_qs(urlsplit(location).query)["rd"][0]
        assert safe_return_path(rd, reserved_prefix="/oauth2") == rd


def test_duplicated_session_cookie_names_use_the_first_genuine_one(journey: Journey) -> None:
    journey.sign_in(GP_USER)
    client = journey.app
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    session = next(c.value for c in jar if c.name == "cqrs_sso")
    client.clear_cookies()
    cookie = f"cqrs_sso=forged.value; cqrs_sso={session}"
    assert client.get("/", {**HTML, "Cookie": cookie}).json()["user"] == GP_USER
    assert client.get("/", {**HTML, "Cookie": "cqrs_sso=forged; cqrs_sso=also.forged"}).status == 303


@pytest.mark.parametrize(
    "header",
    ["X_Forwarded_User", "X-Forwarded-Preferred-Username", "X-Remote-User", "X-Auth-Request-Email"],
)
def test_identity_header_spellings_never_reach_the_app(journey: Journey, header: str) -> None:
    journey.sign_in(GP_USER)
    seen = journey.app.get("/", {**HTML, header: "attacker@nhs.net"}).json()
    assert seen["identity_headers"] == {}
    assert seen["user"] == GP_USER


# -- faults fail closed ----------------------------------------------------------------------


def test_provider_metadata_unreachable_at_start(
    make_client: Callable[..., AppClient], provider: NHSmailLikeProvider, make_journey: Callable[..., Journey]
) -> None:
    provider.faults.metadata_status = 500
    client = make_client()  # start-up works without the provider
    assert client.get("/healthz").status == 200
    ready = client.get("/readyz")
    assert ready.status == 503
    assert ready.json()["status"] == "not ready"
    journey = make_journey(client)
    page = journey.sign_in_page()
    reply = client.post("/oauth2/start", form_fields(page.text), HTML)
    assert reply.status == 503
    assert "temporarily unavailable" in reply.text
    assert "CQRS help desk" in reply.text


@pytest.mark.parametrize(
    "fault,value",
    [
        pytest.param("token_status", 500, id="token-endpoint-500"),
        pytest.param("token_body", b"<html>proxy error</html>", id="token-endpoint-not-json"),
        pytest.param("token_body", b'{"access_token": "x"}', id="json-without-id-token"),
        pytest.param("token_delay_seconds", 1.5, id="token-endpoint-timeout"),
        pytest.param("jwks_status", 503, id="jwks-unreachable"),
    ],
)
def test_provider_faults_at_callback_give_503_and_no_session(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider, fault: str, value: object
) -> None:
    journey = make_journey(http_timeout_seconds=0.5)
    answer = journey.provider_login(journey.start(), GP_USER, PASSWORD)
    setattr(provider.faults, fault, value)
    if fault == "token_body":
        provider.faults.token_status = 200
    reply = journey.callback(answer.headers["location"])
    assert reply.status == 503
    assert "temporarily unavailable" in reply.text
    assert "Traceback" not in reply.text
    assert "cqrs_sso" not in journey.app.cookie_names()


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"name": "Dr Gita Patel\r\nX-Forwarded-User: admin@nhs.net"}, id="crlf-in-name"),
        pytest.param({"email": "gp.user@nhs.net\r\nX-CQRS-Account: CQRS-9999"}, id="crlf-in-email"),
        pytest.param({"email": "gp.user@nhs.net\x00"}, id="nul-in-email"),
        pytest.param({"name": "Dr Gita\x85Patel"}, id="c1-control-in-name"),
    ],
)
def test_identity_with_control_characters_is_refused_at_sign_in(
    journey: Journey,
    provider: NHSmailLikeProvider,
    claims: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The email and name travel on as header values (REMOTE_USER, X-Forwarded-User): with
    a CR/LF they would split an upstream request. Sign-in fails, no session, audited."""
    provider.faults.claim_overrides = dict(claims)
    reply = journey.sign_in(GP_USER)
    assert reply.status == 401 and "Sign in to NHSmail failed" in reply.text
    assert "cqrs_sso" not in journey.app.cookie_names()
    assert '"reason": "control_character_in_claim"' in caplog.text


def test_account_id_with_control_characters_is_a_lookup_failure(
    make_journey: Callable[..., Journey],
) -> None:
    journey = make_journey(account_lookup=lambda identity: Account("CQRS-1\r\nX-Admin: 1", identity.email))
    reply = journey.sign_in(GP_USER)
    assert reply.status == 503
    assert "cqrs_sso" not in journey.app.cookie_names()


@pytest.mark.parametrize(
    "origin,allowed",
    [
        ("http://localhost", True),
        ("http://LOCALHOST", True),
        ("https://evil.example", False),
        ("null", False),
    ],
)
def test_websocket_upgrade_must_come_from_our_origin(
    make_settings: Callable[..., Settings], origin: str, allowed: bool
) -> None:
    from starlette.websockets import WebSocketDisconnect

    from cqrs_sso_middleware import ASGISSOMiddleware

    from ..conftest import echo_asgi
    from ..helpers import ASGIClient

    client = ASGIClient(ASGISSOMiddleware(echo_asgi(), make_settings()))
    journey = Journey(client)
    try:
        journey.sign_in(GP_USER)
        if allowed:
            with client.client.websocket_connect("ws://localhost/ws", headers={"Origin": origin}) as socket:
                assert socket.receive_text() == f"hello {GP_USER}"
        else:
            with (
                pytest.raises(WebSocketDisconnect) as closed,
                client.client.websocket_connect("ws://localhost/ws", headers={"Origin": origin}),
            ):
                pass
            assert closed.value.code == 4403
    finally:
        journey.close()
        client.close()
