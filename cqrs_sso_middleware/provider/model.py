"""The provider's people, applications and one-time codes, and the switches that make it
misbehave for tests. Demo and tests only."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import RSAKey
from starlette.requests import Request
from starlette.responses import JSONResponse

CODE_LIFETIME_SECONDS = 600
ID_TOKEN_LIFETIME_SECONDS = 3600


@dataclass(frozen=True)
class DemoUser:
    email: str
    password: str
    name: str
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    include_email_claim: bool = True
    # Sent as "companyName" when set: what an app registration's claims mapping can add
    # from the directory's company (organisation) attribute.
    company_name: str = ""
    roles: tuple[str, ...] = ()  # app roles assigned in the enterprise application
    # CIS2-like provider: national RBAC role assignments (``nhsid_nrbac_roles`` entries, with
    # ``org_name`` for ``nhsid_user_orgs``); the first is the role selected at sign-in.
    nrbac_roles: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class DemoClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    frontchannel_logout_uri: str = ""
    backchannel_logout_uri: str = ""
    # Certificate credentials (private_key_jwt): the registered certificate (or public key).
    certificate_pem: str = ""
    secret_expired: bool = False  # answers AADSTS7000222, as Entra does for an expired secret


@dataclass(frozen=True)
class CodeGrant:
    client_id: str
    redirect_uri: str
    user: DemoUser
    nonce: str | None
    code_challenge: str
    scope: str
    expires_at: float
    sid: str = ""
    auth_time: int = 0  # when the person typed their password (the SSO session began)


@dataclass
class ProviderFaults:
    """Switches tests use to make the provider misbehave on purpose."""

    token_status: int | None = None
    token_body: bytes | None = None
    token_delay_seconds: float = 0.0
    jwks_status: int | None = None
    metadata_status: int | None = None
    claim_overrides: dict[str, Any] = field(default_factory=dict)
    # Rewrites each issued ID token (forging tests: alg none, another key, truncation…).
    id_token_rewrite: Callable[[str], str] | None = None


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded form body, first value of each field (no multipart here)."""
    body = (await request.body())[:65536]
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def discovery_document(issuer: str, endpoints: dict[str, str], jwks_uri: str) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 §3, as Entra's v2.0 endpoint answers it."""
    return {
        "issuer": issuer,
        "authorization_endpoint": endpoints["authorize"],
        "token_endpoint": endpoints["token"],
        "end_session_endpoint": endpoints["logout"],
        "jwks_uri": jwks_uri,
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            *("sub", "iss", "aud", "exp", "iat", "nbf", "name", "nonce", "oid", "tid"),
            *("preferred_username", "email", "ver"),
        ],
        "code_challenge_methods_supported": ["S256"],
        "frontchannel_logout_supported": True,
        "http_logout_supported": True,
        "request_uri_parameter_supported": False,
        "tenant_region_scope": "EU",
    }


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Entra's words for the client-authentication failures a deployer meets (its error pages).
AADSTS = {
    700016: "Application with identifier '{client_id}' was not found in the directory.",
    700027: "Client assertion failed signature validation, or the certificate is not registered.",
    7000215: "Invalid client secret provided. Ensure the secret being sent in the request is the "
    "client secret value, not the client secret ID.",
    7000216: "'client_assertion', 'client_secret' or 'request' is required for the "
    "'client_credentials' grant type.",
    7000222: "The provided client secret keys are expired.",
    900144: "The request body must contain the following parameter: 'client_id'.",
}


def entra_error(status: int, error: str, code: int, **words: str) -> JSONResponse:
    """A token-endpoint error as Entra's v2.0 endpoint words it: ``error``,
    ``error_description`` starting with the AADSTS code, and ``error_codes``."""
    description = f"AADSTS{code}: " + AADSTS[code].format(**words)
    body = {"error": error, "error_description": description, "error_codes": [code]}
    return JSONResponse(body, status, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def public_key_of(pem: str) -> RSAKey:
    """The RSA key of a certificate (or a public key) in PEM."""
    if "BEGIN CERTIFICATE" in pem:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        pem = certificate.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    return RSAKey.import_key(pem)


# The HTTP methods each endpoint answers (OIDC Core §3.1.2.1: authorize by GET or POST).
ENDPOINT_METHODS = {
    "jwks": ["GET"],
    "authorize": ["GET", "POST"],
    "token": ["POST"],
    "userinfo": ["GET"],
    "logout": ["GET", "POST"],
}


def authorize_problem(params: dict[str, str]) -> str:
    """Why an authorization request is refused ("": it is not), in Entra's words."""
    if params.get("response_type") != "code":
        return "AADSTS70000: response_type must be code"
    if "openid" not in params.get("scope", "").split():
        return "AADSTS70011: scope must include openid"
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        return "AADSTS9002325: Proof Key for Code Exchange is required (S256)"
    return ""
