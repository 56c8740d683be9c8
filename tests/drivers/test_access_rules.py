"""Access rules through both drivers against the built-in provider: the user guide's steps
with rules in place, roles from NHSmail and from the CQRS account, the 403 page, and a
step-up that NHSmail answers by asking for the password again."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import APPROVER, GP_USER, NEW_USER, PASSWORD, FakeClock
from ..helpers import HTML, Journey, form_fields, visible_text

RULES = [
    {"paths": ["/approvals/**"], "roles": ["CQRS.Approver"]},
    {"paths": ["/admin/**"], "roles": ["CQRS.Admin"]},
    {"paths": ["/declarations/**"], "max_auth_age_seconds": 900},
]


@pytest.fixture(params=["cookie", "memory"])
def session_store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ruled(make_journey: Callable[..., Journey]) -> Journey:
    return make_journey(access_rules=RULES, role_labels={"CQRS.Admin": "CQRS administrator"})


def test_the_user_guide_steps_still_hold_with_rules(ruled: Journey) -> None:
    assert ruled.open("/messages").status == 303  # step 1
    assert ruled.sign_in(GP_USER).status == 303  # steps 2 and 3
    assert ruled.open("/messages").json()["user"] == GP_USER
    ruled.app.clear_cookies()
    assert ruled.sign_in(NEW_USER).status == 403  # step 5


def test_an_app_role_from_nhsmail_opens_its_paths(ruled: Journey) -> None:
    ruled.sign_in(APPROVER)
    page = ruled.open("/approvals/2026")
    assert page.status == 200
    assert "CQRS.Approver" in page.json()["roles"]  # user.roles, for the app itself


def test_a_person_without_the_role_sees_the_403_page(ruled: Journey) -> None:
    ruled.sign_in(APPROVER)
    page = ruled.open("/admin/users")
    assert page.status == 403
    text = visible_text(page.text)
    assert "You do not have access to this part of CQRS" in text
    assert "It needs the CQRS administrator role." in text
    assert "Ask the CQRS help desk for access" in text
    assert "identity_headers" not in page.text  # the app never answered


def test_step_up_asks_nhsmail_for_the_password_again(
    ruled: Journey, provider: NHSmailLikeProvider, clock: FakeClock
) -> None:
    provider.single_sign_on = True  # NHSmail would otherwise sign the person in silently
    ruled.sign_in(GP_USER)  # no auth_time: when this sign-in happened is not known
    provider.sends_auth_time = True  # the optional claim a step-up needs (docs/nhsmail.md)
    asked = ruled.open("/declarations/2026")
    assert asked.status == 303 and "max_auth_age=900" in asked.location
    page = ruled.app.get(asked.location, HTML)
    assert page.status == 401 and "Sign in again to continue" in page.text
    start = ruled.app.post("/oauth2/start", form_fields(page.text), HTML)
    query = parse_qs(urlsplit(start.location).query)
    assert query["prompt"] == ["login"] and query["max_age"] == ["900"]
    login = ruled.provider.get(start.location)
    assert 'name="passwd"' in login.text  # asked, although NHSmail has a session
    answer = ruled.provider_login(start.location, GP_USER, PASSWORD)
    back = ruled.callback(answer.headers["location"])
    assert back.location == "/declarations/2026"
    assert ruled.open("/declarations/2026").status == 200
    clock.advance(901)
    assert ruled.open("/declarations/2026").status == 303  # too old again


@pytest.mark.parametrize("sends_auth_time", [False, True], ids=["entra-default", "optional-claim"])
def test_a_step_up_with_prompt_login_taken_out_of_the_url_is_refused(
    ruled: Journey, provider: NHSmailLikeProvider, clock: FakeClock, sends_auth_time: bool
) -> None:
    """The browser controls the NHSmail URL: without prompt=login and max_age, NHSmail signs
    the person in from its own 20-minute-old session, without a password. Only the token's
    auth_time can prove a fresh sign-in, so the step-up is refused either way."""
    provider.single_sign_on = True
    provider.sends_auth_time = sends_auth_time
    ruled.sign_in(GP_USER)
    clock.advance(1200)
    page = ruled.app.get(ruled.open("/declarations/2026").location, HTML)
    start = ruled.app.post("/oauth2/start", form_fields(page.text), HTML)
    parts = urlsplit(start.location)
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("prompt", "max_age", "claims")]
    edited = urlunsplit(parts._replace(query=urlencode(kept)))
    silent = ruled.provider.get(edited)
    assert silent.status_code == 302  # signed in at NHSmail without being asked for a password
    refused = ruled.callback(silent.headers["location"])
    if sends_auth_time:
        assert refused.status == 401 and "Please type your NHSmail password again" in refused.text
    else:
        assert refused.status == 403 and "CQRS could not confirm when you signed in" in refused.text
    assert ruled.open("/declarations/2026").status == 303  # still asked to step up


def test_step_up_uses_auth_time_when_the_provider_sends_it(
    ruled: Journey, provider: NHSmailLikeProvider
) -> None:
    provider.sends_auth_time = True  # the optional claim docs/authorisation.md asks for
    ruled.sign_in(GP_USER)
    assert ruled.open("/declarations/2026").status == 200  # signed in a moment ago


@pytest.mark.parametrize("spelling", ["X-Forwarded-Oid", "x_forwarded_oid", "X-FORWARDED-ROLES"])
def test_configured_claim_headers_sent_by_a_client_never_reach_the_app(
    make_journey: Callable[..., Journey], spelling: str
) -> None:
    journey = make_journey(claim_headers={"X-Forwarded-Oid": "oid", "X-Forwarded-Roles": "roles"})
    journey.sign_in(APPROVER)
    seen = journey.app.get("/messages", {**HTML, spelling: "attacker"}).json()
    assert "attacker" not in str(seen["identity_headers"])
