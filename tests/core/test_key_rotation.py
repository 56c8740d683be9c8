"""Signing-key rotation through the core, named after the OpenID Foundation RP certification
tests they mirror (docs/interop.md maps the whole plan)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from joserfc.jwk import RSAKey

from cqrs_sso_middleware import Runtime
from cqrs_sso_middleware.core.oidc.tokens import FAILED_REFRESH_RETRY_SECONDS, UNKNOWN_KID_REFRESH_SECONDS
from cqrs_sso_middleware.core.protocol import HttpFailure, HttpReply

from .test_flow import Browser, Clock, ScriptedProvider


def new_key(kid: str | None = None) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid or secrets.token_hex(4), "use": "sig"})


def jwks_requests(provider: ScriptedProvider) -> int:
    return [call.purpose for call in provider.calls].count("jwks")


def rotate(provider: ScriptedProvider, keep_old: bool = True) -> None:
    """The provider publishes a new key under a new kid and signs with it from now on."""
    provider.key = new_key()
    provider.published = [provider.key, *provider.published] if keep_old else [provider.key]


def test_rp_key_rotation_op_sign_key(browser: Browser, provider: ScriptedProvider) -> None:
    """Rotate immediately after the first sign-in: the second one a moment later succeeds
    after exactly one extra JWKS request (it used to be refused for five minutes)."""
    assert browser.sign_in().status == 303
    assert jwks_requests(provider) == 1
    rotate(provider, keep_old=False)
    second = Browser(browser.runtime, provider)
    assert second.sign_in().status == 303
    assert jwks_requests(provider) == 2


def test_rp_key_rotation_op_sign_key_twice_in_one_window_is_refused_then_recovers(
    browser: Browser, provider: ScriptedProvider, clock: Clock
) -> None:
    """A second roll-over inside the rate-limit window cannot refresh again (flood rule);
    after the window it can."""
    browser.sign_in()
    rotate(provider)
    assert Browser(browser.runtime, provider).sign_in().status == 303
    rotate(provider)
    assert Browser(browser.runtime, provider).sign_in().status == 401
    assert jwks_requests(provider) == 2
    clock.offset += UNKNOWN_KID_REFRESH_SECONDS
    assert Browser(browser.runtime, provider).sign_in().status == 303
    assert jwks_requests(provider) == 3


def test_a_thousand_random_unknown_kids_cost_at_most_one_jwks_request(
    browser: Browser, provider: ScriptedProvider
) -> None:
    browser.sign_in()
    before = jwks_requests(provider)
    flow: Runtime = browser.runtime
    refused = 0
    provider.key = _FORGERY_KEY
    for _ in range(1000):
        provider.kid = secrets.token_hex(8)
        attacker = Browser(flow, provider)
        if attacker.sign_in().status == 401:
            refused += 1
    assert refused == 1000
    assert jwks_requests(provider) - before <= 1


_FORGERY_KEY = RSAKey.generate_key(2048, parameters={"kid": "x", "use": "sig"})


def test_rotation_while_the_jwks_endpoint_is_down_is_unavailable_then_accepted(
    browser: Browser, provider: ScriptedProvider, clock: Clock
) -> None:
    browser.sign_in()
    rotate(provider)
    provider.jwks = lambda: HttpFailure("ConnectError")
    down = Browser(browser.runtime, provider).sign_in()
    assert down.status == 503
    assert b"temporarily unavailable" in down.body
    provider.jwks = None
    clock.offset += FAILED_REFRESH_RETRY_SECONDS
    assert Browser(browser.runtime, provider).sign_in().status == 303


def test_rotation_when_the_jwks_endpoint_answers_garbage_is_unavailable(
    browser: Browser, provider: ScriptedProvider
) -> None:
    browser.sign_in()
    rotate(provider)
    provider.jwks = lambda: HttpReply(200, b"<html>maintenance</html>")
    assert Browser(browser.runtime, provider).sign_in().status == 503


def test_rp_id_token_kid_absent_single_jwks(browser: Browser, provider: ScriptedProvider) -> None:
    provider.send_kid = False
    assert browser.sign_in().status == 303


def test_rp_id_token_kid_absent_multiple_jwks(browser: Browser, provider: ScriptedProvider) -> None:
    provider.send_kid = False
    provider.published = [provider.key, new_key()]
    assert browser.sign_in().status == 401


def test_kid_absent_counts_only_keys_that_fit_the_algorithm(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    """An EC key beside the one RSA key does not make an RS256 token without kid ambiguous."""
    from joserfc.jwk import ECKey

    provider.send_kid = False
    provider.published = [provider.key, ECKey.generate_key("P-256", parameters={"kid": "ec", "use": "sig"})]
    assert Browser(make_flow(), provider).sign_in().status == 303


def test_rp_id_token_bad_sig_rs256_with_a_published_kid_is_refused_without_refetch(
    browser: Browser, provider: ScriptedProvider
) -> None:
    browser.sign_in()
    published = provider.key
    provider.key, provider.kid = _FORGERY_KEY, published.kid
    assert Browser(browser.runtime, provider).sign_in().status == 401
    assert jwks_requests(provider) == 1  # a known kid never triggers a refresh
