"""Two providers through both drivers: the built-in NHSmail-like provider and its CIS2-like
sibling, each signing people in end to end, and every way an answer from one could be taken
for the other's refused (the mix-up attack, RFC 9207 and RFC 9700 §4.4)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cqrs_sso_middleware import Settings
from cqrs_sso_middleware.provider import Cis2LikeProvider, DemoClient, DemoUser, NHSmailLikeProvider
from cqrs_sso_middleware.provider.logout import logout_token
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

from ..conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    GP_USER,
    NEW_USER,
    PASSWORD,
    SENSITIVE,
    FakeClock,
    lookup_accounts,
)
from ..helpers import APP_ORIGIN, HTML, AppClient, Journey, form_fields, visible_text

CIS2_CLIENT_ID = "cqrs-test-cis2-client"
CIS2_CLIENT_SECRET = "cqrs-test-cis2-secret"
PRACTICE_ROLE = {
    "person_roleid": "555000000001",
    "role_code": "S8000:G8000:R8000",
    "role_name": "Clinical Practitioner Access Role",
    "org_code": "Y00001",
    "org_name": "Test Surgery",
    "activity_codes": ["B0264"],
}


@pytest.fixture(scope="module")
def cis2_server() -> Iterator[Cis2LikeProvider]:
    sock = bind_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    users = [
        DemoUser(GP_USER, PASSWORD, "Dr Gita Patel", nrbac_roles=(PRACTICE_ROLE,)),
        DemoUser(NEW_USER, PASSWORD, "Nia Evans", nrbac_roles=({**PRACTICE_ROLE, "org_code": "Y00002"},)),
    ]
    client = DemoClient(
        CIS2_CLIENT_ID,
        CIS2_CLIENT_SECRET,
        (f"{APP_ORIGIN}/oauth2/callback/cis2",),
        post_logout_redirect_uris=(f"{APP_ORIGIN}/oauth2/signed_out",),
    )
    instance = Cis2LikeProvider(url, "cis2", users, [client], single_sign_on=False)
    server = BackgroundASGIServer(instance.app, sock).start()
    yield instance
    server.stop()
    SENSITIVE.update(instance.issued_secrets)


@pytest.fixture
def cis2(cis2_server: Cis2LikeProvider) -> Iterator[Cis2LikeProvider]:
    yield cis2_server
    cis2_server.achieved_acr = "AAL3_ANY"
    cis2_server.faults.claim_overrides = {}
    cis2_server.userinfo_overrides = {}


def two_providers(nhsmail: NHSmailLikeProvider, cis2: Cis2LikeProvider) -> list[dict[str, Any]]:
    return [
        {
            "name": "nhsmail",
            "issuer": nhsmail.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "http_timeout_seconds": 3.0,
        },
        {
            "name": "cis2",
            "profile": "cis2",
            "issuer": cis2.issuer,
            "client_id": CIS2_CLIENT_ID,
            "client_secret": CIS2_CLIENT_SECRET,
            "role_mapping": {"cis2:R8000": "practice_user"},
            "http_timeout_seconds": 3.0,
        },
    ]


@pytest.fixture
def make_two(
    provider: NHSmailLikeProvider, cis2: Cis2LikeProvider, store_settings: dict[str, Any]
) -> Callable[..., Settings]:
    key = secrets.token_urlsafe(32)
    SENSITIVE.add(key)

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "providers": two_providers(provider, cis2),
            "secret_keys": (key,),
            "base_url": APP_ORIGIN,
            "account_lookup": lookup_accounts,
            **store_settings,
            **overrides,
        }
        return Settings(**values)

    return build


@pytest.fixture
def two(make_client: Callable[..., AppClient], make_two: Callable[..., Settings]) -> Iterator[Journey]:
    journey = Journey(make_client(settings=make_two()))
    yield journey
    journey.close()


def start_with(journey: Journey, provider: str, path: str = "/messages") -> str:
    """Steps 1–2 with one provider's button; returns that provider's authorize URL."""
    fields = form_fields(journey.sign_in_page(path).text)
    reply = journey.app.post("/oauth2/start", {**fields, "provider": provider}, HTML)
    assert reply.status == 303, (reply.status, reply.text[:300])
    return reply.location


def sign_in_with(journey: Journey, provider: str, email: str = GP_USER) -> Any:
    answer = journey.provider_login(start_with(journey, provider), email, PASSWORD)
    assert answer.status_code in (302, 303), answer.text[:300]
    return journey.callback(answer.headers["location"])


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_sign_in_page_has_one_button_per_provider(two: Journey) -> None:
    page = two.sign_in_page()
    assert page.status == 200
    text = visible_text(page.text)
    assert "Sign in with NHSmail" in text and "Sign in with your NHS Care Identity" in text
    assert 'name="provider" value="nhsmail"' in page.text and 'name="provider" value="cis2"' in page.text


def test_each_provider_signs_the_same_person_in_with_its_own_roles(
    two: Journey, make_client: Callable[..., AppClient], make_two: Callable[..., Settings]
) -> None:
    callback = sign_in_with(two, "cis2")
    assert callback.status == 303 and callback.location == "/messages"
    seen = two.open("/messages").json()
    assert seen["user"] == GP_USER
    assert {"cis2:S8000:G8000:R8000", "cis2:R8000", "cis2:activity:B0264", "practice_user"} <= set(
        seen["roles"]
    )
    other = Journey(make_client(settings=make_two()))
    try:
        assert sign_in_with(other, "nhsmail").status == 303
        assert other.open("/messages").json()["roles"] == []  # NHSmail gives this person none
    finally:
        other.close()


def test_the_cis2_attempt_asks_for_its_assurance_level_and_scopes(
    two: Journey, cis2: Cis2LikeProvider
) -> None:
    authorize = start_with(two, "cis2")
    assert authorize.startswith(cis2.issuer + "/authorize?")
    query = query_of(authorize)
    assert query["acr_values"] == "AAL2_OR_AAL3_ANY"
    assert query["client_id"] == CIS2_CLIENT_ID
    assert query["redirect_uri"] == f"{APP_ORIGIN}/oauth2/callback/cis2"
    assert set(query["scope"].split()) >= {"openid", "nationalrbacaccess", "selectedrole", "associatedorgs"}


def test_an_assurance_level_below_the_one_asked_is_refused(two: Journey, cis2: Cis2LikeProvider) -> None:
    cis2.achieved_acr = "AAL1_USERPASS"
    page = sign_in_with(two, "cis2")
    assert page.status == 403
    assert "Sign in with your smartcard" in visible_text(page.text)
    assert two.open("/messages").status == 303  # no session


def test_a_token_without_acr_is_refused(two: Journey, cis2: Cis2LikeProvider) -> None:
    cis2.faults.claim_overrides = {"acr": None}
    assert sign_in_with(two, "cis2").status == 403


def test_userinfo_about_another_person_is_refused(two: Journey, cis2: Cis2LikeProvider) -> None:
    """OIDC Core §5.3.4: UserInfo whose sub is not the ID token's is not used at all."""
    cis2.userinfo_overrides = {"sub": "someone-else", "nhsid_nrbac_roles": []}
    page = sign_in_with(two, "cis2")
    assert page.status == 401
    assert two.open("/messages").status == 303


def test_a_code_from_one_provider_is_refused_at_an_attempt_sent_to_the_other(
    two: Journey, cis2: Cis2LikeProvider, provider: NHSmailLikeProvider
) -> None:
    """The mix-up: a code NHSmail issued, presented with the state of an attempt sent to
    CIS2, goes only to CIS2's token endpoint, which does not know it."""
    nhsmail_code = query_of(
        two.provider_login(start_with(two, "nhsmail"), GP_USER, PASSWORD).headers["location"]
    )
    cis2_answer = query_of(two.provider_login(start_with(two, "cis2"), GP_USER, PASSWORD).headers["location"])
    mixed = {"code": nhsmail_code["code"], "state": cis2_answer["state"], "iss": cis2.issuer}
    page = two.callback(f"{APP_ORIGIN}/oauth2/callback/cis2?{urlencode(mixed)}")
    assert page.status == 401 and "Sign in to NHS Care Identity failed" in visible_text(page.text)
    assert two.open("/messages").status == 303


@pytest.mark.parametrize(
    "at,iss,reason",
    [
        pytest.param("/oauth2/callback", "cis2", "wrong_provider_callback", id="other-providers-callback"),
        pytest.param("/oauth2/callback/cis2", "nhsmail", "issuer_mismatch", id="iss-of-the-other-provider"),
        pytest.param("/oauth2/callback/cis2", "", "issuer_missing", id="iss-missing-though-announced"),
    ],
)
def test_a_response_that_is_not_from_the_attempts_provider_is_refused_before_its_code_is_used(
    two: Journey,
    cis2: Cis2LikeProvider,
    provider: NHSmailLikeProvider,
    caplog: pytest.LogCaptureFixture,
    at: str,
    iss: str,
    reason: str,
) -> None:
    answer = query_of(two.provider_login(start_with(two, "cis2"), GP_USER, PASSWORD).headers["location"])
    issuer = {"cis2": cis2.issuer, "nhsmail": provider.issuer}.get(iss)
    query = {"code": answer["code"], "state": answer["state"], **({"iss": issuer} if issuer else {})}
    before = len(cis2.access_grants)
    page = two.callback(f"{APP_ORIGIN}{at}?{urlencode(query)}")
    assert page.status == 401
    assert len(cis2.access_grants) == before  # the code was never redeemed
    assert f'"reason": "{reason}"' in caplog.text


def test_an_unknown_or_missing_provider_is_refused_when_there_are_several(two: Journey) -> None:
    fields = form_fields(two.sign_in_page().text)
    assert two.app.post("/oauth2/start", {**fields, "provider": "google"}, HTML).status == 400
    assert two.app.post("/oauth2/start", fields, HTML).status == 400


def test_a_link_names_one_provider_and_shows_its_button_alone(two: Journey) -> None:
    link = two.app.get("/oauth2/start?provider=cis2&rd=%2Freports", HTML)
    assert link.status == 303
    assert link.location == "/oauth2/sign_in?rd=%2Freports&provider=cis2"
    page = two.app.get(link.location, HTML)
    assert 'value="cis2"' in page.text and 'value="nhsmail"' not in page.text
    assert two.app.get("/oauth2/start?provider=nope", HTML).status == 400
    assert two.app.get("/oauth2/start", HTML).status == 405  # a sign-in starts from the form only


def test_sign_out_goes_to_the_provider_the_session_came_from(two: Journey, cis2: Cis2LikeProvider) -> None:
    sign_in_with(two, "cis2")
    page = two.app.get("/oauth2/sign_out", HTML)
    reply = two.app.post("/oauth2/sign_out", form_fields(page.text), HTML)
    assert reply.status == 303
    assert reply.location.startswith(cis2.issuer + "/connect/endSession?")
    assert query_of(reply.location)["client_id"] == CIS2_CLIENT_ID


def test_back_channel_logout_from_cis2_ends_its_sessions(
    make_client: Callable[..., AppClient], make_two: Callable[..., Settings], cis2: Cis2LikeProvider
) -> None:
    journey = Journey(make_client(settings=make_two(session_store="memory")))
    try:
        sign_in_with(journey, "cis2")
        assert journey.open("/messages").status == 200
        user = cis2.users[GP_USER]
        token = logout_token(cis2.signing_key, cis2.issuer, CIS2_CLIENT_ID, subject=user.object_id)
        form = {"logout_token": token}
        reply = journey.app.post("/oauth2/backchannel_logout", form, {"Accept": "application/json"})
        assert reply.status == 200
        assert journey.open("/messages").status == 303
    finally:
        journey.close()


def test_a_logout_token_signed_by_one_provider_naming_the_other_is_refused(
    make_client: Callable[..., AppClient],
    make_two: Callable[..., Settings],
    cis2: Cis2LikeProvider,
    provider: NHSmailLikeProvider,
) -> None:
    journey = Journey(make_client(settings=make_two(session_store="memory")))
    try:
        sign_in_with(journey, "cis2")
        forged = logout_token(
            provider.signing_key, cis2.issuer, CIS2_CLIENT_ID, subject=cis2.users[GP_USER].object_id
        )
        reply = journey.app.post(
            "/oauth2/backchannel_logout", {"logout_token": forged}, {"Accept": "application/json"}
        )
        assert reply.status == 400
        assert journey.open("/messages").status == 200
    finally:
        journey.close()


def test_a_step_up_goes_to_the_provider_the_session_came_from(
    two: Journey, cis2: Cis2LikeProvider, clock: FakeClock
) -> None:
    sign_in_with(two, "cis2")
    clock.advance(600)
    page = two.app.get("/oauth2/sign_in?rd=%2Fmessages&max_auth_age=60", HTML)
    assert page.status == 401
    fields = form_fields(page.text)
    assert fields["provider"] == "cis2"
    reply = two.app.post("/oauth2/start", fields, HTML)
    assert reply.status == 303 and reply.location.startswith(cis2.issuer + "/authorize?")
    assert query_of(reply.location)["prompt"] == "login"
