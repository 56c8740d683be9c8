"""Access tokens for an API, as Entra issues them (v2.0): the client credentials grant for
applications (RFC 6749 §4.4, ``scope=<application ID URI>/.default``, the app roles the
API's registration assigned to the client), and tokens for a person, which tests take
directly (``access_token_for``) where a real client would use the code flow.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.responses import JSONResponse, Response

from .model import DemoClient, DemoUser, b64url

ACCESS_TOKEN_LIFETIME_SECONDS = 3600


class TokenSigner(Protocol):
    """What of the provider its API tokens need."""

    signing_key: RSAKey
    tenant_id: str
    clock: Callable[[], float]
    issued_secrets: list[str]

    @property
    def issuer(self) -> str: ...


class ApiTokens:
    """The provider's access tokens for APIs (``provider.api``): it signs them with the
    provider's current key, as Entra signs ID and access tokens with the same keys."""

    def __init__(self, provider: TokenSigner) -> None:
        self.provider = provider
        # audience (application ID URI) -> client id -> the app roles assigned to that client
        self.app_roles: dict[str, dict[str, tuple[str, ...]]] = {}

    def access_token_for(
        self, user: DemoUser | None, client_id: str, audience: str, scope: str = "", **overrides: Any
    ) -> str:
        """An access token for ``audience``: a person's (``scp``) when ``user`` is given,
        else an application's (``roles``, ``idtyp=app``)."""
        provider = self.provider
        now = int(provider.clock())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": provider.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_TOKEN_LIFETIME_SECONDS,
            "azp": client_id,
            "azpacr": "1",
            "tid": provider.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if user is not None:
            claims |= {
                "oid": user.object_id,
                "sub": b64url(f"{user.object_id}:{audience}".encode()),
                "name": user.name,
                "preferred_username": user.email,
                "scp": scope,
            }
            if user.roles:
                claims["roles"] = list(user.roles)
        else:
            service_principal = b64url(f"sp:{client_id}".encode())
            claims |= {"oid": service_principal, "sub": service_principal, "idtyp": "app"}
            roles = self.app_roles.get(audience, {}).get(client_id, ())
            if roles:
                claims["roles"] = list(roles)
        claims.update(overrides)
        header = {"alg": "RS256", "kid": provider.signing_key.kid, "typ": "JWT"}
        token = jwt.encode(header, claims, provider.signing_key, algorithms=["RS256"])
        provider.issued_secrets.append(token)
        return token

    def client_credentials(self, client: DemoClient, form: dict[str, str]) -> Response:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        scope = form.get("scope", "")
        audience = scope.removesuffix("/.default")
        if not scope.endswith("/.default") or audience not in self.app_roles:
            return JSONResponse(
                {
                    "error": "invalid_scope",
                    "error_description": "AADSTS1002012: scope must be <resource>/.default",
                },
                400,
                headers=headers,
            )
        token = self.access_token_for(None, client.client_id, audience)
        body = {"token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS, "access_token": token}
        return JSONResponse(body, headers=headers)
