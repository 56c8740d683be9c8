"""htmx requests whose session ended, through both drivers: a 401 with ``HX-Redirect`` to
the sign-in page, back to the page the person is on (``HX-Current-URL``), so that htmx
navigates instead of swapping nothing (or the sign-in form) into a ``<div>``."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import GP_USER, FakeClock
from ..helpers import APP_ORIGIN, Journey, Reply

# What htmx sends with an hx-get from the page /messages?tab=inbox.
HTMX = {
    "HX-Request": "true",
    "HX-Current-URL": f"{APP_ORIGIN}/messages?tab=inbox",
    "HX-Target": "inbox",
    "Accept": "text/html, */*",
    "Sec-Fetch-Mode": "cors",
}


def sign_in_target(reply: Reply) -> tuple[str, dict[str, list[str]]]:
    location = reply.header("HX-Redirect")
    assert location is not None, f"no HX-Redirect in {reply.status} reply"
    return urlsplit(location).path, parse_qs(urlsplit(location).query)


def test_an_htmx_request_without_a_session_navigates_to_sign_in_and_back_to_its_page(
    journey: Journey,
) -> None:
    reply = journey.app.get("/messages/inbox-fragment", HTMX)
    assert reply.status == 401
    assert reply.json()["error"] == "unauthenticated"
    path, query = sign_in_target(reply)
    assert path == "/oauth2/sign_in"
    assert query["rd"] == ["/messages?tab=inbox"]  # the page, not the fragment's URL
    assert reply.json()["sign_in_url"] == reply.header("HX-Redirect")


def test_a_session_that_timed_out_sends_htmx_to_sign_in_with_the_notice(
    make_journey: Callable[..., Journey], clock: FakeClock
) -> None:
    journey = make_journey(session_idle_seconds=600)
    journey.sign_in(GP_USER)
    assert journey.app.get("/messages/inbox-fragment", HTMX).status == 200
    clock.advance(601)
    reply = journey.app.get("/messages/inbox-fragment", HTMX)
    path, query = sign_in_target(reply)
    assert reply.status == 401 and query["rd"] == ["/messages?tab=inbox"]
    page = journey.app.get(f"{path}?rd=%2Fmessages", {"Accept": "text/html"})
    assert "because you had not used CQRS for 10 minutes" in page.text


def test_a_boosted_link_goes_back_to_the_page_it_asked_for(journey: Journey) -> None:
    reply = journey.app.get("/approvals/2026?x=1", {**HTMX, "HX-Boosted": "true"})
    _, query = sign_in_target(reply)
    assert query["rd"] == ["/approvals/2026?x=1"]


@pytest.mark.parametrize(
    "current",
    [
        "https://evil.example/messages",
        f"{APP_ORIGIN}.evil.example/messages",
        f"{APP_ORIGIN}//evil.example/",
        f"{APP_ORIGIN}/oauth2/sign_out",
        "javascript:alert(1)",
        "",
    ],
    ids=["other-origin", "longer-host", "scheme-relative", "own-endpoint", "javascript", "missing"],
)
def test_a_current_url_that_is_not_a_safe_page_here_goes_to_the_default_page(
    journey: Journey, current: str
) -> None:
    reply = journey.app.get("/messages/inbox-fragment", {**HTMX, "HX-Current-URL": current})
    _, query = sign_in_target(reply)
    assert query["rd"] == ["/"]


def test_other_scripts_get_the_plain_401(journey: Journey) -> None:
    reply = journey.app.get("/messages", {"Accept": "application/json", "X-Requested-With": "fetch"})
    assert reply.status == 401 and reply.header("HX-Redirect") is None


def test_an_htmx_request_needing_a_fresher_sign_in_navigates_to_the_step_up_page(
    make_journey: Callable[..., Journey], provider: NHSmailLikeProvider, clock: FakeClock
) -> None:
    journey = make_journey(access_rules=({"paths": ["/declarations/**"], "max_auth_age_seconds": 900},))
    provider.sends_auth_time = True
    journey.sign_in(GP_USER)
    clock.advance(901)
    current = {**HTMX, "HX-Current-URL": f"{APP_ORIGIN}/declarations/2026"}
    reply = journey.app.get("/declarations/2026/table", current)
    assert reply.status == 401 and reply.json()["error"] == "step_up_required"
    path, query = sign_in_target(reply)
    assert path == "/oauth2/sign_in"
    assert query["rd"] == ["/declarations/2026"] and query["max_auth_age"] == ["900"]


def test_behind_a_proxy_in_front_the_sign_in_page_answers_htmx_the_same(journey: Journey) -> None:
    """nginx's ``error_page 401 = /oauth2/sign_in`` keeps the request's own headers."""
    headers = {**HTMX, "X-Original-URI": "/messages/inbox-fragment"}
    reply = journey.app.get("/oauth2/sign_in", headers)
    assert reply.status == 401
    _, query = sign_in_target(reply)
    assert query["rd"] == ["/messages?tab=inbox"]
