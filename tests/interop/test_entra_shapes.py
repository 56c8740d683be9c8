"""Discovery documents and ID tokens shaped exactly like Microsoft Entra ID v2.0's."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.jwk import KeySet, RSAKey

from cqrs_sso_middleware import Account, Settings
from cqrs_sso_middleware.core.errors import ProviderError, TokenRejected
from cqrs_sso_middleware.core.oidc.metadata import parse_provider_metadata
from cqrs_sso_middleware.core.oidc.tokens import TokenExpectations, validate_id_token
from cqrs_sso_middleware.core.profiles.base import ProviderProfile as GenericProfile
from cqrs_sso_middleware.core.profiles.cis2 import Cis2Profile
from cqrs_sso_middleware.core.profiles.entra import EntraProfile

FIXTURES = Path(__file__).parent / "fixtures"
TENANT = "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
GUID_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
DOMAIN_AUTHORITY = "https://login.microsoftonline.com/nhs.net/v2.0"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"


def discovery(**changes: Any) -> bytes:
    document = json.loads((FIXTURES / "entra_v2_discovery.json").read_text())
    document.update(changes)
    return json.dumps(document).encode()


def entra_token(key: RSAKey, nonce: str, **changes: Any) -> str:
    claims = json.loads((FIXTURES / "entra_v2_id_token_claims.json").read_text())
    now = int(time.time())
    claims.update(iat=now, nbf=now, exp=now + 3600, nonce=nonce, **changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    # Entra's header: kid and x5t carry the same certificate thumbprint.
    thumbprint = base64.urlsafe_b64encode(hashlib.sha1(key.as_der()).digest()).rstrip(b"=").decode()  # noqa: S324
    header = {"typ": "JWT", "alg": "RS256", "kid": key.kid, "x5t": thumbprint}
    return jwt.encode(header, claims, key, algorithms=["RS256"])


KEY = RSAKey.generate_key(2048, parameters={"kid": "KQ2tAcrE7lBaVVGBmc5FobgdJo4", "use": "sig"})
ROLLED = RSAKey.generate_key(2048, parameters={"kid": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "use": "sig"})
KEYS = KeySet([KEY, ROLLED])  # Entra publishes several keys at once


def test_entra_v2_discovery_document_is_accepted() -> None:
    metadata = parse_provider_metadata(discovery(), GUID_ISSUER)
    assert metadata.issuer == GUID_ISSUER
    assert metadata.signing_algorithms == ("RS256",)
    assert metadata.jwks_uri.endswith("/discovery/v2.0/keys")
    assert "private_key_jwt" in metadata.token_auth_methods


def test_entra_v2_id_token_is_validated_and_mapped() -> None:
    metadata = parse_provider_metadata(discovery(), GUID_ISSUER)
    expect = TokenExpectations(metadata.issuer, CLIENT_ID, "n-1", metadata.signing_algorithms)
    claims = validate_id_token(entra_token(KEY, "n-1"), KEYS, expect, time.time())
    identity = EntraProfile().identity(claims)
    assert identity.email == "gp.user@nhs.net"  # email claim, trimmed and lower-cased
    assert identity.object_id == "00000000-0000-0000-66f3-3332eca7ea81"
    assert identity.tenant_id == TENANT
    assert identity.subject != identity.object_id  # pairwise sub
    assert identity.claims["xms_edov"] is True


def test_member_user_without_email_claim_falls_back_to_preferred_username() -> None:
    expect = TokenExpectations(GUID_ISSUER, CLIENT_ID, "n-2")
    claims = validate_id_token(entra_token(KEY, "n-2", email=None), KEYS, expect, time.time())
    assert EntraProfile().identity(claims).email == "gp.user@nhs.net"


def test_token_signed_with_the_second_published_key_is_accepted() -> None:
    """Entra publishes the next key before signing with it: a token signed with the second
    key of the set is valid, its claims read in full."""
    expect = TokenExpectations(GUID_ISSUER, CLIENT_ID, "n-3")
    token = entra_token(ROLLED, "n-3")
    assert jws.extract_compact(token.encode()).headers()["kid"] == ROLLED.kid != KEY.kid
    claims = validate_id_token(token, KEYS, expect, time.time())
    assert claims["nonce"] == "n-3" and claims["iss"] == GUID_ISSUER


def test_v1_token_shape_is_refused_where_v2_is_configured() -> None:
    expect = TokenExpectations(GUID_ISSUER, CLIENT_ID, "n-4")
    v1 = entra_token(KEY, "n-4", iss=f"https://sts.windows.net/{TENANT}/", ver="1.0")
    with pytest.raises(TokenRejected, match="wrong_issuer"):
        validate_id_token(v1, KEYS, expect, time.time())


def test_domain_name_authority_is_pinned_to_the_guid_issuer_its_metadata_names() -> None:
    metadata = parse_provider_metadata(discovery(), DOMAIN_AUTHORITY, EntraProfile().issuer_alias)
    assert metadata.issuer == GUID_ISSUER  # tokens are checked against the GUID form, exactly
    expect = TokenExpectations(metadata.issuer, CLIENT_ID, "n-5")
    assert validate_id_token(entra_token(KEY, "n-5"), KEYS, expect, time.time())["iss"] == GUID_ISSUER
    with pytest.raises(TokenRejected, match="wrong_issuer"):
        validate_id_token(entra_token(KEY, "n-5", iss=DOMAIN_AUTHORITY), KEYS, expect, time.time())


@pytest.mark.parametrize(
    "configured,announced",
    [
        pytest.param(
            GUID_ISSUER,
            "https://login.microsoftonline.com/11111111-2222-3333-4444-555555555555/v2.0",
            id="guid-configured-other-guid-announced",
        ),
        pytest.param(
            DOMAIN_AUTHORITY,
            "https://login.evil.example/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
            id="domain-authority-other-host",
        ),
        pytest.param(
            DOMAIN_AUTHORITY,
            "https://login.microsoftonline.com/contoso.com/v2.0",
            id="domain-authority-other-domain",
        ),
        pytest.param(
            DOMAIN_AUTHORITY, f"https://login.microsoftonline.com/{TENANT}/v1.0", id="other-version"
        ),
        pytest.param(
            "https://login.microsoftonline.com/common/v2.0",
            "https://login.microsoftonline.com/{tenantid}/v2.0",
            id="multi-tenant-template",
        ),
    ],
)
def test_issuer_mismatches_other_than_the_domain_alias_are_refused(configured: str, announced: str) -> None:
    with pytest.raises(ProviderError, match="issuer"):
        parse_provider_metadata(discovery(issuer=announced), configured, EntraProfile().issuer_alias)


def test_the_domain_alias_is_entras_alone() -> None:
    """A generic or CIS2 provider gets OIDC Discovery §4.3 exactly: no alias."""
    for profile in (GenericProfile(), Cis2Profile()):
        with pytest.raises(ProviderError, match="issuer"):
            parse_provider_metadata(discovery(), DOMAIN_AUTHORITY, profile.issuer_alias)


def test_nhsmail_preset_with_a_domain_tenant() -> None:
    settings = Settings(
        tenant="nhs.net",
        client_id=CLIENT_ID,
        client_secret="s",
        secret_keys=("k" * 32,),
        base_url="https://cqrs.example.nhs.uk",
        account_lookup=lambda identity: Account("x"),
    )
    assert settings.provider.issuer == DOMAIN_AUTHORITY
