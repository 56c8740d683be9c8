"""The steps of the CQRS sign-on user guide, and their edge cases, through BOTH drivers.

Every test here runs six times — each driver (wsgi via webtest, asgi via Starlette's
TestClient) with each session store (cookie, memory, Redis) — against the built-in
provider served on a loopback port.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from cqrs_sso_middleware.provider import WRONG_CREDENTIALS, NHSmailLikeProvider

from ..conftest import CLIENT_ID, GP_USER, NEW_USER, NO_EMAIL_USER, PASSWORD, FakeClock
from ..helpers import APP_ORIGIN, HTML, AppClient, Journey, form_fields, path_of, visible_text


@pytest.fixture(params=["cookie", "memory", "redis", "redis-tls", "sentinel", "cluster"])
def session_store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


GUIDE_HELP_EMAIL = "support@cqrs.co.uk"
GUIDE_HELP_PHONE = "0800 4402777 (8am-6pm Mon-Fri exc Bank Holidays)"


def assert_help_desk(text: str) -> None:
    """The user guide's help-desk words, as a person reads them, and a phone link."""
    assert GUIDE_HELP_EMAIL in visible_text(text)
    assert GUIDE_HELP_PHONE in visible_text(text)
    assert 'href="tel:+448004402777"' in text


def session_cookies(client: AppClient) -> list[str]:
    return [name for name in client.cookie_names() if name == "cqrs_sso"]


# -- step 1 of the user guide ---------------------------------------------------------------------------


def test_step1_unauthenticated_navigation_redirects_to_sign_in_page(journey: Journey) -> None:
    first = journey.open("/messages?tab=inbox")
    assert first.status == 303
    assert first.location == "/oauth2/sign_in?rd=%2Fmessages%3Ftab%3Dinbox"
    page = journey.app.get(first.location, HTML)
    assert page.status == 200
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in page.text
    assert "Sign in using your NHSmail account by selecting the button below." in page.text
    assert ">Sign In</button>" in page.text
    for link in ("Help", "Contact Us", "GP Collections Website"):
        assert f">{link}</a>" in page.text
    assert page.header("cache-control") == "no-store"
    assert form_fields(page.text)["rd"] == "/messages?tab=inbox"
    assert_help_desk(page.text)


def test_step1_auto_redirect_skips_the_sign_in_page(
    make_client: Callable[..., AppClient], provider: NHSmailLikeProvider
) -> None:
    client = make_client(auto_redirect=True)
    reply = client.get("/messages", HTML)
    assert reply.status == 303
    assert reply.location.startswith(provider.issuer.replace("/v2.0", "/oauth2/v2.0/authorize"))


@pytest.mark.parametrize(
    "method,headers",
    [
        pytest.param("GET", {"Accept": "application/json"}, id="accept-json"),
        pytest.param("GET", {"X-Requested-With": "XMLHttpRequest", "Accept": "*/*"}, id="xhr"),
        pytest.param("GET", {"Sec-Fetch-Mode": "cors", "Accept": "*/*"}, id="fetch-api"),
        pytest.param("POST", HTML, id="non-get"),
        pytest.param("DELETE", HTML, id="delete"),
    ],
)
def test_api_requests_get_401_json_never_a_redirect(
    app_client: AppClient, method: str, headers: dict[str, str]
) -> None:
    reply = app_client.request(method, "/api/data", headers)
    assert reply.status == 401
    assert reply.header("location") is None
    assert reply.header(
        "www-authenticate",
    ).startswith("CQRS-SSO")  # type: ignore[union-attr]
    assert reply.json() == {"error": "unauthenticated", "sign_in_url": "/oauth2/sign_in"}


# -- step 2 of the user guide ---------------------------------------------------------------------------


def test_step2_sign_in_button_sends_browser_to_provider_with_pkce_state_and_nonce(
    journey: Journey, provider: NHSmailLikeProvider
) -> None:
    authorize = journey.start("/messages")
    parts = urlsplit(authorize)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == provider.issuer.replace(
        "/v2.0", "/oauth2/v2.0/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["response_type"] == "code"
    assert query["redirect_uri"] == "http://localhost/oauth2/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 22  # ≥ 128 bits of base64url
    assert query["nonce"]
    assert set(query["scope"].split()) >= {"openid", "email", "profile"}
    assert f"cqrs_sso-attempt-{query['state']}" in journey.app.cookie_names()


def test_step2_start_without_csrf_token_is_refused(journey: Journey) -> None:
    page = journey.sign_in_page()
    fields = form_fields(page.text)
    fields["csrf_token"] = "forged"
    reply = journey.app.post("/oauth2/start", fields, HTML)
    assert reply.status == 403
    assert reply.header("location") is None


def test_step2_start_from_another_origin_is_refused(journey: Journey) -> None:
    fields = form_fields(journey.sign_in_page().text)
    reply = journey.app.post("/oauth2/start", fields, {**HTML, "Origin": "https://evil.example"})
    assert reply.status == 403


def test_step2_start_by_get_is_not_allowed(app_client: AppClient) -> None:
    reply = app_client.get("/oauth2/start", HTML)
    assert reply.status == 405
    assert reply.header("allow") == "POST"


# -- step 3 of the user guide ---------------------------------------------------------------------------


def test_step3_user_with_account_is_signed_in_and_returned_to_first_page(journey: Journey) -> None:
    callback = journey.sign_in(GP_USER, path="/messages?tab=inbox")
    assert callback.status == 303
    assert callback.location == "/messages?tab=inbox"
    page = journey.open("/messages")
    assert page.status == 200
    seen = page.json()
    assert seen["user"] == GP_USER
    assert seen["account_id"] == "CQRS-0001"
    if journey.app.driver == "wsgi":
        assert seen["remote_user"] == GP_USER
    else:
        assert seen["starlette_user"] == "Dr Gita Patel"
        assert seen["auth"] == ["authenticated"]


def test_step3_default_return_is_the_message_centre(journey: Journey) -> None:
    page = journey.app.get("/oauth2/sign_in", HTML)
    authorize = journey.click_sign_in(page)
    answer = journey.provider_login(authorize, GP_USER, PASSWORD)
    assert journey.callback(answer.headers["location"]).location == "/"


def test_step3_member_user_without_email_claim_is_matched_by_preferred_username(journey: Journey) -> None:
    assert journey.sign_in(NO_EMAIL_USER).status == 303
    assert journey.open("/").json()["user"] == NO_EMAIL_USER


def test_userinfo_returns_the_signed_in_user(journey: Journey) -> None:
    assert journey.app.get("/oauth2/userinfo").status == 401
    journey.sign_in(GP_USER)
    info = journey.app.get("/oauth2/userinfo").json()
    assert info["email"] == GP_USER
    assert info["account_id"] == "CQRS-0001"
    assert info["tid"]


# -- step 4 of the user guide ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email,password",
    [
        pytest.param("nobody@nhs.net", PASSWORD, id="no-nhsmail-account"),
        pytest.param(GP_USER, "wrong-password", id="wrong-password"),
    ],
)
def test_step4_provider_refuses_unknown_user_or_wrong_password(
    journey: Journey, email: str, password: str
) -> None:
    answer = journey.provider_login(journey.start(), email, password)
    assert answer.status_code == 200  # the provider's own page, the app is never reached
    assert WRONG_CREDENTIALS in answer.text
    assert not session_cookies(journey.app)


def test_step4_provider_error_shows_sign_in_failed_page(journey: Journey) -> None:
    state = parse_qs(urlsplit(journey.start()).query)["state"][0]
    refused = f"{APP_ORIGIN}/oauth2/callback?state={state}&error=access_denied" + (
        "&error_description=AADSTS50105%3A+the+signed+in+user+is+not+assigned+to+a+role"
    )
    reply = journey.callback(refused)
    assert reply.status == 401
    assert "Sign in to NHSmail failed" in reply.text
    assert "request one through the usual NHS process" in reply.text
    assert ">Try again</a>" in reply.text
    assert "AADSTS" not in reply.text  # error_description is logged, never shown
    assert_help_desk(reply.text)
    assert not session_cookies(journey.app)


# -- step 5 of the user guide ---------------------------------------------------------------------------


def test_step5_nhsmail_user_without_cqrs_account_sees_no_account_page(journey: Journey) -> None:
    reply = journey.sign_in(NEW_USER)
    assert reply.status == 403
    assert f'no CQRS account is associated\n    with <strong class="email">{NEW_USER}</strong>' in reply.text
    assert_help_desk(reply.text)
    assert not session_cookies(journey.app)
    assert journey.open("/messages").status == 303


def test_step5_email_domain_outside_allow_list_is_refused(make_journey: Callable[..., Journey]) -> None:
    journey = make_journey(allowed_email_domains=("nhs.uk",))
    reply = journey.sign_in(GP_USER)
    assert reply.status == 403
    assert "no CQRS account is associated" in reply.text


# -- sign-out ------------------------------------------------------------------------------


def test_sign_out_is_a_csrf_protected_post_that_ends_the_session(journey: Journey) -> None:
    journey.sign_in(GP_USER)
    confirm = journey.app.get("/oauth2/sign_out", HTML)
    assert confirm.status == 200
    assert GP_USER in confirm.text
    forged = journey.app.post("/oauth2/sign_out", {"csrf_token": "forged"}, HTML)
    assert forged.status == 403
    assert journey.open("/").status == 200  # still signed in
    done = journey.app.post("/oauth2/sign_out", form_fields(confirm.text), HTML)
    assert done.status == 303  # on to NHSmail's end_session_endpoint (RP-initiated logout)
    assert journey.open("/").status == 303
    at_provider = journey.provider.get(done.location)
    assert at_provider.status_code == 302
    assert at_provider.headers["location"] == f"{APP_ORIGIN}/oauth2/signed_out"
    back = journey.app.get("/oauth2/signed_out", HTML)
    assert back.status == 200
    assert "You have signed out of CQRS" in back.text


# -- parallel tabs, state reuse, expiry -----------------------------------------------------


def test_parallel_tabs_can_sign_in_at_once(journey: Journey) -> None:
    first_tab = journey.start("/first")
    second_tab = journey.start("/second")
    second = journey.provider_login(second_tab, GP_USER, PASSWORD)
    first = journey.provider_login(first_tab, GP_USER, PASSWORD)
    assert journey.callback(second.headers["location"]).location == "/second"
    assert journey.callback(first.headers["location"]).location == "/first"
    assert journey.open("/").json()["user"] == GP_USER


def test_state_is_single_use_even_with_a_copied_attempt_cookie(journey: Journey) -> None:
    authorize = journey.start()
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    name = f"cqrs_sso-attempt-{state}"
    client = journey.app
    if client.driver == "wsgi":
        value = next(c.value for c in client.test_app.cookiejar if c.name == name)  # type: ignore[attr-defined]
    else:
        value = client.client.cookies[name]  # type: ignore[attr-defined]
    answer = journey.provider_login(authorize, GP_USER, PASSWORD)
    assert journey.callback(answer.headers["location"]).status == 303
    journey.app.clear_cookies()
    journey.app.set_cookie(name, value)  # an attacker replays the whole request
    replay = journey.callback(answer.headers["location"])
    assert replay.status == 400
    assert "expired or has already been used" in replay.text
    assert not session_cookies(journey.app)


def test_callback_without_attempt_cookie_is_refused(
    journey: Journey, make_journey: Callable[..., Journey]
) -> None:
    answer = journey.provider_login(journey.start(), GP_USER, PASSWORD)
    other_browser = make_journey()
    reply = other_browser.callback(answer.headers["location"])
    assert reply.status == 400


def test_expired_attempt_is_refused(journey: Journey, clock: FakeClock) -> None:
    answer = journey.provider_login(journey.start(), GP_USER, PASSWORD)
    clock.advance(601)
    reply = journey.callback(answer.headers["location"])
    assert reply.status == 400
    assert not session_cookies(journey.app)


def test_session_idle_timeout_sends_user_back_to_sign_in(journey: Journey, clock: FakeClock) -> None:
    journey.sign_in(GP_USER)
    assert journey.open("/").status == 200
    clock.advance(3601)
    assert journey.open("/").status == 303


# -- pass-through rules --------------------------------------------------------------------


def test_public_paths_pass_through_without_a_session(app_client: AppClient) -> None:
    reply = app_client.get("/static/app.css", HTML)
    assert reply.status == 200
    assert reply.json()["user"] is None


@pytest.mark.parametrize(
    "header",
    ["X-Forwarded-User", "X-Forwarded-Email", "Remote-User", "X-CQRS-Account", "X-Auth-Request-User"],
)
def test_client_sent_identity_headers_never_reach_the_app(journey: Journey, header: str) -> None:
    spoof = {**HTML, header: "attacker@nhs.net"}
    public = journey.app.get("/static/x", spoof).json()
    assert public["identity_headers"] == {}
    journey.sign_in(GP_USER)
    seen = journey.app.get("/", spoof).json()
    assert seen["identity_headers"] == {}
    assert seen["user"] == GP_USER


def test_unknown_endpoint_under_prefix_is_404_page(app_client: AppClient) -> None:
    reply = app_client.get("/oauth2/nope", HTML)
    assert reply.status == 404
    assert "Page not found" in reply.text


def test_stylesheet_is_served_by_the_middleware(app_client: AppClient) -> None:
    reply = app_client.get("/oauth2/static/cqrs.css")
    assert reply.status == 200
    assert reply.header(
        "content-type",
    ).startswith("text/css")  # type: ignore[union-attr]
    assert b"--nhs-blue" in reply.body


def test_path_of_helper_keeps_query() -> None:
    assert path_of("http://localhost/a?b=1") == "/a?b=1"
