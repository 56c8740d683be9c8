"""Logout through the core: RP-initiated, front-channel, back-channel (the logout-token
forgery table), sign out everywhere, and the notice on the sign-in page."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc.jwk import RSAKey

from cqrs_sso_middleware import Runtime
from cqrs_sso_middleware.core.protocol import PassThrough, Respond
from cqrs_sso_middleware.provider.logout import BACKCHANNEL_LOGOUT_EVENT, logout_token

from .test_flow import BASE, CLIENT_ID, ISSUER, Browser, Clock, ScriptedProvider

SID = "provider-session-1"
ORIGIN = {"origin": BASE}


@pytest.fixture
def server_side(make_flow: Callable[..., Runtime], provider: ScriptedProvider) -> Browser:
    """A signed-in browser on a flow with the memory store; the ID token carries a sid."""
    provider.claims = {"sid": SID, "login_hint": "opaque-hint"}
    browser = Browser(make_flow(session_store="memory"), provider)
    assert browser.sign_in().status == 303
    return browser


def signed_in(browser: Browser) -> bool:
    return isinstance(browser.request("GET", "/messages"), PassThrough)


def sign_out_form(browser: Browser, **extra: str) -> dict[str, str]:
    page = browser.request("GET", "/oauth2/sign_out")
    assert isinstance(page, Respond) and page.status == 200
    token = page.body.decode().split('name="csrf_token" value="')[1].split('"')[0]
    return {"csrf_token": token, **extra}


def post(browser: Browser, path: str, form: dict[str, str], headers: dict[str, str] | None = None) -> Respond:
    browser.provider.form = form
    reply = browser.request("POST", path, headers)
    assert isinstance(reply, Respond)
    return reply


# -- RP-initiated logout ------------------------------------------------------------------------


def test_sign_out_ends_the_session_then_sends_the_browser_to_the_provider(server_side: Browser) -> None:
    copied = dict(server_side.cookies)
    reply = post(server_side, "/oauth2/sign_out", sign_out_form(server_side), ORIGIN)
    assert reply.status == 303
    location = dict(reply.headers)["Location"]
    assert location.startswith(
        f"https://login.microsoftonline.com/{ISSUER.split('/')[3]}/oauth2/v2.0/logout?"
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["post_logout_redirect_uri"] == f"{BASE}/oauth2/signed_out"
    assert query["logout_hint"] == "opaque-hint"
    assert query["id_token_hint"].count(".") == 2  # the ID token the server-side store kept
    server_side.cookies = copied
    assert not signed_in(server_side)  # the copied cookie opens nothing


def test_cookie_store_sends_no_id_token_hint(browser: Browser, provider: ScriptedProvider) -> None:
    browser.sign_in()
    reply = post(browser, "/oauth2/sign_out", sign_out_form(browser), ORIGIN)
    query = parse_qs(urlsplit(dict(reply.headers)["Location"]).query)
    assert "id_token_hint" not in query  # never kept in the cookie


def test_provider_sign_out_can_be_switched_off(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(sign_out_at_provider=False), provider)
    browser.sign_in()
    reply = post(browser, "/oauth2/sign_out", sign_out_form(browser), ORIGIN)
    assert reply.status == 200 and b"You have signed out of CQRS" in reply.body


def test_provider_without_end_session_endpoint_gets_the_signed_out_page(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    from cqrs_sso_middleware.core.protocol import HttpReply

    document = {k: v for k, v in provider.discovery().items() if k != "end_session_endpoint"}
    provider.metadata = lambda: HttpReply(200, json.dumps(document).encode())
    browser = Browser(make_flow(), provider)
    browser.sign_in()
    reply = post(browser, "/oauth2/sign_out", sign_out_form(browser), ORIGIN)
    assert reply.status == 200 and b"You have signed out of CQRS" in reply.body
    assert not signed_in(browser)


def test_signed_out_page_takes_no_parameters(server_side: Browser) -> None:
    reply = server_side.request(
        "GET", "/oauth2/signed_out?post_logout_redirect_uri=https://evil.example/&rd=//evil.example&state=x"
    )
    assert isinstance(reply, Respond) and reply.status == 200
    assert "Location" not in dict(reply.headers)
    assert b"evil.example" not in reply.body


def test_signed_out_page_changes_nothing(server_side: Browser) -> None:
    """A link to it (logout CSRF) must not end or clear anything."""
    reply = server_side.request("GET", "/oauth2/signed_out")
    assert isinstance(reply, Respond) and not [v for k, v in reply.headers if k == "Set-Cookie"]
    assert signed_in(server_side)


def test_sign_out_everywhere_ends_every_session_of_that_person(
    server_side: Browser, provider: ScriptedProvider
) -> None:
    other_pc = Browser(server_side.runtime, provider)
    assert other_pc.sign_in().status == 303
    page = server_side.request("GET", "/oauth2/sign_out")
    assert isinstance(page, Respond) and b"Sign out everywhere" in page.body
    post(server_side, "/oauth2/sign_out", sign_out_form(server_side, everywhere="1"), ORIGIN)
    assert not signed_in(other_pc)


def test_a_removed_account_ends_the_session_in_the_store(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    from cqrs_sso_middleware.core.protocol import LookupReturned

    browser = Browser(make_flow(session_store="memory", account_recheck_seconds=600), provider)
    browser.sign_in()
    copied = dict(browser.cookies)
    provider.lookup = lambda identity: LookupReturned(None)
    clock.offset += 601
    removed = browser.request("GET", "/messages")
    assert isinstance(removed, Respond) and dict(removed.headers)["Location"] == "/oauth2/sign_in_result"
    from cqrs_sso_middleware.core.identity import Account

    provider.lookup = lambda identity: LookupReturned(Account("A-1", identity.email))
    browser.cookies = copied  # the account is back, but that session stays ended
    assert not signed_in(browser)


# -- front-channel logout -----------------------------------------------------------------------


def cleared(reply: Respond) -> bool:
    return any(v.startswith("__Host-cqrs_sso=;") for k, v in reply.headers if k == "Set-Cookie")


def test_frontchannel_logout_ends_the_sessions_of_that_sid_and_may_be_framed_by_the_provider_only(
    server_side: Browser, provider: ScriptedProvider
) -> None:
    elsewhere = Browser(server_side.runtime, provider)  # the iframe carries no cookie of ours
    reply = elsewhere.request("GET", f"/oauth2/frontchannel_logout?iss={ISSUER}&sid={SID}")
    assert isinstance(reply, Respond) and reply.status == 200
    headers = dict(reply.headers)
    assert "frame-ancestors https://login.microsoftonline.com;" in headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in headers
    assert headers["Cache-Control"] == "no-store"
    assert not cleared(reply)  # no cookie came: none is touched
    assert not signed_in(server_side)


def test_entra_shaped_frontchannel_logout_with_sid_only_ends_the_session(
    server_side: Browser, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Entra sends ``?sid=`` without ``iss``: the configured provider is meant."""
    reply = Browser(server_side.runtime, provider).request("GET", f"/oauth2/frontchannel_logout?sid={SID}")
    assert isinstance(reply, Respond) and reply.status == 200
    assert not signed_in(server_side)
    assert '"event": "frontchannel_logout"' in caplog.text and '"with_iss": false' in caplog.text


@pytest.mark.parametrize("store", ["cookie", "memory"])
def test_frontchannel_logout_clears_the_cookie_only_when_its_session_has_that_sid(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, store: str
) -> None:
    flow = make_flow(session_store=store)
    provider.claims = {"sid": "another-provider-session"}
    someone_else = Browser(flow, provider)
    someone_else.sign_in()
    provider.claims = {"sid": SID}
    browser = Browser(flow, provider)
    browser.sign_in()
    other = browser.request("GET", "/oauth2/frontchannel_logout?sid=another-provider-session")
    assert isinstance(other, Respond) and not cleared(other)
    assert signed_in(browser)
    assert signed_in(someone_else) == (store == "cookie")  # a server-side store ended theirs
    own = browser.request("GET", f"/oauth2/frontchannel_logout?sid={SID}")
    assert isinstance(own, Respond) and cleared(own)
    assert not signed_in(browser)


@pytest.mark.parametrize(
    "query,reason",
    [
        pytest.param(
            f"iss=https://login.microsoftonline.com/other-tenant/v2.0&sid={SID}",
            "foreign_issuer",
            id="foreign-iss",
        ),
        pytest.param(f"iss={ISSUER}&sid=another-session", "no_matching_session", id="other-sid"),
        pytest.param(f"iss={ISSUER}", "no_sid", id="iss-without-sid"),
        pytest.param("", "no_sid", id="bare"),
    ],
)
def test_frontchannel_logout_for_another_issuer_or_session_ends_nothing(
    server_side: Browser, query: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A top-level cross-site GET carries our SameSite=Lax cookie: it must clear nothing."""
    reply = server_side.request("GET", f"/oauth2/frontchannel_logout?{query}")
    assert isinstance(reply, Respond) and reply.status == 200
    assert not cleared(reply)
    assert signed_in(server_side)
    assert f'"reason": "{reason}"' in caplog.text


# -- back-channel logout: the forgery table --------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str) -> str:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "iat": int(time.time()),
        "exp": int(time.time()) + 120,
        "jti": "j",
        "sid": SID,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    head, body = b64(json.dumps({"alg": alg}).encode()), b64(json.dumps(claims).encode())
    return f"{head}.{body}.{'' if alg == 'none' else 'c2ln'}"


OTHER_KEY = RSAKey.generate_key(
    2048, parameters={"kid": "k1", "use": "sig"}
)  # the provider's kid, another key


def token(p: ScriptedProvider, key: RSAKey | None = None, **claims: Any) -> str:
    """A logout token for the signed-in session, changed by ``claims`` (None removes one)."""
    values: dict[str, Any] = {"sid": SID, **claims}
    issuer, audience = values.pop("iss", ISSUER), values.pop("aud", CLIENT_ID)
    return logout_token(key or p.key, issuer, audience, **values)


FORGERIES: list[tuple[str, Callable[[ScriptedProvider], str]]] = [
    ("wrong-signature", lambda p: token(p, key=OTHER_KEY)),
    ("alg-none", lambda p: unsigned("none")),
    ("hs256", lambda p: unsigned("HS256")),
    ("wrong-iss", lambda p: token(p, iss="https://login.microsoftonline.com/x/v2.0")),
    ("wrong-aud", lambda p: token(p, aud="another-app")),
    ("missing-jti", lambda p: token(p, jti=None)),
    ("nonce-present", lambda p: token(p, nonce="n")),
    ("no-events", lambda p: token(p, events=None)),
    ("wrong-event", lambda p: token(p, events={"urn:other": {}})),
    ("event-not-an-object", lambda p: token(p, events={BACKCHANNEL_LOGOUT_EVENT: "x"})),
    ("neither-sid-nor-sub", lambda p: token(p, sid=None)),
    ("id-token-as-logout-token", lambda p: p.id_token()),
    ("expired", lambda p: token(p, now=time.time() - 3600)),
    ("far-future-iat", lambda p: token(p, now=time.time() + 3600)),
    ("no-exp", lambda p: token(p, exp=None)),
    ("no-iat", lambda p: token(p, iat=None)),
    ("thirty-day-exp", lambda p: token(p, exp=int(time.time()) + 30 * 86400)),
    ("year-old-iat-no-exp", lambda p: token(p, now=time.time() - 365 * 86400, exp=None)),
    (
        # Within the lifetime limit (21 min), but issued 20 minutes ago: a stale notification.
        "issued-twenty-minutes-ago-still-unexpired",
        lambda p: token(p, now=time.time() - 1200, exp=int(time.time()) + 60),
    ),
    ("exp-before-iat", lambda p: token(p, exp=int(time.time()) - 1)),
    ("typ-jwt", lambda p: token(p, header={"alg": "RS256", "kid": p.key.kid, "typ": "JWT"})),
    ("typ-at-jwt", lambda p: token(p, header={"alg": "RS256", "kid": p.key.kid, "typ": "at+jwt"})),
    ("alg-rs512", lambda p: token(p, header={"alg": "RS512", "kid": p.key.kid})),
    ("garbage", lambda p: "not.a.jwt"),
]


@pytest.mark.parametrize("forge", [pytest.param(f, id=name) for name, f in FORGERIES])
def test_forged_logout_token_is_refused_and_ends_nothing(
    server_side: Browser, provider: ScriptedProvider, forge: Callable[[ScriptedProvider], str]
) -> None:
    reply = post(
        Browser(server_side.runtime, provider),
        "/oauth2/backchannel_logout",
        {"logout_token": forge(provider)},
    )
    assert reply.status == 400, reply.body
    assert json.loads(reply.body)["error"] == "invalid_request"
    assert dict(reply.headers)["Cache-Control"] == "no-store"
    assert signed_in(server_side)


def test_valid_logout_token_ends_the_session_and_its_jti_is_single_use(
    server_side: Browser, provider: ScriptedProvider
) -> None:
    token = logout_token(provider.key, ISSUER, CLIENT_ID, sid=SID)
    server = Browser(server_side.runtime, provider)
    first = post(server, "/oauth2/backchannel_logout", {"logout_token": token})
    assert first.status == 200 and dict(first.headers)["Cache-Control"] == "no-store"
    assert not signed_in(server_side)
    again = post(server, "/oauth2/backchannel_logout", {"logout_token": token})
    assert again.status == 400 and json.loads(again.body)["error_description"] == "jti_reused"


@pytest.mark.parametrize("typ", [None, "logout+jwt", "application/logout+jwt"])
def test_logout_token_with_the_logout_type_or_none_is_accepted(
    server_side: Browser, provider: ScriptedProvider, typ: str | None
) -> None:
    from joserfc import jws

    if typ is None:  # joserfc's jwt.encode would add "typ": "JWT"
        claims = json.loads(base64.urlsafe_b64decode(token(provider).split(".")[1] + "=="))
        header = {"alg": "RS256", "kid": provider.key.kid}
        logout = jws.serialize_compact(header, json.dumps(claims).encode(), provider.key)
    else:
        logout = token(provider, header={"alg": "RS256", "kid": provider.key.kid, "typ": typ})
    assert ("typ" in jws.extract_compact(logout.encode()).headers()) == (typ is not None)
    reply = post(
        Browser(server_side.runtime, provider), "/oauth2/backchannel_logout", {"logout_token": logout}
    )
    assert reply.status == 200
    assert not signed_in(server_side)


def test_valid_logout_token_for_another_sid_ends_nothing(
    server_side: Browser, provider: ScriptedProvider
) -> None:
    reply = post(
        Browser(server_side.runtime, provider),
        "/oauth2/backchannel_logout",
        {"logout_token": token(provider, sid="another-provider-session")},
    )
    assert reply.status == 200
    assert signed_in(server_side)


def test_spent_jti_is_kept_until_the_token_could_no_longer_be_accepted(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    """A token expiring in 30 s is accepted for 30 s plus the 180 s leeway: its jti must be
    remembered that long (it was once kept only 60 s, so a replay at 100 s got through)."""
    from cqrs_sso_middleware.stores import MemoryStore

    provider.store_backend = MemoryStore(clock)
    provider.claims = {"sid": SID}
    flow = make_flow(session_store="memory")
    captured = logout_token(provider.key, ISSUER, CLIENT_ID, sid=SID, exp=int(time.time()) + 30)
    server = Browser(flow, provider)
    assert post(server, "/oauth2/backchannel_logout", {"logout_token": captured}).status == 200
    browser = Browser(flow, provider)
    browser.sign_in()
    clock.offset += 100
    replayed = post(server, "/oauth2/backchannel_logout", {"logout_token": captured})
    assert replayed.status == 400 and json.loads(replayed.body)["error_description"] == "jti_reused"
    assert signed_in(browser)


def test_logout_token_naming_only_sub_ends_all_of_that_subjects_sessions(
    server_side: Browser, provider: ScriptedProvider
) -> None:
    other_pc = Browser(server_side.runtime, provider)
    other_pc.sign_in()
    token = logout_token(provider.key, ISSUER, CLIENT_ID, subject="pairwise")
    assert (
        post(
            Browser(server_side.runtime, provider), "/oauth2/backchannel_logout", {"logout_token": token}
        ).status
        == 200
    )
    assert not signed_in(server_side) and not signed_in(other_pc)


def test_missing_logout_token_is_400(server_side: Browser, provider: ScriptedProvider) -> None:
    assert post(Browser(server_side.runtime, provider), "/oauth2/backchannel_logout", {}).status == 400


def test_cookie_store_answers_501_to_a_valid_logout_token(
    browser: Browser, provider: ScriptedProvider
) -> None:
    provider.claims = {"sid": SID}
    browser.sign_in()
    token = logout_token(provider.key, ISSUER, CLIENT_ID, sid=SID)
    assert (
        post(Browser(browser.runtime, provider), "/oauth2/backchannel_logout", {"logout_token": token}).status
        == 501
    )


def test_logout_token_after_key_rotation_refreshes_the_keys_once(
    server_side: Browser, provider: ScriptedProvider
) -> None:
    provider.key = RSAKey.generate_key(2048, parameters={"kid": "rolled", "use": "sig"})
    provider.published = [provider.key]
    token = logout_token(provider.key, ISSUER, CLIENT_ID, sid=SID)
    assert (
        post(
            Browser(server_side.runtime, provider), "/oauth2/backchannel_logout", {"logout_token": token}
        ).status
        == 200
    )
    assert [c.purpose for c in provider.calls].count("jwks") == 2


# -- time-outs told to the person ----------------------------------------------------------------


@pytest.mark.parametrize("store", ["cookie", "memory"])
def test_sign_in_page_says_why_the_session_ended(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock, store: str
) -> None:
    browser = Browser(make_flow(session_store=store, session_idle_seconds=600), provider)
    browser.sign_in()
    clock.offset += 601
    first = browser.request("GET", "/messages")
    assert isinstance(first, Respond) and first.status == 303
    page = browser.request("GET", dict(first.headers)["Location"])
    assert isinstance(page, Respond)
    text = page.body.decode()
    assert "not used CQRS for 10 minutes" in text
    again = browser.request("GET", "/oauth2/sign_in")
    assert isinstance(again, Respond) and b"You were signed out" not in again.body  # shown once


def test_notice_cookie_cannot_put_words_on_the_page(browser: Browser) -> None:
    browser.cookies["__Host-cqrs_sso_notice"] = "<script>alert(1)</script>"
    page = browser.request("GET", "/oauth2/sign_in")
    assert isinstance(page, Respond) and b"alert" not in page.body
