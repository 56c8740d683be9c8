"""The relying-party side of the authorization code flow, as effect-yielding steps.

* discovery (OIDC Discovery §4) and the JWKS, cached in :class:`ProviderState`;
* the authorization request (OIDC Core §3.1.2.1, RFC 7636 §4.3 PKCE S256);
* the token request (RFC 6749 §4.1.3; client authentication RFC 6749 §2.3.1, or
  ``private_key_jwt`` per RFC 7523 in ``client_auth.py``) and its
  response (OIDC Core §3.1.3.3), then ID token validation (``tokens.py``).

Each step is a generator that yields :class:`HttpCall` effects; the driver performs them.
Nothing here opens a socket.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from joserfc.jwk import KeySet

from ..errors import ConfigError, ProviderError, ProviderMisconfigured, TokenRejected, UnknownSigningKey
from ..protocol import EffectResult, HttpCall, HttpFailure, HttpReply
from ..sessions.attempts import LoginAttempt
from .access_tokens import AccessTokenRules, ApiCaller, check_access_token_claims
from .client_auth import ASSERTION_TYPE, ClientAssertionSigner
from .metadata import ProviderMetadata, discovery_url, parse_provider_metadata
from .provider_errors import STANDARD_ANSWERS, AnswerRules, ProviderAnswer, read_answer
from .registration import ClientRegistration
from .tokens import (
    LOGOUT_TOKEN_ALGORITHMS,
    LogoutRequest,
    SigningKeys,
    TokenExpectations,
    check_logout_claims,
    check_logout_header,
    read_header,
    validate_id_token,
    verify_signature,
)

METADATA_MAX_AGE_SECONDS = 24 * 3600
METADATA_RETRY_SECONDS = 5.0
MAX_PROVIDER_REPLY_BYTES = 1024 * 1024

Step = Generator[HttpCall, EffectResult, Any]
T = TypeVar("T")


@dataclass(slots=True)
class ProviderState:
    """What we know of the provider: metadata and keys, cached, with failure times."""

    metadata: ProviderMetadata | None = None
    metadata_fetched_at: float = 0.0
    metadata_failed_at: float = float("-inf")
    metadata_error: str = ""
    keys: SigningKeys = field(default_factory=SigningKeys)


def _expect_reply(result: EffectResult, what: str) -> HttpReply:
    if isinstance(result, HttpFailure):
        raise ProviderError(f"{what}: {result.reason}")
    if not isinstance(result, HttpReply):
        raise ProviderError(f"{what}: no reply")
    if len(result.body) > MAX_PROVIDER_REPLY_BYTES:
        raise ProviderError(f"{what}: reply too large")
    return result


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """A redeemed code: the validated ID token claims, the raw ID token, and the UserInfo
    claims when the profile completes the claims from there (else ``None``)."""

    claims: dict[str, Any]
    id_token: str
    userinfo: dict[str, Any] | None = None


# OIDC Core §5.5: the claims request parameter, asking for auth_time in the ID token.
AUTH_TIME_ESSENTIAL = json.dumps({"id_token": {"auth_time": {"essential": True}}}, separators=(",", ":"))


class RelyingParty:
    """The OpenID Connect client of one provider (one issuer, one client id), with what its
    profile (``core.profiles``) adds to the protocol."""

    def __init__(
        self,
        registration: ClientRegistration,
        signer: ClientAssertionSigner | None = None,
        state: ProviderState | None = None,
    ) -> None:
        self.registration = registration
        self.name = registration.name
        self.label = registration.label
        self.profile = registration.profile
        self.service = registration.service
        self.redirect_uri = registration.redirect_uri
        self.state = state or ProviderState()
        # private_key_jwt: the key is loaded (and checked) when the runtime is built.
        keyed = registration.token_auth_method == "private_key_jwt"  # noqa: S105 - a method name
        self._assertions = signer if keyed else None
        if keyed and signer is None:
            raise ConfigError(["private_key_file: private_key_jwt needs the key"])

    # -- discovery ----------------------------------------------------------------------

    def metadata(self, now: float) -> Generator[HttpCall, EffectResult, ProviderMetadata]:
        state = self.state
        fresh = now - state.metadata_fetched_at < METADATA_MAX_AGE_SECONDS
        if state.metadata is not None and fresh:
            return state.metadata
        if now - state.metadata_failed_at < METADATA_RETRY_SECONDS:
            if state.metadata is not None:
                return state.metadata  # stale but last good: better than failing
            raise ProviderError(state.metadata_error or "provider metadata unavailable")
        try:
            result = yield HttpCall("GET", discovery_url(self.registration.issuer), "metadata")
            reply = _expect_reply(result, "provider metadata")
            if reply.status != 200:
                raise ProviderError(f"provider metadata: HTTP {reply.status}")
            metadata = parse_provider_metadata(
                reply.body, self.registration.issuer, self.profile.issuer_alias
            )
        except ProviderError as error:
            state.metadata_failed_at, state.metadata_error = now, str(error)
            if state.metadata is not None:
                return state.metadata
            raise
        state.metadata, state.metadata_fetched_at, state.metadata_error = metadata, now, ""
        return metadata

    def _fetch_keys(self, metadata: ProviderMetadata, now: float) -> Step:
        """Fetch and install the JWKS; on failure the last good keys stay and ProviderError
        is raised for the caller to decide whether the old keys are good enough."""
        try:
            result = yield HttpCall("GET", metadata.jwks_uri, "jwks")
            reply = _expect_reply(result, "JWKS")
            if reply.status != 200:
                raise ProviderError(f"JWKS: HTTP {reply.status}")
            self.state.keys.accept(reply.body, now)
        except ProviderError:
            self.state.keys.fetch_failed(now)
            raise

    # -- authorization request -----------------------------------------------------------

    def authorization_url(self, metadata: ProviderMetadata, attempt: LoginAttempt, prompt: str = "") -> str:
        """OIDC Core §3.1.2.1 with PKCE (RFC 7636 §4.3); response_mode defaults to query.
        ``prompt`` is ``login`` or ``select_account`` when the person must be asked again.

        An attempt that needs a fresh sign-in (a step-up, ``shared_devices``) asks for the
        proof the callback checks: ``max_age`` (the rule's, or 0, OIDC Core §3.1.2.1: the
        provider must then return ``auth_time``) and ``auth_time`` as an essential claim of
        the ID token (§5.5). Entra documents ``prompt=login`` and not ``max_age``, and sends
        ``auth_time`` only as an optional claim of the registration: all three are sent."""
        fresh = attempt.fresh_sign_in
        query = urlencode(
            {
                **self.registration.extra_authorize_params,
                **self.profile.authorization_params(),
                "client_id": self.registration.client_id,
                "response_type": "code",
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.registration.scopes),
                "state": attempt.state,
                "nonce": attempt.nonce,
                "code_challenge": attempt.code_challenge,
                "code_challenge_method": "S256",
                **({"prompt": prompt} if prompt else {}),
                **({"max_age": str(attempt.max_age)} if fresh else {}),
                **({"claims": AUTH_TIME_ESSENTIAL} if fresh else {}),
            },
            quote_via=quote,
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}"

    # -- token request and ID token ------------------------------------------------------

    def _token_call(self, metadata: ProviderMetadata, code: str, verifier: str, now: float) -> HttpCall:
        client = self.registration
        form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri),
            ("code_verifier", verifier),
        ]
        headers = [("Accept", "application/json")]
        if self._assertions is not None:
            assertion = self._assertions.assertion(client.client_id, metadata.token_endpoint, now)
            form += [
                ("client_id", client.client_id),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
            ]
        elif client.token_auth_method == "client_secret_post":  # noqa: S105 - a method name
            form += [("client_id", client.client_id), ("client_secret", client.client_secret)]
        else:
            # RFC 6749 §2.3.1: both parts form-urlencoded before base64, a detail often missed.
            user = quote(client.client_id, safe="")
            password = quote(client.client_secret, safe="")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers.append(("Authorization", f"Basic {token}"))
        return HttpCall("POST", metadata.token_endpoint, "token", tuple(form), tuple(headers))

    def credential_probe(self, metadata: ProviderMetadata, now: float) -> HttpCall:
        """A token request that proves the client credentials without a person: the real
        client authentication (secret or signed assertion) with an authorization code that
        cannot be valid. RFC 6749 §5.2 orders the answer: a provider authenticates the
        client first (``invalid_client``, Entra's AADSTS7000215/700016/700027…), and only
        then finds the code bad (``invalid_grant``)."""
        probe = LoginAttempt.start("/", now)
        return self._token_call(
            metadata, f"cqrs-sso-credential-check.{probe.state}", probe.code_verifier, now
        )

    def redeem_code(
        self, code: str, attempt: LoginAttempt, now: float
    ) -> Generator[HttpCall, EffectResult, TokenAnswer]:
        """Exchange the code; return the validated ID token claims, the raw ID token and,
        when the profile asks, the UserInfo claims.

        Raises ``ProviderError`` for faults on the provider's side (→ 503) and
        ``TokenRejected`` when the provider answered but the answer must not be trusted.
        """
        metadata = yield from self.metadata(now)
        result = yield self._token_call(metadata, code, attempt.code_verifier, now)
        reply = _expect_reply(result, "token endpoint")
        id_token, access_token = _tokens_from(reply, self.profile.answers)
        expect = self._expectations(metadata, attempt.nonce, metadata.signing_algorithms)
        claims = yield from self._verified(
            id_token, metadata, now, lambda keys: validate_id_token(id_token, keys, expect, now)
        )
        userinfo = None
        if self.profile.uses_userinfo:
            userinfo = yield from self._userinfo(metadata, access_token, claims)
        return TokenAnswer(claims, id_token, userinfo)

    def _userinfo(
        self, metadata: ProviderMetadata, access_token: str, claims: dict[str, Any]
    ) -> Generator[HttpCall, EffectResult, dict[str, Any]]:
        """OIDC Core §5.3: the UserInfo claims, as JSON (a signed UserInfo answer is not
        asked for). §5.3.4: its ``sub`` must be the ID token's, or none of it is used."""
        if not metadata.userinfo_endpoint:
            raise ProviderError("provider metadata has no userinfo_endpoint")
        if not access_token:
            raise ProviderError("token endpoint: reply has no access_token for UserInfo")
        headers = (("Accept", "application/json"), ("Authorization", f"Bearer {access_token}"))
        result = yield HttpCall("GET", metadata.userinfo_endpoint, "userinfo", None, headers)
        reply = _expect_reply(result, "userinfo")
        if reply.status != 200:
            raise ProviderError(f"userinfo: HTTP {reply.status}")
        try:
            document = json.loads(reply.body)
        except (ValueError, UnicodeDecodeError) as error:
            raise ProviderError("userinfo: not JSON") from error
        if not isinstance(document, dict):
            raise ProviderError("userinfo: not a JSON object")
        if document.get("sub") != claims.get("sub"):
            raise TokenRejected("userinfo_sub_mismatch")
        return document

    def verify_logout_token(self, token: str, now: float) -> Generator[HttpCall, EffectResult, LogoutRequest]:
        """Back-Channel Logout 1.0 §2.6: the same keys and refresh rule as ID tokens, RS256."""
        metadata = yield from self.metadata(now)
        expect = self._expectations(metadata, "", LOGOUT_TOKEN_ALGORITHMS)

        def check(keys: KeySet) -> LogoutRequest:
            check_logout_header(read_header(token))
            claims = verify_signature(token, keys, expect.algorithms)
            return check_logout_claims(claims, expect, now)

        return (yield from self._verified(token, metadata, now, check))

    def verify_access_token(
        self, token: str, audiences: frozenset[str], scopes: frozenset[str], now: float
    ) -> Generator[HttpCall, EffectResult, ApiCaller]:
        """An API client's bearer token (``access_tokens``), with the keys and key refresh
        of ID tokens: the provider signs both with the keys its metadata names."""
        metadata = yield from self.metadata(now)
        tenant = self.profile.tenant_of(metadata.issuer)
        leeway = self.registration.clock_leeway_seconds
        rules = AccessTokenRules(metadata.issuer, audiences, tenant, scopes, leeway)

        def check(keys: KeySet) -> ApiCaller:
            claims = verify_signature(token, keys, metadata.signing_algorithms)
            return check_access_token_claims(claims, rules, now)

        return (yield from self._verified(token, metadata, now, check))

    def _expectations(
        self, metadata: ProviderMetadata, nonce: str, algorithms: Collection[str]
    ) -> TokenExpectations:
        return TokenExpectations(
            issuer=metadata.issuer,
            client_id=self.registration.client_id,
            nonce=nonce,
            algorithms=algorithms,
            leeway_seconds=self.registration.clock_leeway_seconds,
        )

    def _verified(
        self, token: str, metadata: ProviderMetadata, now: float, check: Callable[[KeySet], T]
    ) -> Generator[HttpCall, EffectResult, T]:
        """``check(keys)`` with the provider's keys: fetched when missing or a day old, and
        refreshed once on an unknown ``kid`` under the rate limit (``tokens.SigningKeys``)."""
        if self.state.keys.should_fetch(now):
            try:
                yield from self._fetch_keys(metadata, now)
            except ProviderError:
                if self.state.keys.keys is None:
                    raise
                # A failed routine refresh keeps the last good keys (Entra rolls keys with
                # notice: old and new are published together).
        keys = self.state.keys.keys
        if keys is None:
            raise ProviderError("JWKS unavailable")
        try:
            return check(keys)
        except UnknownSigningKey:
            if not self.state.keys.should_fetch(now, unknown_kid=True):
                raise
        # The provider may have rolled its keys. If it cannot be asked now, this is an
        # outage (503, try again), not a forged token.
        yield from self._fetch_keys(metadata, now)
        refreshed: KeySet | None = self.state.keys.keys
        assert refreshed is not None
        return check(refreshed)


@dataclass(frozen=True, slots=True)
class CredentialVerdict:
    """What a credential probe's answer proves: ``accepted``, else the provider's answer."""

    accepted: bool
    answer: ProviderAnswer | None = None
    detail: str = ""


def credential_verdict(reply: HttpReply, rules: AnswerRules = STANDARD_ANSWERS) -> CredentialVerdict:
    """``invalid_grant`` (the code, not the client, was refused) proves the credentials;
    any other answer is the reason they could not be proven, in the provider's words."""
    try:
        document = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("error"), str):
        return CredentialVerdict(False, detail=f"HTTP {reply.status} without an OAuth error answer")
    answer = read_answer(
        document["error"], document.get("error_description"), codes=document.get("error_codes"), rules=rules
    )
    return CredentialVerdict(answer.error == "invalid_grant", answer)


def _tokens_from(reply: HttpReply, rules: AnswerRules) -> tuple[str, str]:
    """OIDC Core §3.1.3.3: a 200 JSON object with an ``id_token`` string (and the access
    token, for UserInfo). An error answer
    (RFC 6749 §5.2) means a misconfigured deployment, an outage, or a failed sign-in."""
    try:
        document = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ProviderError(f"token endpoint: HTTP {reply.status}, not JSON") from error
    if not isinstance(document, dict):
        raise ProviderError(f"token endpoint: HTTP {reply.status}, not a JSON object")
    if reply.status != 200 and isinstance(document.get("error"), str):
        answer = read_answer(
            document["error"],
            document.get("error_description"),
            codes=document.get("error_codes"),
            rules=rules,
        )
        if answer.meaning == "misconfigured":
            raise ProviderMisconfigured(answer)
        if reply.status == 400 and answer.meaning == "refused":
            # invalid_grant: the code was used, expired or not ours — the person's sign-in
            # failed; it is not an outage.
            raise TokenRejected("token_error", answer.error)
    if reply.status != 200:
        raise ProviderError(f"token endpoint: HTTP {reply.status}")
    id_token = document.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise ProviderError("token endpoint: reply has no id_token")
    access_token = document.get("access_token")
    return id_token, access_token if isinstance(access_token, str) else ""
