"""oidc-provider, the independent implementation, as the second of two providers beside the
built-in NHSmail-like one: a person signs in with either, and a code one issued is refused
at an attempt sent to the other (the mix-up)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from cqrs_sso_middleware import Settings
from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import CLIENT_ID, CLIENT_SECRET, GP_USER, SENSITIVE, lookup_accounts
from ..helpers import APP_ORIGIN, HTML, AppClient, form_fields
from .conftest import PASSWORD, InteropJourney, OidcProvider


@pytest.fixture
def both(
    make_client: Callable[..., AppClient], provider_server: NHSmailLikeProvider, idp: OidcProvider
) -> Iterator[InteropJourney]:
    key = secrets.token_urlsafe(32)
    SENSITIVE.add(key)
    values: dict[str, Any] = {
        "providers": [
            {
                "name": "nhsmail",
                "issuer": provider_server.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
            {
                "name": "independent",
                "profile": "generic",
                "label": "the independent provider",
                "issuer": idp.issuer,
                "client_id": "interop-basic",
                "client_secret": idp.secret,
            },
        ],
        "secret_keys": (key,),
        "base_url": APP_ORIGIN,
        "account_lookup": lookup_accounts,
    }
    journey = InteropJourney(make_client(settings=Settings(**values)))
    yield journey
    journey.close()


def start_with(journey: InteropJourney, provider: str) -> str:
    fields = form_fields(journey.sign_in_page("/messages").text)
    reply = journey.app.post("/oauth2/start", {**fields, "provider": provider}, HTML)
    assert reply.status == 303, reply.text[:300]
    return reply.location


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_person_signs_in_with_the_independent_provider_as_the_second_issuer(
    both: InteropJourney, idp: OidcProvider
) -> None:
    authorize = start_with(both, "independent")
    assert authorize.startswith(f"http://127.0.0.1:{idp.port}/")
    assert query_of(authorize)["redirect_uri"] == f"{APP_ORIGIN}/oauth2/callback/independent"
    answer = both.provider_login(authorize, GP_USER, PASSWORD)
    assert "location" in answer.headers, answer.text[:2000]
    assert answer.headers["location"].startswith(f"{APP_ORIGIN}/oauth2/callback/independent?")
    callback = both.callback(answer.headers["location"])
    assert callback.status == 303, callback.text[:300]
    assert both.open("/messages").json()["user"] == GP_USER


def test_a_code_from_the_independent_provider_is_refused_at_an_nhsmail_attempt(
    both: InteropJourney, idp: OidcProvider
) -> None:
    theirs = query_of(
        both.provider_login(start_with(both, "independent"), GP_USER, PASSWORD).headers["location"]
    )
    nhsmail_attempt = query_of(start_with(both, "nhsmail"))
    mixed = {"code": theirs["code"], "state": nhsmail_attempt["state"]}
    page = both.callback(f"{APP_ORIGIN}/oauth2/callback?{urlencode(mixed)}")
    assert page.status == 401  # NHSmail's token endpoint does not know oidc-provider's code
    assert both.open("/messages").status == 303
