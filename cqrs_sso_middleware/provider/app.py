"""A small OpenID provider that looks like NHSmail (Entra ID v2.0), for demos and tests ONLY.

It plays the other side of the protocol, so it deliberately shares no code with the
middleware (a bug shared by both sides would hide). It implements the authorization code
flow with PKCE S256 required (RFC 7636), ``client_secret_basic`` and ``client_secret_post``
(RFC 6749 §2.3.1), single-use 10-minute codes (RFC 6749 §4.1.2), RS256 ID tokens with
Entra-shaped claims (``oid``, ``tid``, pairwise ``sub``, ``preferred_username``, ``ver``),
Entra's URL layout (``/<tenant>/v2.0``, ``/<tenant>/discovery/v2.0/keys``,
``/<tenant>/oauth2/v2.0/{authorize,token,logout}``), key rotation, and Entra's single
sign-on session with its logout (``logout.py``: end_session, front-channel iframes, and
back-channel logout tokens for tests).

It is not NHSmail, holds fake users with known passwords, and says so on every page.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .api_tokens import ApiTokens
from .client_auth import ClientAuthentication
from .keys import SigningKeys
from .logout import SSO_COOKIE, SingleSignOnSession, frontchannel_url, logout_token, signed_out_page
from .model import (
    CODE_LIFETIME_SECONDS,
    ENDPOINT_METHODS,
    ID_TOKEN_LIFETIME_SECONDS,
    CodeGrant,
    DemoClient,
    DemoUser,
    ProviderFaults,
    authorize_problem,
    b64url,
    discovery_document,
    read_form,
)
from .pages import DEMO_NOTICE, WRONG_CREDENTIALS, login_page, page

log = logging.getLogger("cqrs_sso.provider")


class NHSmailLikeProvider(SigningKeys):
    """The provider's state and its Starlette app (``.app``)."""

    service = "NHSmail account"  # what its sign-in page asks for
    # Where things are under ``<base_url>/<tenant_id>``: the issuer, and each endpoint (the
    # name of the method that answers it: its URL in the discovery document).
    issuer_path: ClassVar[str] = "/v2.0"
    endpoint_paths: ClassVar[dict[str, str]] = {
        "jwks": "/discovery/v2.0/keys",
        "authorize": "/oauth2/v2.0/authorize",
        "token": "/oauth2/v2.0/token",
        "logout": "/oauth2/v2.0/logout",
    }

    def __init__(
        self,
        base_url: str,
        tenant_id: str,
        users: Iterable[DemoUser],
        clients: Iterable[DemoClient],
        *,
        clock: Callable[[], float] = time.time,
        single_sign_on: bool = True,
        sends_auth_time: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.users = {u.email.lower(): u for u in users}
        self.clients = {c.client_id: c for c in clients}
        self.clock = clock
        self.faults = ProviderFaults()
        self._pairwise_salt = secrets.token_bytes(16)
        self._codes: dict[str, CodeGrant] = {}
        self.access_grants: dict[str, CodeGrant] = {}  # what each access token was issued for
        # Like Entra: a browser that signed in once is let through again without a password
        # until it signs out here. Tests that sign in many times in one browser turn it off.
        self.single_sign_on = single_sign_on
        self.sso_sessions: dict[str, SingleSignOnSession] = {}
        # Entra's front-channel request carries sid only; True sends iss too (the spec's form).
        self.frontchannel_sends_iss = False
        # Entra sends auth_time only when the registration asks for it (an optional claim),
        # whatever the request's max_age or claims parameter says.
        self.sends_auth_time = sends_auth_time
        # Every code and token handed out, so tests can prove none of them reaches a log.
        self.issued_secrets: list[str] = []
        self.api = ApiTokens(self)  # access tokens for APIs (client credentials, tests)
        self.client_auth = ClientAuthentication(self.clients, self._endpoint("token"), clock)
        self.signing_key = self.new_key()
        self.published_keys: list[RSAKey] = [self.signing_key]
        self.app = Starlette(routes=self._routes())
        log.warning("cqrs-sso provider: %s (issuer %s)", DEMO_NOTICE, self.issuer)

    @property
    def cookie_path(self) -> str:
        return f"/{self.tenant_id}/"

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/{self.tenant_id}{self.issuer_path}"

    def _endpoint(self, name: str) -> str:
        return f"{self.base_url}/{self.tenant_id}{self.endpoint_paths[name]}"

    # -- routes -----------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        discovery = "/{tenant}" + self.issuer_path + "/.well-known/openid-configuration"
        return [
            Route("/", self.home),
            Route(discovery, self.discovery),
            *(
                Route("/{tenant}" + path, getattr(self, name), methods=ENDPOINT_METHODS[name])
                for name, path in self.endpoint_paths.items()
            ),
        ]

    def _right_tenant(self, request: Request) -> bool:
        return bool(request.path_params["tenant"] == self.tenant_id)

    async def home(self, request: Request) -> Response:
        return HTMLResponse(page("NHSmail-like provider", f"<p>Issuer: {html.escape(self.issuer)}</p>"))

    async def discovery(self, request: Request) -> Response:
        if self.faults.metadata_status is not None:
            return Response("fault", status_code=self.faults.metadata_status)
        if not self._right_tenant(request):
            return JSONResponse({"error": "invalid_tenant"}, status_code=400)
        endpoints = {name: self._endpoint(name) for name in self.endpoint_paths}
        return JSONResponse(discovery_document(self.issuer, endpoints, self._endpoint("jwks")))

    async def jwks(self, request: Request) -> Response:
        if self.faults.jwks_status is not None:
            return Response("fault", status_code=self.faults.jwks_status)
        keys = [key.as_dict(private=False) for key in self.published_keys]
        return JSONResponse({"keys": keys})

    # -- authorize ----------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params = await read_form(request)
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        # RFC 6749 §4.1.2.1: with a bad client or redirect URI, never redirect.
        if not self._right_tenant(request) or client is None or redirect_uri not in client.redirect_uris:
            # Entra's AADSTS50011 / AADSTS700016 pages: never redirected. Logged, so that a
            # deployer whose callback is not registered sees which one was asked for.
            log.warning(
                "refused sign-in: client %r, redirect_uri %r is not registered (registered: %s)",
                params.get("client_id", ""),
                redirect_uri,
                ", ".join(client.redirect_uris) if client else "no such client",
            )
            return HTMLResponse(
                page("Sign in error", "<p>Unknown application or reply address (AADSTS50011).</p>"), 400
            )
        state = params.get("state")
        problem = authorize_problem(params)
        if problem:
            return self._redirect_error(redirect_uri, state, "invalid_request", problem)
        if request.method == "GET":
            sso = self._sso_session(request)
            # prompt=login and prompt=select_account always ask (OIDC Core §3.1.2.1).
            if (
                sso is not None
                and self.single_sign_on
                and params.get("prompt") not in ("login", "select_account")
            ):
                user = self.users.get(sso.email)
                if user is not None:  # Entra's silent single sign-on: no password asked
                    return self._issue_code(client, redirect_uri, user, params, state, sso)
            return HTMLResponse(login_page(params, error="", service=self.service))
        if params.get("action") == "cancel":
            # What Entra sends when the person cancels: access_denied with error_subcode=cancel
            # (MSAL recognises a cancel by the subcode).
            return self._redirect_error(
                redirect_uri, state, "access_denied", "The user cancelled the sign in.", subcode="cancel"
            )
        user = self.users.get(params.get("login", "").strip().lower())
        if user is None or not hmac.compare_digest(user.password.encode(), params.get("passwd", "").encode()):
            return HTMLResponse(login_page(params, error=WRONG_CREDENTIALS, service=self.service))
        sso = SingleSignOnSession(user.email.lower(), started_at=self.clock())
        cookie = secrets.token_urlsafe(24)
        self.sso_sessions[cookie] = sso
        response = self._issue_code(client, redirect_uri, user, params, state, sso)
        # Scoped to the tenant's endpoints: on loopback the demo app shares the host (cookies
        # ignore ports), and the app must never be sent the provider's session.
        response.set_cookie(SSO_COOKIE, cookie, httponly=True, samesite="lax", path=self.cookie_path)
        return response

    def _sso_session(self, request: Request) -> SingleSignOnSession | None:
        return self.sso_sessions.get(request.cookies.get(SSO_COOKIE, ""))

    def _issue_code(
        self,
        client: DemoClient,
        redirect_uri: str,
        user: DemoUser,
        params: dict[str, str],
        state: str | None,
        sso: SingleSignOnSession,
    ) -> Response:
        code = secrets.token_urlsafe(32)
        self.issued_secrets.append(code)
        sso.clients.add(client.client_id)
        self._codes[code] = CodeGrant(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            user=user,
            nonce=params.get("nonce"),
            code_challenge=params["code_challenge"],
            scope=params.get("scope", ""),
            expires_at=self.clock() + CODE_LIFETIME_SECONDS,
            sid=sso.sid,
            auth_time=int(sso.started_at),
        )
        query = {"code": code, **({"state": state} if state else {}), **self.response_params()}
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)

    def response_params(self) -> dict[str, str]:
        """What the authorization response adds (Entra: nothing; RFC 9207's ``iss`` elsewhere)."""
        return {}

    @staticmethod
    def _redirect_error(
        redirect_uri: str, state: str | None, error: str, description: str, subcode: str = ""
    ) -> Response:
        query = {"error": error, "error_description": description}
        if subcode:
            query["error_subcode"] = subcode
        if state:
            query["state"] = state
        return RedirectResponse(f"{redirect_uri}?{urlencode(query)}", status_code=302)

    # -- token --------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        faults = self.faults
        if faults.token_delay_seconds:
            import anyio

            await anyio.sleep(faults.token_delay_seconds)
        if faults.token_status is not None:
            return Response(faults.token_body or b"", status_code=faults.token_status)
        form = await read_form(request)
        client = self.client_auth.authenticate(request.headers.get("authorization", ""), form)
        if isinstance(client, Response):
            return client
        if form.get("grant_type") == "client_credentials":
            return self.api.client_credentials(client, form)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, 400, headers=headers)
        grant = self._codes.pop(form.get("code", ""), None)  # single use, even when it fails
        if grant is None or grant.expires_at <= self.clock():
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "AADSTS70008"}, 400, headers=headers
            )
        verifier = form.get("code_verifier", "")
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        if (
            grant.client_id != client.client_id
            or grant.redirect_uri != form.get("redirect_uri")
            or not hmac.compare_digest(challenge, grant.code_challenge)
        ):
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "AADSTS50148"}, 400, headers=headers
            )
        if faults.token_body is not None:
            return Response(faults.token_body, media_type="application/json", headers=headers)
        access_token = secrets.token_urlsafe(32)
        self.issued_secrets.append(access_token)
        self.access_grants[access_token] = grant
        return JSONResponse(
            {
                "token_type": "Bearer",
                "scope": grant.scope,
                "expires_in": ID_TOKEN_LIFETIME_SECONDS,
                "access_token": access_token,
                "id_token": self.id_token_for(
                    grant.user,
                    client.client_id,
                    grant.nonce,
                    sid=grant.sid,
                    **({"auth_time": grant.auth_time} if self.sends_auth_time else {}),
                ),
            },
            headers=headers,
        )

    def subject_for(self, user: DemoUser, client_id: str) -> str:
        """Entra's ``sub`` is pairwise: different for every application."""
        pairwise = hmac.new(self._pairwise_salt, f"{client_id}:{user.object_id}".encode(), hashlib.sha256)
        return b64url(pairwise.digest())

    def id_token_for(
        self, user: DemoUser, client_id: str, nonce: str | None, sid: str = "", **overrides: Any
    ) -> str:
        """An ID token signed with the current key (``token_claims``), with ``nonce`` and
        ``sid``, the test's overrides and the faults."""
        claims = self.token_claims(user, client_id)
        if nonce:
            claims["nonce"] = nonce
        if sid:
            claims["sid"] = sid
        claims.update(self.faults.claim_overrides)
        claims.update(overrides)
        header = {"alg": "RS256", "kid": self.signing_key.kid, "typ": "JWT"}
        token = jwt.encode(header, claims, self.signing_key, algorithms=["RS256"])
        self.issued_secrets.append(token)
        rewrite = self.faults.id_token_rewrite
        return rewrite(token) if rewrite is not None else token

    def token_claims(self, user: DemoUser, client_id: str) -> dict[str, Any]:
        """Entra-v2.0-shaped claims, with the optional ``login_hint`` an NHSmail
        registration can ask for."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME_SECONDS,
            "name": user.name,
            "oid": user.object_id,
            "preferred_username": user.email,
            "sub": self.subject_for(user, client_id),
            "login_hint": b64url(f"{user.object_id}@{self.tenant_id}".encode()),
            "tid": self.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if user.include_email_claim:
            claims["email"] = user.email
        if user.company_name:
            claims["companyName"] = user.company_name
        if user.roles:
            claims["roles"] = list(user.roles)  # Entra app roles assigned to the user
        return claims

    # -- logout -------------------------------------------------------------------------------

    async def logout(self, request: Request) -> Response:
        """end_session_endpoint (RP-Initiated Logout 1.0 §2–3): ends the single sign-on
        session, renders the front-channel iframes, returns to a *registered*
        post_logout_redirect_uri of the named client, and nowhere else."""
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params.update(await read_form(request))
        client = self.clients.get(params.get("client_id", ""))
        target = params.get("post_logout_redirect_uri", "")
        registered = client is not None and target in client.post_logout_redirect_uris
        cookie = request.cookies.get(SSO_COOKIE, "")
        sso = self.sso_sessions.pop(cookie, None)
        frames = []
        if sso is not None:
            for client_id in sorted(sso.clients):
                signed_in = self.clients.get(client_id)
                if signed_in is not None and signed_in.frontchannel_logout_uri:
                    issuer = self.issuer if self.frontchannel_sends_iss else None
                    frames.append(frontchannel_url(signed_in.frontchannel_logout_uri, sso.sid, issuer))
        if not frames and registered:
            response: Response = RedirectResponse(target, status_code=302)
        else:
            response = HTMLResponse(signed_out_page(frames, target if registered else None, DEMO_NOTICE))
        response.delete_cookie(SSO_COOKIE, path=self.cookie_path)
        return response

    def send_backchannel_logout(
        self, client_id: str, *, sid: str | None = None, token: str | None = None
    ) -> int:
        """POST a logout token to the client's back-channel URL (tests; Entra sends none).
        With ``sid`` it names that provider session; ``token`` sends a forged one."""
        import httpx

        client = self.clients[client_id]
        if token is None:
            token = logout_token(self.signing_key, self.issuer, client_id, sid=sid, now=self.clock())
        reply = httpx.post(client.backchannel_logout_uri, data={"logout_token": token}, timeout=10)
        return reply.status_code
