"""The core's decisions about how a sign-in ends and how a person leaves, with no network:
what a provider's error answer means, the result page's cookie, the no-account page's
help-desk request, one-click sign-out, and the wording of the notices."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cqrs_sso_middleware import Runtime
from cqrs_sso_middleware.core.oidc.provider_errors import answer_from_query, read_answer
from cqrs_sso_middleware.core.profiles.entra import ENTRA_ANSWERS
from cqrs_sso_middleware.core.protocol import HttpReply, PassThrough, Respond
from cqrs_sso_middleware.core.routes.sign_in import duration
from cqrs_sso_middleware.core.routes.sign_in_result import (
    RESULT_LIFETIME_SECONDS,
    SignInResult,
    access_request_mailto,
)
from cqrs_sso_middleware.runtime import phone_link

from .test_flow import BASE, Browser, Clock, ScriptedProvider

ORIGIN = {"origin": BASE}


def location(reply: PassThrough | Respond) -> str:
    assert isinstance(reply, Respond)
    return dict(reply.headers).get("Location", "")


# -- what an error answer means -------------------------------------------------------------------


@pytest.mark.parametrize(
    "query,meaning",
    [
        ({"error": "access_denied", "error_subcode": "cancel"}, "cancelled"),
        ({"error": "access_denied", "error_description": "AADSTS50105: not assigned"}, "refused"),
        ({"error": "access_denied"}, "refused"),
        ({"error": "invalid_client"}, "misconfigured"),
        ({"error": "unauthorized_client", "error_description": "AADSTS700016: not found"}, "misconfigured"),
        (
            {"error": "invalid_request", "error_description": "AADSTS50011: redirect URI …"},
            "misconfigured",
        ),
        (
            {"error": "invalid_request", "error_description": "AADSTS90094: consent"},
            "misconfigured",
        ),
        ({"error": "consent_required", "error_description": "AADSTS65001: no consent"}, "misconfigured"),
        ({"error": "invalid_request", "error_description": "AADSTS90072: not in tenant"}, "misconfigured"),
        ({"error": "invalid_request", "error_description": "AADSTS50012: bad assertion"}, "misconfigured"),
        ({"error": "invalid_request", "error_description": "a parameter is missing"}, "refused"),
        ({"error": "server_error"}, "outage"),
        ({"error": "temporarily_unavailable"}, "outage"),
        ({"error": "login_required"}, "refused"),
    ],
)
def test_an_error_answer_is_read_by_what_it_means(query: dict[str, str], meaning: str) -> None:
    assert answer_from_query({k: [v] for k, v in query.items()}, ENTRA_ANSWERS).meaning == meaning


def test_a_cancel_subcode_and_aadsts_codes_mean_nothing_special_without_the_entra_profile() -> None:
    """The AADSTS table and Entra's cancel pair belong to the Entra profile: a generic
    provider's access_denied is a refusal, and only RFC 6749's own codes say misconfigured."""
    cancel = answer_from_query({"error": ["access_denied"], "error_subcode": ["cancel"]})
    assert cancel.meaning == "refused"
    assert read_answer("invalid_request", "AADSTS7000215: x", codes=[7000215]).meaning == "refused"
    assert read_answer("invalid_client").meaning == "misconfigured"


@pytest.mark.parametrize("code", [7000215, 7000222, 700016, 700027, 50011, 50012, 65001, 90072, 90094])
def test_entra_token_endpoint_codes_for_a_misconfigured_deployment(code: int) -> None:
    answer = read_answer("invalid_request", f"AADSTS{code}: words", codes=[code], rules=ENTRA_ANSWERS)
    assert answer.meaning == "misconfigured" and answer.aadsts == code


def test_untrusted_error_values_are_never_taken_as_they_are() -> None:
    answer = read_answer("x\n{forged}", "d" * 1000, subcode="cancel\r\n", codes=[True])
    assert answer.error == "invalid_error_code"
    assert len(answer.description) == 300
    assert answer.subcode == "" and answer.aadsts is None


def test_a_token_endpoint_answer_of_invalid_client_is_not_an_outage(
    browser: Browser, provider: ScriptedProvider
) -> None:
    body = {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}
    provider.token = lambda call: HttpReply(401, json.dumps({**body, "error_codes": [7000215]}).encode())
    page = browser.sign_in()
    assert page.status == 500
    assert b"not set up correctly" in page.body and b"few minutes" not in page.body


def test_a_token_endpoint_5xx_is_an_outage(browser: Browser, provider: ScriptedProvider) -> None:
    provider.token = lambda call: HttpReply(503, b'{"error": "temporarily_unavailable"}')
    assert browser.sign_in().status == 503


# -- the result page ------------------------------------------------------------------------------


def no_account(make_flow: Callable[..., Runtime], provider: ScriptedProvider) -> Browser:
    from cqrs_sso_middleware.core.protocol import LookupReturned

    provider.lookup = lambda identity: LookupReturned(None)
    return Browser(make_flow(), provider)


def test_the_result_page_lasts_as_long_as_its_cookie(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = no_account(make_flow, provider)
    assert browser.sign_in().status == 403
    clock.offset += RESULT_LIFETIME_SECONDS - 5
    assert browser.request("GET", "/oauth2/sign_in_result").status == 403  # type: ignore[union-attr]
    clock.offset += 10
    assert location(browser.request("GET", "/oauth2/sign_in_result")) == "/oauth2/sign_in"


def test_a_tampered_result_cookie_shows_nothing(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = no_account(make_flow, provider)
    browser.sign_in()
    name = "__Host-cqrs_sso_result"
    value = browser.cookies[name]
    browser.cookies[name] = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    assert location(browser.request("GET", "/oauth2/sign_in_result")) == "/oauth2/sign_in"


def test_a_result_cookie_from_another_deployment_is_not_shown(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    keys = ("k" * 40,)
    first = no_account(make_flow, provider)
    first.runtime = make_flow(secret_keys=keys)
    first.sign_in()
    other = Browser(make_flow(secret_keys=keys, client_id="another-app"), provider)
    other.cookies = dict(first.cookies)
    assert location(other.request("GET", "/oauth2/sign_in_result")) == "/oauth2/sign_in"


def test_a_new_sign_in_clears_the_last_result(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = no_account(make_flow, provider)
    browser.sign_in()
    assert "__Host-cqrs_sso_result" in browser.cookies
    browser.start()
    assert "__Host-cqrs_sso_result" not in browser.cookies


# -- the help-desk request ------------------------------------------------------------------------


def test_help_desk_request_is_an_rfc_6068_mailto() -> None:
    result = SignInResult("no_account", 1_796_212_800, "/", "nia.evans+cqrs@nhs.net", "St Mary's & Co")
    link = access_request_mailto("support@cqrs.co.uk", result, "2 December 2026, 12:00 UTC")
    parts = urlsplit(link)
    assert parts.scheme == "mailto" and parts.path == "support@cqrs.co.uk"
    assert "+" not in parts.query.replace("%2B", "")  # '+' is a literal in mailto, so encoded
    fields = {k: v[0] for k, v in parse_qs(parts.query.replace("+", "%2B")).items()}
    assert fields["subject"] == "CQRS access request: nia.evans+cqrs@nhs.net"
    assert "Organisation: St Mary's & Co\r\n" in fields["body"]
    assert "Time of sign in: 2 December 2026, 12:00 UTC" in fields["body"]
    assert unquote(parts.query).count("&") == 2  # the organisation's "&" is encoded, not a separator


def test_help_desk_request_leaves_out_an_unknown_organisation() -> None:
    link = access_request_mailto("h@x.nhs.uk", SignInResult("no_account", 0, "/", "a@nhs.net"), "t")
    assert "Organisation" not in unquote(link)


# -- leaving: one-click sign-out, and what the signed-out page says ---------------------------------


def test_the_apps_own_sign_out_button_signs_out_in_one_click(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(), provider)
    browser.sign_in()
    provider.form = {}  # a plain form in the app's page: no token
    reply = browser.request("POST", "/oauth2/sign_out", {"origin": BASE})
    assert isinstance(reply, Respond) and reply.status == 303
    assert not isinstance(browser.request("GET", "/messages"), PassThrough)


def test_same_origin_fetch_metadata_is_enough_without_origin(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(), provider)
    browser.sign_in()
    provider.form = {}
    reply = browser.request("POST", "/oauth2/sign_out", {"sec-fetch-site": "same-origin"})
    assert isinstance(reply, Respond) and reply.status == 303


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-origin-no-fetch-metadata"),
        pytest.param({"origin": "https://evil.example"}, id="another-origin"),
        pytest.param({"origin": "https://sub.cqrs.example.nhs.uk"}, id="a-sibling-sub-domain"),
        pytest.param({"origin": "null"}, id="opaque-origin"),
        pytest.param({"sec-fetch-site": "same-site"}, id="same-site-is-not-same-origin"),
        pytest.param({"origin": BASE, "sec-fetch-site": "cross-site"}, id="contradicting-headers"),
    ],
)
def test_sign_out_without_a_token_from_anywhere_else_is_refused(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, headers: dict[str, str]
) -> None:
    browser = Browser(make_flow(), provider)
    browser.sign_in()
    provider.form = {}
    reply = browser.request("POST", "/oauth2/sign_out", headers)
    assert isinstance(reply, Respond) and reply.status == 403
    assert isinstance(browser.request("GET", "/messages"), PassThrough)


def test_signed_out_page_says_nhsmail_only_after_our_provider_sign_out(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    browser = Browser(make_flow(), provider)
    direct = browser.request("GET", "/oauth2/signed_out")
    assert isinstance(direct, Respond) and b"also signed out of your NHSmail" not in direct.body
    browser.sign_in()
    provider.form = {}
    assert location(browser.request("POST", "/oauth2/sign_out", ORIGIN)).startswith("https://login.")
    back = browser.request("GET", "/oauth2/signed_out")
    assert isinstance(back, Respond) and b"also signed out of your NHSmail" in back.body


# -- wording ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seconds,words",
    [
        (60, "1 minute"),
        (120, "2 minutes"),
        (900, "15 minutes"),
        (3600, "1 hour"),
        (5400, "90 minutes"),
        (7200, "2 hours"),
        (43200, "12 hours"),
    ],
)
def test_durations_are_said_with_the_right_plural(seconds: int, words: str) -> None:
    assert duration(seconds) == words


def test_the_max_age_notice_is_reachable_with_the_cookie_store(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    """The cookie outlives the session a little, so the person is told why they must sign
    in again instead of the browser dropping the cookie silently."""
    browser = Browser(make_flow(session_idle_seconds=43200, session_max_seconds=43200), provider)
    reply = browser.sign_in()
    cookie = next(v for k, v in reply.headers if k == "Set-Cookie" and v.startswith("__Host-cqrs_sso="))
    max_age = int(cookie.split("Max-Age=")[1].split(";")[0])
    assert max_age > 43200
    clock.offset += 43200 + 60  # just past the longest a session can last
    redirect = browser.request("GET", "/messages")
    page = browser.request("GET", location(redirect))
    assert isinstance(page, Respond)
    assert b"you had been signed in for 12 hours, the longest a CQRS session can last" in page.body


def test_the_help_desk_phone_is_a_tel_link_and_its_words_stay() -> None:
    link = phone_link("0800 4402777 (8am-6pm Mon-Fri exc Bank Holidays)")
    assert link["help_phone_tel"] == "+448004402777"
    assert (
        link["help_phone_number"] + link["help_phone_rest"]
        == "0800 4402777 (8am-6pm Mon-Fri exc Bank Holidays)"
    )
    assert phone_link("ask at reception") == {"help_phone_tel": ""}
