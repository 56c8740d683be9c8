"""ID token validation (OIDC Core §3.1.3.7) and the JWKS refresh rule, with no network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from cqrs_sso_middleware.core.errors import ProviderError, TokenRejected, UnknownSigningKey
from cqrs_sso_middleware.core.oidc.tokens import (
    FAILED_REFRESH_RETRY_SECONDS,
    UNKNOWN_KID_REFRESH_SECONDS,
    SigningKeys,
    TokenExpectations,
    validate_id_token,
)

ISSUER = "https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0"
OTHER_TENANT = "https://login.microsoftonline.com/00000000-1111-2222-3333-444444444444/v2.0"
V1_ISSUER = "https://sts.windows.net/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/"
CLIENT_ID = "client-1"
NONCE = "nonce-of-this-attempt"
NOW = 1_800_000_000

RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})
OTHER_RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})  # same kid, other key
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig"})
KEYS = KeySet([RSA, EC])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "pairwise-subject",
        "oid": "object-id",
        "tid": "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
        "email": "gp.user@nhs.net",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
        "nonce": NONCE,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA, alg: str = "RS256", kid: str | None = "rsa-1") -> str:
    header = {"alg": alg, **({"kid": kid} if kid else {})}
    return jwt.encode(header, payload, key, algorithms=[alg])


def unsigned(payload: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """Algorithm confusion: HMAC keyed with the provider's *public* key bytes."""
    # Built by hand: joserfc itself refuses to use a public key as an HMAC secret.
    signing_input = ".".join(
        (b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()), b64(json.dumps(payload).encode()))
    )
    mac = hmac.new(RSA.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


EXPECT = TokenExpectations(issuer=ISSUER, client_id=CLIENT_ID, nonce=NONCE, leeway_seconds=120)


def check(token: str, expect: TokenExpectations = EXPECT, now: float = NOW) -> dict[str, Any]:
    return validate_id_token(token, KEYS, expect, now)


def test_valid_rs256_token_is_accepted() -> None:
    assert check(sign(claims()))["email"] == "gp.user@nhs.net"


def test_valid_es256_token_is_accepted() -> None:
    assert check(sign(claims(), key=EC, alg="ES256", kid="ec-1"))["sub"] == "pairwise-subject"


@pytest.mark.parametrize(
    "token,reason",
    [
        pytest.param(unsigned(claims()), "algorithm_not_allowed", id="alg-none"),
        pytest.param(hs256_with_public_key(claims()), "algorithm_not_allowed", id="hs256-with-public-key"),
        pytest.param(sign(claims(), key=OTHER_RSA), "bad_signature", id="right-kid-wrong-key"),
        pytest.param(sign(claims(), kid="not-published"), "unknown_kid", id="unknown-kid"),
        pytest.param(sign(claims(iss=OTHER_TENANT)), "wrong_issuer", id="issuer-of-another-tenant"),
        pytest.param(sign(claims(iss=V1_ISSUER)), "wrong_issuer", id="v1-issuer-where-v2-configured"),
        pytest.param(sign(claims(iss=ISSUER + "/")), "wrong_issuer", id="issuer-trailing-slash"),
        pytest.param(sign(claims(aud="another-client")), "wrong_audience", id="wrong-audience"),
        pytest.param(sign(claims(aud=None)), "wrong_audience", id="missing-audience"),
        pytest.param(sign(claims(aud=[CLIENT_ID, "other"])), "missing_azp", id="several-audiences-no-azp"),
        pytest.param(
            sign(claims(aud=[CLIENT_ID, "other"], azp="other")), "wrong_azp", id="azp-of-another-client"
        ),
        pytest.param(sign(claims(exp=NOW - 121)), "expired", id="expired-beyond-leeway"),
        pytest.param(sign(claims(exp=None)), "missing_exp", id="missing-exp"),
        pytest.param(sign(claims(exp="tomorrow")), "invalid_exp", id="exp-not-a-number"),
        pytest.param(sign(claims(nbf=NOW + 121)), "not_yet_valid", id="nbf-in-the-future"),
        pytest.param(sign(claims(iat=NOW + 3600)), "issued_in_future", id="iat-far-in-the-future"),
        pytest.param(sign(claims(iat=None)), "missing_iat", id="missing-iat"),
        pytest.param(sign(claims(nonce=None)), "wrong_nonce", id="nonce-missing"),
        pytest.param(sign(claims(nonce="another-attempt")), "wrong_nonce", id="nonce-of-another-attempt"),
        pytest.param(sign(claims(sub=None)), "missing_sub", id="missing-sub"),
        pytest.param("not.a.jwt", "malformed", id="garbage"),
        pytest.param(sign(claims())[:-20], "bad_signature", id="truncated-signature"),
        pytest.param(sign(claims()).rsplit(".", 1)[0], "malformed", id="two-parts"),
        pytest.param("a.b.c.d.e", "malformed", id="jwe-shaped"),
        pytest.param("x" * 20000, "malformed", id="oversized"),
    ],
)
def test_forged_or_wrong_id_token_is_rejected(token: str, reason: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        check(token)
    assert caught.value.reason == reason


def test_unknown_kid_is_its_own_error_so_the_caller_can_refresh_keys() -> None:
    with pytest.raises(UnknownSigningKey):
        check(sign(claims(), kid="rolled-over"))


def test_times_within_leeway_are_accepted() -> None:
    check(sign(claims(exp=NOW - 100, nbf=NOW + 100, iat=NOW + 100)))


def test_several_audiences_with_our_azp_are_accepted() -> None:
    check(sign(claims(aud=[CLIENT_ID, "other"], azp=CLIENT_ID)))


def test_token_replayed_into_another_attempt_is_rejected() -> None:
    token = sign(claims())
    check(token)
    other_attempt = TokenExpectations(issuer=ISSUER, client_id=CLIENT_ID, nonce="second-attempt")
    with pytest.raises(TokenRejected, match="wrong_nonce"):
        check(token, other_attempt)


def test_algorithm_allow_list_comes_from_us_not_the_token() -> None:
    rs_only = TokenExpectations(issuer=ISSUER, client_id=CLIENT_ID, nonce=NONCE, algorithms=("RS256",))
    with pytest.raises(TokenRejected, match="algorithm_not_allowed"):
        check(sign(claims(), key=EC, alg="ES256", kid="ec-1"), rs_only)


# -- the JWKS cache -------------------------------------------------------------------------


def jwks_body(*keys: Any) -> bytes:
    return json.dumps({"keys": [k.as_dict(private=False) for k in keys]}).encode()


def test_keys_are_fetched_once_then_cached() -> None:
    cache = SigningKeys()
    assert cache.should_fetch(NOW)
    cache.accept(jwks_body(RSA), NOW)
    assert not cache.should_fetch(NOW + 60)
    assert not cache.should_fetch(NOW + 3600)


def test_routine_fetch_does_not_use_up_the_unknown_kid_refresh() -> None:
    cache = SigningKeys()
    assert cache.should_fetch(NOW)
    cache.accept(jwks_body(RSA), NOW)
    # A roll-over right after the first fetch: the unknown kid may refresh at once.
    assert cache.should_fetch(NOW + 1, unknown_kid=True)


def test_unknown_kid_refreshes_at_most_once_per_five_minutes() -> None:
    cache = SigningKeys()
    cache.should_fetch(NOW)
    cache.accept(jwks_body(RSA), NOW)
    assert cache.should_fetch(NOW + 1, unknown_kid=True)
    cache.accept(jwks_body(RSA), NOW + 1)
    assert not cache.should_fetch(NOW + 2, unknown_kid=True)
    assert not cache.should_fetch(NOW + UNKNOWN_KID_REFRESH_SECONDS, unknown_kid=True)
    assert cache.should_fetch(NOW + 1 + UNKNOWN_KID_REFRESH_SECONDS, unknown_kid=True)
    # A daily routine refresh in between neither needs nor resets the unknown-kid budget.
    assert not cache.should_fetch(NOW + 2 + UNKNOWN_KID_REFRESH_SECONDS, unknown_kid=True)


def test_failed_unknown_kid_refresh_may_be_retried_soon() -> None:
    cache = SigningKeys()
    cache.should_fetch(NOW)
    cache.accept(jwks_body(RSA), NOW)
    assert cache.should_fetch(NOW + 1, unknown_kid=True)
    cache.fetch_failed(NOW + 1)
    assert not cache.should_fetch(NOW + 1 + FAILED_REFRESH_RETRY_SECONDS - 1, unknown_kid=True)
    assert cache.should_fetch(NOW + 1 + FAILED_REFRESH_RETRY_SECONDS, unknown_kid=True)


def test_failed_refresh_keeps_the_last_good_keys() -> None:
    cache = SigningKeys()
    cache.accept(jwks_body(RSA), NOW)
    with pytest.raises(ProviderError):
        cache.accept(b"<html>gateway timeout</html>", NOW + 10)
    assert cache.keys is not None
    assert [k.kid for k in cache.keys] == ["rsa-1"]


def test_keys_older_than_a_day_are_refreshed() -> None:
    cache = SigningKeys()
    cache.should_fetch(NOW)
    cache.accept(jwks_body(RSA), NOW)
    assert cache.should_fetch(NOW + 24 * 3600 + 1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{}", id="no-keys-member"),
        pytest.param(b'{"keys": []}', id="empty"),
        pytest.param(b'{"keys": [{"kty": "RSA"}]}', id="broken-key"),
        pytest.param(b"[1, 2]", id="not-an-object"),
    ],
)
def test_unusable_jwks_is_refused(body: bytes) -> None:
    with pytest.raises(ProviderError):
        SigningKeys().accept(body, time.time())


def test_encryption_keys_in_the_jwks_are_not_used_for_signatures() -> None:
    enc = RSAKey.generate_key(2048, parameters={"kid": "enc-1", "use": "enc"})
    cache = SigningKeys()
    cache.accept(jwks_body(RSA, enc), NOW)
    assert cache.keys is not None
    assert [k.kid for k in cache.keys] == ["rsa-1"]
