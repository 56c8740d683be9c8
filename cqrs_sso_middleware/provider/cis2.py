"""A second demo provider shaped like NHS CIS2 (NHS Care Identity Service 2), for the demo
and tests ONLY: the sign-in of a smartcard or NHSmail-as-AAL2 holder, as a relying party
sees it.

What differs from the NHSmail-like provider (``app.py``), as CIS2 documents its OpenID
Connect interface:

* its own issuer and endpoint layout (``…/authorize``, ``…/access_token``,
  ``…/userinfo``, ``…/connect/jwk_uri``, ``…/connect/endSession``);
* the ID token carries ``acr`` (the assurance level reached: ``AAL3_ANY`` for a smartcard
  unless a test says otherwise), ``amr``, ``auth_time`` and ``selected_roleid``; ``sub`` is
  the person's UUID; the name and email come from UserInfo;
* UserInfo (OIDC Core §5.3) answers ``nhsid_nrbac_roles`` and ``nhsid_user_orgs`` for the
  access token's person;
* the authorization response carries ``iss`` (RFC 9207), as metadata announces.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .app import NHSmailLikeProvider
from .model import ID_TOKEN_LIFETIME_SECONDS, DemoUser, discovery_document

CIS2_SCOPES = [
    "openid",
    "profile",
    "email",
    "nhsperson",
    "nationalrbacaccess",
    "associatedorgs",
    "selectedrole",
]
ACR_VALUES = ["AAL3_ANY", "AAL2_OR_AAL3_ANY", "AAL2_ANY", "AAL1_USERPASS"]


class Cis2LikeProvider(NHSmailLikeProvider):
    """``NHSmailLikeProvider`` with CIS2's layout, claims and UserInfo. ``tenant_id`` is the
    first path segment of its issuer (``/<tenant_id>/oauth2``)."""

    service = "NHS Care Identity"
    achieved_acr = "AAL3_ANY"  # what the person's sign-in reached (a smartcard)
    issuer_path: ClassVar[str] = "/oauth2"
    endpoint_paths: ClassVar[dict[str, str]] = {
        "jwks": "/oauth2/connect/jwk_uri",
        "authorize": "/oauth2/authorize",
        "token": "/oauth2/access_token",
        "userinfo": "/oauth2/userinfo",
        "logout": "/oauth2/connect/endSession",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("sends_auth_time", True)  # CIS2 always sends auth_time
        super().__init__(*args, **kwargs)
        self.userinfo_overrides: dict[str, Any] = {}  # tests: a UserInfo answer gone wrong

    async def discovery(self, request: Request) -> Response:
        if self.faults.metadata_status is not None:
            return Response("fault", status_code=self.faults.metadata_status)
        if not self._right_tenant(request):
            return JSONResponse({"error": "invalid_realm"}, status_code=400)
        endpoints = {name: self._endpoint(name) for name in self.endpoint_paths}
        document = discovery_document(self.issuer, endpoints, self._endpoint("jwks"))
        document.pop("tenant_region_scope", None)
        document.update(
            userinfo_endpoint=self._endpoint("userinfo"),
            scopes_supported=CIS2_SCOPES,
            acr_values_supported=ACR_VALUES,
            subject_types_supported=["public"],
            authorization_response_iss_parameter_supported=True,
            backchannel_logout_supported=True,
        )
        return JSONResponse(document)

    def response_params(self) -> dict[str, str]:
        return {"iss": self.issuer}  # RFC 9207 §2

    def token_claims(self, user: DemoUser, client_id: str) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME_SECONDS,
            "sub": user.object_id,
            "acr": self.achieved_acr,
            "amr": ["SCARD"] if self.achieved_acr == "AAL3_ANY" else ["PWD"],
            "id_assurance_level": "3",
            "authentication_assurance_level": self.achieved_acr[3],
        }
        if user.nrbac_roles:
            claims["selected_roleid"] = user.nrbac_roles[0]["person_roleid"]
        return claims

    async def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = next(
            (g for t, g in self.access_grants.items() if hmac.compare_digest(t.encode(), token.encode())),
            None,
        )
        if scheme.lower() != "bearer" or grant is None:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return JSONResponse({"error": "invalid_token"}, 401, headers=challenge)
        user = grant.user
        given, _, family = user.name.partition(" ")
        roles = [{k: v for k, v in role.items() if k != "org_name"} for role in user.nrbac_roles]
        orgs = {r["org_code"]: r.get("org_name", "") for r in user.nrbac_roles}
        return JSONResponse(
            {
                "sub": user.object_id,
                "uid": user.object_id,
                "nhsid_useruid": user.object_id,
                "name": user.name,
                "given_name": given,
                "family_name": family,
                "email": user.email,
                "selected_roleid": user.nrbac_roles[0]["person_roleid"] if user.nrbac_roles else "",
                "nhsid_nrbac_roles": roles,
                "nhsid_user_orgs": [{"org_code": c, "org_name": n} for c, n in orgs.items()],
                **self.userinfo_overrides,
            }
        )
