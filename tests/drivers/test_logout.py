"""Logout end to end through both drivers, against the built-in provider with its single
sign-on session switched on (as Entra's is)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider
from cqrs_sso_middleware.provider.logout import logout_token

from ..conftest import CLIENT_ID, GP_USER
from ..helpers import APP_ORIGIN, HTML, AppClient, Journey, path_of

PAYLOADS = Path(__file__).parents[3] / "shared" / "testdata" / "openredirects.txt"
if not PAYLOADS.exists():
    PAYLOADS = Path(__file__).parents[1] / "data" / "openredirects.txt"


@pytest.fixture
def entra_like(provider: NHSmailLikeProvider) -> Iterator[NHSmailLikeProvider]:
    """The provider with single sign-on on and our front-channel logout URL registered."""
    original = provider.clients[CLIENT_ID]
    provider.clients[CLIENT_ID] = dataclasses.replace(
        original, frontchannel_logout_uri=f"{APP_ORIGIN}/oauth2/frontchannel_logout"
    )
    provider.single_sign_on = True
    yield provider
    provider.clients[CLIENT_ID] = original


def session_cookie(client: AppClient) -> str:
    jar = client.test_app.cookiejar if client.driver == "wsgi" else client.client.cookies.jar  # type: ignore[attr-defined]
    return next(str(c.value) for c in jar if c.name == "cqrs_sso")


def click_sign_out(journey: Journey) -> str:
    """Sign out of CQRS; returns where the browser is sent next (the provider)."""
    page = journey.app.get("/oauth2/sign_out", HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    reply = journey.app.post("/oauth2/sign_out", {"csrf_token": token.group(1)}, HTML)
    assert reply.status == 303, reply.text[:300]
    return reply.location


def provider_asks_for_a_password(journey: Journey) -> bool:
    authorize = journey.start()
    answer = journey.provider.get(authorize)
    if answer.status_code == 302:
        return False  # let straight in: single sign-on at the provider
    assert answer.status_code == 200
    return "Sign in with your NHSmail account" in answer.text


@pytest.mark.parametrize("session_store", ["cookie", "redis"])
def test_shared_pc_after_sign_out_the_next_person_must_type_a_password(
    entra_like: NHSmailLikeProvider, journey: Journey
) -> None:
    assert journey.sign_in(GP_USER).status == 303
    provider_logout = click_sign_out(journey)
    assert provider_logout.startswith(entra_like.issuer.removesuffix("/v2.0") + "/oauth2/v2.0/logout?")
    signed_out = journey.provider.get(provider_logout)  # the browser at NHSmail: its session ends
    assert signed_out.status_code == 200  # the page with the front-channel iframes
    assert "You have signed out of your NHSmail account" in signed_out.text
    back = re.search(r'id="continue" href="([^"]+)"', signed_out.text)
    assert back and back.group(1) == f"{APP_ORIGIN}/oauth2/signed_out"
    assert "You have signed out of CQRS" in journey.app.get("/oauth2/signed_out", HTML).text
    assert provider_asks_for_a_password(journey)


def test_without_provider_sign_out_the_next_person_is_let_straight_in(
    entra_like: NHSmailLikeProvider, make_journey: Callable[..., Journey]
) -> None:
    """What NHSmail does when only our cookie ends — the reason for RP-initiated logout."""
    journey = make_journey(sign_out_at_provider=False)
    journey.sign_in(GP_USER)
    page = journey.app.get("/oauth2/sign_out", HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    assert journey.app.post("/oauth2/sign_out", {"csrf_token": token.group(1)}, HTML).status == 200
    assert not provider_asks_for_a_password(journey)


@pytest.mark.parametrize("with_iss", [False, True], ids=["entra-sid-only", "spec-iss-and-sid"])
@pytest.mark.parametrize("session_store", ["memory", "redis"])
def test_provider_front_channel_logout_ends_our_session_on_every_instance(
    entra_like: NHSmailLikeProvider,
    make_journey: Callable[..., Journey],
    make_instance: Callable[[], AppClient],
    with_iss: bool,
) -> None:
    entra_like.frontchannel_sends_iss = with_iss
    journey = make_journey(make_instance())
    assert journey.sign_in(GP_USER).status == 303
    cookie = session_cookie(journey.app)
    # Signing out at NHSmail itself (another app, or the NHSmail portal): its page loads our
    # front-channel URL in an iframe, which here lands on the *other* instance, cookie-less.
    logout = journey.provider.get(entra_like.issuer.removesuffix("/v2.0") + "/oauth2/v2.0/logout")
    frame = re.search(r'<iframe src="([^"]+)"', logout.text)
    assert frame, logout.text[:400]
    iframe_url = frame.group(1).replace("&amp;", "&")
    query = parse_qs(urlsplit(iframe_url).query)
    assert query.get("iss") == ([entra_like.issuer] if with_iss else None) and query["sid"]
    other_instance = make_instance()
    answer = other_instance.get(path_of(iframe_url), HTML)
    assert answer.status == 200
    assert f"frame-ancestors {urlsplit(entra_like.issuer).scheme}://{urlsplit(entra_like.issuer).netloc}" in (
        answer.header("content-security-policy") or ""
    )
    journey.app.set_cookie("cqrs_sso", cookie)
    assert journey.open("/messages").status == 303  # the copied cookie opens nothing


@pytest.mark.parametrize("session_store", ["cookie", "memory", "redis"])
def test_cross_site_link_to_front_channel_logout_signs_nobody_out(journey: Journey) -> None:
    """Logout CSRF: a top-level GET from another site carries our SameSite=Lax cookie. Bare,
    with a foreign iss, or with a sid of nobody's, it must leave the session alone."""
    assert journey.sign_in(GP_USER).status == 303
    for query in ("", "?iss=https://evil.example/v2.0&sid=x", "?sid=not-a-provider-session"):
        reply = journey.app.get(
            f"/oauth2/frontchannel_logout{query}", {**HTML, "Sec-Fetch-Site": "cross-site"}
        )
        assert reply.status == 200
        assert not [c for c in reply.all("set-cookie") if c.startswith("cqrs_sso=")]
        assert journey.open("/messages").status == 200


@pytest.mark.parametrize("session_store", ["memory", "redis"])
def test_back_channel_logout_ends_our_session_on_every_instance(
    entra_like: NHSmailLikeProvider,
    make_journey: Callable[..., Journey],
    make_instance: Callable[[], AppClient],
) -> None:
    journey = make_journey(make_instance())
    assert journey.sign_in(GP_USER).status == 303
    cookie = session_cookie(journey.app)
    (sso,) = entra_like.sso_sessions.values()
    token = logout_token(entra_like.signing_key, entra_like.issuer, CLIENT_ID, sid=sso.sid)
    other_instance = make_instance()
    assert other_instance.post("/oauth2/backchannel_logout", {"logout_token": token}).status == 200
    journey.app.set_cookie("cqrs_sso", cookie)
    assert journey.open("/messages").status == 303
    replayed = other_instance.post("/oauth2/backchannel_logout", {"logout_token": token})
    assert replayed.status == 400  # jti spent in the shared store


def test_signed_out_page_and_provider_logout_never_redirect_off_site(
    entra_like: NHSmailLikeProvider, app_client: AppClient, journey: Journey
) -> None:
    end_session = entra_like.issuer.removesuffix("/v2.0") + "/oauth2/v2.0/logout"
    payloads = [line for line in PAYLOADS.read_text(encoding="utf-8").splitlines() if line.strip()]
    for payload in payloads:
        encoded = quote(payload, safe="")
        ours = app_client.get(f"/oauth2/signed_out?post_logout_redirect_uri={encoded}&rd={encoded}", HTML)
        assert ours.status == 200 and ours.header("location") is None, payload
    for payload in payloads[:150]:
        theirs = journey.provider.get(
            end_session, params={"client_id": CLIENT_ID, "post_logout_redirect_uri": payload}
        )
        assert theirs.status_code == 200 and "location" not in theirs.headers, payload
