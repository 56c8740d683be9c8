"""How a sign-in that gives no session ends, through both drivers against the built-in
provider: a page that survives a reload (POST/redirect/GET), the no-account page's two
ways out, the cancel page, and a deployment NHSmail does not accept."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import CLIENT_ID, GP_USER, NEW_USER, PASSWORD
from ..helpers import APP_ORIGIN, HTML, Journey, form_fields, path_of, visible_text

RESULT = "/oauth2/sign_in_result"


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, object]]]:
    return [(r.levelno, json.loads(r.getMessage())) for r in caplog.records if r.name == "cqrs_sso.audit"]


@pytest.fixture(autouse=True)
def _audit_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cqrs_sso.audit")


# -- reload: POST/redirect/GET ----------------------------------------------------------------


def test_callback_ends_with_a_redirect_to_a_stable_page(journey: Journey) -> None:
    answer = journey.provider_login(journey.start(), NEW_USER, PASSWORD)
    ended = journey.app.get(path_of(answer.headers["location"]), HTML)
    assert ended.status == 303
    assert ended.location == RESULT
    assert ended.header("cache-control") == "no-store"


def test_no_account_page_can_be_reloaded(journey: Journey) -> None:
    first = journey.sign_in(NEW_USER)
    assert first.status == 403
    for _ in range(3):
        again = journey.app.get(RESULT, HTML)
        assert again.status == 403
        assert "no CQRS account is associated" in again.text
        assert NEW_USER in again.text
        assert "has expired" not in again.text


def test_result_page_opened_without_its_cookie_goes_to_the_sign_in_page(
    journey: Journey, make_journey: Callable[..., Journey]
) -> None:
    journey.sign_in(NEW_USER)
    colleague = make_journey()  # a bookmark or a link sent to someone else
    reply = colleague.app.get(RESULT, HTML)
    assert reply.status == 303
    assert reply.location == "/oauth2/sign_in"
    colleague.app.set_cookie("cqrs_sso_result", "v3.forged-or-from-another-deployment")
    assert colleague.app.get(RESULT, HTML).status == 303


def test_result_cookie_is_encrypted(journey: Journey) -> None:
    journey.sign_in(NEW_USER)
    client = journey.app
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    value = next(c.value for c in jar if c.name == "cqrs_sso_result")
    assert value and NEW_USER not in unquote(value) and "new.user" not in value


# -- the no-account page's two actions --------------------------------------------------------


def test_no_account_page_offers_a_prepared_help_desk_request(journey: Journey) -> None:
    page = journey.sign_in(NEW_USER)
    assert "Ask the CQRS help desk for access" in page.text
    link = re.search(r'href="(mailto:[^"]+)"[^>]*>Ask the CQRS help desk', page.text)
    assert link is not None
    mailto = link.group(1).replace("&amp;", "&")
    parts = urlsplit(mailto)
    assert parts.path == "support@cqrs.co.uk"
    fields = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert fields["subject"] == f"CQRS access request: {NEW_USER}"
    body = fields["body"]
    assert f"NHSmail address: {NEW_USER}" in body
    assert "Organisation: Riverside Practice (Y00002)" in body  # the companyName claim
    assert re.search(r"Time of sign in: \d{1,2} \w+ \d{4}, \d\d:\d\d UTC", body)
    assert "\r\n" in body  # RFC 6068 §5: line breaks as CRLF
    assert " " not in mailto and "\n" not in mailto  # every part percent-encoded


def test_different_account_asks_nhsmail_to_pick_an_account(
    journey: Journey, provider: NHSmailLikeProvider
) -> None:
    """On a shared PC the next person is not signed in silently as the last one: the new
    attempt carries prompt=select_account, and NHSmail asks again."""
    provider.single_sign_on = True  # NHSmail remembers NEW_USER in this browser
    page = journey.sign_in(NEW_USER)
    assert "Sign in with a different NHSmail account" in page.text
    fields = form_fields(page.text)
    assert fields["account"] == "another"
    start = journey.app.post("/oauth2/start", fields, HTML)
    assert start.status == 303
    assert parse_qs(urlsplit(start.location).query)["prompt"] == ["select_account"]
    asked = journey.provider.get(start.location)
    assert asked.status_code == 200 and 'name="passwd"' in asked.text  # not signed in silently
    answer = journey.provider_login(start.location, GP_USER, PASSWORD)
    assert journey.callback(answer.headers["location"]).location == "/messages"
    assert journey.open("/").json()["user"] == GP_USER


def test_without_different_account_nhsmail_signs_the_same_person_in_silently(
    journey: Journey, provider: NHSmailLikeProvider
) -> None:
    """The trap the button exists for: pressing plain Sign In again lands the same person."""
    provider.single_sign_on = True
    journey.sign_in(NEW_USER)
    again = journey.provider.get(journey.start())
    assert again.status_code in (302, 303)  # straight back, no password asked


def test_shared_devices_asks_for_the_password_on_every_sign_in(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider
) -> None:
    provider.single_sign_on = True
    provider.sends_auth_time = True  # the proof of a password typed now (docs/nhsmail.md)
    journey = make_journey(shared_devices=True)
    assert journey.sign_in(GP_USER).status == 303
    journey.app.clear_cookies()  # the session ended; NHSmail still remembers the person
    authorize = journey.start()
    assert parse_qs(urlsplit(authorize).query)["prompt"] == ["login"]
    assert 'name="passwd"' in journey.provider.get(authorize).text


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_at_nhsmail_shows_you_cancelled_signing_in(journey: Journey) -> None:
    answer = journey.provider_login(journey.start("/messages"), "", "", action="cancel")
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["error_subcode"] == ["cancel"]  # as Entra
    page = journey.callback(answer.headers["location"])
    assert page.status == 200
    assert "You cancelled signing in" in page.text
    assert "check your email address and password" not in page.text
    assert 'href="/oauth2/sign_in?rd=%2Fmessages"' in page.text
    assert "Sign In again" in visible_text(page.text)


def test_other_access_denied_answers_keep_the_failure_page(journey: Journey) -> None:
    state = parse_qs(urlsplit(journey.start()).query)["state"][0]
    page = journey.callback(f"{APP_ORIGIN}/oauth2/callback?state={state}&error=access_denied")
    assert page.status == 401
    assert "Sign in to NHSmail failed" in page.text


def test_an_error_answer_without_an_open_attempt_is_not_believed(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    """Anybody can make a link with error=invalid_client: it must not log a misconfigured
    deployment at ERROR, nor show a page meant for a real answer."""
    reply = journey.app.get("/oauth2/callback?state=made-up&error=invalid_client", HTML)
    assert reply.status == 400
    assert all(line["event"] != "provider_misconfigured" for _, line in audit_lines(caplog))
    assert all(level < logging.ERROR for level, _ in audit_lines(caplog))


# -- a deployment NHSmail does not accept -------------------------------------------------------


@pytest.fixture
def expired_secret(provider: NHSmailLikeProvider) -> Iterator[None]:
    original = provider.clients[CLIENT_ID]
    provider.clients[CLIENT_ID] = replace(original, secret_expired=True)
    yield
    provider.clients[CLIENT_ID] = original


@pytest.mark.parametrize(
    "setting,aadsts",
    [
        pytest.param({"client_secret": "not-the-secret"}, 7000215, id="wrong-secret"),
        pytest.param({"client_id": "no-such-app"}, 700016, id="unknown-client-id"),
    ],
)
def test_a_wrong_credential_is_an_error_for_the_deployer_not_an_outage(
    make_journey: Callable[..., Journey],
    caplog: pytest.LogCaptureFixture,
    setting: dict[str, str],
    aadsts: int,
    provider: NHSmailLikeProvider,
) -> None:
    if "client_id" in setting:
        # The authorize endpoint would refuse an unknown client outright; register it for
        # the redirect, so that the token endpoint is what refuses it.
        provider.clients["no-such-app"] = replace(provider.clients[CLIENT_ID], client_id="no-such-app")
    journey = make_journey(**setting)
    answer = journey.provider_login(journey.start(), GP_USER, PASSWORD)
    if "client_id" in setting:
        del provider.clients["no-such-app"]
    page = journey.callback(answer.headers["location"])
    assert page.status == 500
    assert "Sign in to CQRS is not set up correctly" in page.text
    assert "try again in a few minutes" not in page.text
    assert "support@cqrs.co.uk" in page.text
    assert "Traceback" not in page.text
    level, line = audit_lines(caplog)[-1]
    assert level == logging.ERROR and line["level"] == "error"
    assert line["event"] == "provider_misconfigured"
    assert line["aadsts"] == aadsts
    assert line["error"] in ("invalid_client", "unauthorized_client")
    assert f"AADSTS{aadsts}" in str(line["description"])


def test_an_expired_secret_is_named_as_such(
    journey: Journey, expired_secret: None, caplog: pytest.LogCaptureFixture
) -> None:
    page = journey.sign_in(GP_USER)
    assert page.status == 500
    _, line = audit_lines(caplog)[-1]
    assert line["aadsts"] == 7000222
    assert "expired" in str(line["description"])


def test_a_provider_outage_stays_503_and_is_logged_as_a_warning(
    journey: Journey, provider: NHSmailLikeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.faults.token_status = 503
    page = journey.sign_in(GP_USER)
    assert page.status == 503
    assert "try again in a few minutes" in page.text
    assert page.header("retry-after") == "30"
    level, line = audit_lines(caplog)[-1]
    assert line["event"] == "provider_unavailable" and level == logging.WARNING


def test_the_apps_own_sign_out_button_signs_out_in_one_click(journey: Journey) -> None:
    """A form with no fields in the app's page, posted by a browser (which names our origin):
    both drivers read the empty body alike and sign the person out."""
    journey.sign_in(GP_USER)
    headers = {**HTML, "Origin": APP_ORIGIN, "Content-Type": "application/x-www-form-urlencoded"}
    reply = journey.app.post("/oauth2/sign_out", {}, headers)
    assert reply.status == 303
    assert journey.open("/").status == 303
