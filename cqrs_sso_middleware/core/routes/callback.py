"""Steps 3 to 5 of the CQRS sign-on user guide: the provider sends the browser back.

``GET /callback?code=…&state=…``: the state must name an open login attempt of this
browser and be used for the first time; the code is exchanged (with the PKCE verifier) and
the ID token validated (OIDC Core §3.1.3.7); then the CQRS account is looked up. With an
account (step 3) a session starts and the person goes back to the page first asked for.
Every other ending — "no CQRS account is associated with …" (step 5), "Sign in to NHSmail
failed" (step 4), a cancel, a deployment NHSmail does not accept, an outage — is shown on
a page that survives a reload (``sign_in_result``).

An ``error=…`` answer (RFC 6749 §4.1.2.1) is only believed with the state of an open
attempt of this browser: otherwise anybody could make a link that logs a "misconfigured
deployment" at ERROR, or shows a stranger's page.

The attempt names the provider it was sent to, and the whole callback talks to that one:
its ``iss`` in the response (RFC 9207), its token endpoint, its keys, issuer and client id
for the ID token, its profile's rules. A code from another provider is never redeemed with
this one, nor its token checked with this one's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

from .. import replies
from ..accounts import AccountCheck, LookupProblem
from ..context import RequestContext
from ..errors import ProviderError, ProviderMisconfigured, TokenRejected
from ..identity import Identity, User, email_domain_allowed, has_control_characters, session_ref
from ..oidc.client import RelyingParty, TokenAnswer
from ..oidc.provider_errors import answer_from_query
from ..oidc.providers import Providers
from ..oidc.tokens import auth_time_of
from ..protocol import EffectResult, Flow, HttpCall, Outcome, Redirect, StoreEffect
from ..security.cookies import CookiePolicy
from ..sessions.attempts import AttemptCookies, LoginAttempt
from ..sessions.keeper import SessionParts
from ..sessions.session import Session
from .sign_in_result import ResultKind, SignInResult, SignInResults

_CALLBACK_PARAMS = ("state", "code", "error", "iss")
# Refusals that have a page of their own: a fresh sign-in the token could not prove.
_ENDINGS: dict[str, ResultKind] = {"missing_auth_time": "no_auth_time", "auth_time_too_old": "not_fresh"}


@dataclass(eq=False)
class Callback:
    """``GET /callback``."""

    allowed_domains: tuple[str, ...]
    providers: Providers
    attempts: AttemptCookies
    policy: CookiePolicy
    sessions: SessionParts
    accounts: AccountCheck
    results: SignInResults

    def at(self, provider: str) -> Callable[[RequestContext], Flow]:
        """The callback of ``provider``: only its own attempts are finished there."""

        def callback(ctx: RequestContext) -> Flow:
            return self(ctx, provider)

        return callback

    def __call__(self, ctx: RequestContext, arrived_at: str = "") -> Flow:
        params = parse_qs(ctx.request.query_string, keep_blank_values=True, max_num_fields=20)
        found = yield from self._attempt(ctx, params, arrived_at)
        if not isinstance(found, tuple):
            return found
        attempt, rp = found
        if "error" in params:
            return self._provider_answered(ctx, rp, params, attempt)
        code = params.get("code", [""])[0]
        if not code:
            ctx.audit("sign_in_failed", reason="missing_code")
            return replies.attempt_invalid()
        try:
            answer = yield from rp.redeem_code(code, attempt, ctx.now)
            fresh_since = attempt.started_at if attempt.fresh_sign_in else 0
            leeway = rp.registration.clock_leeway_seconds
            auth_time = auth_time_of(answer.claims, attempt.max_age, fresh_since, leeway, ctx.now)
        except ProviderMisconfigured as error:
            ctx.audit("provider_misconfigured", step="token", **error.answer.audit_fields())
            return self._ended(ctx, attempt, "misconfigured")
        except ProviderError as error:
            ctx.audit(
                "provider_unavailable", step="token", **self.providers.audit_fields(rp), reason=str(error)
            )
            return self._ended(ctx, attempt, "unavailable")
        except TokenRejected as error:
            ctx.audit("token_rejected", reason=error.reason, **self.providers.audit_fields(rp))
            return self._ended(ctx, attempt, _ENDINGS.get(error.reason, "failed"))
        return (yield from self._accepted(ctx, rp, attempt, answer, auth_time))

    def _attempt(
        self, ctx: RequestContext, params: Mapping[str, list[str]], arrived_at: str
    ) -> Generator[Any, Any, tuple[LoginAttempt, RelyingParty] | Outcome]:
        """The open attempt this response finishes, spent, and the provider it was sent to
        — or the answer when there is none, or the response is not from that provider."""
        # RFC 6749 §3.1: parameters must not be repeated; a repeated one is an attack.
        if any(len(params.get(name, ())) > 1 for name in _CALLBACK_PARAMS):
            ctx.audit("sign_in_failed", reason="repeated_parameter")
            return replies.attempt_invalid()
        state = params.get("state", [""])[0]
        attempt = self.attempts.find(ctx.cookies, state) if state else None
        if attempt is not None:
            ctx.set_cookies.append(self.policy.delete_cookie(self.attempts.cookie_name(state)))
        refusal = yield from self._spend(ctx, state, attempt)
        if refusal is not None or attempt is None:
            ctx.audit("sign_in_failed", reason=refusal or "unknown_state")
            return replies.attempt_invalid()
        rp = self.providers.named(attempt.provider)
        if rp is None or (arrived_at and rp.name != arrived_at):
            # An attempt sent to one provider came back at another's redirect URI (a
            # mix-up), or names a provider no longer configured: its code goes nowhere.
            ctx.audit(
                "sign_in_failed",
                reason="wrong_provider_callback",
                **self.providers.audit_fields(attempt.provider),
            )
            return self._ended(ctx, attempt, "failed")
        try:
            mixed_up = yield from self._from_another_issuer(ctx, rp, params)
        except ProviderError as error:
            ctx.audit(
                "provider_unavailable", step="metadata", **self.providers.audit_fields(rp), reason=str(error)
            )
            return self._ended(ctx, attempt, "unavailable")
        if mixed_up:
            ctx.audit("sign_in_failed", reason=mixed_up, **self.providers.audit_fields(rp))
            return self._ended(ctx, attempt, "failed")
        return attempt, rp

    def _from_another_issuer(
        self, ctx: RequestContext, rp: RelyingParty, params: Mapping[str, list[str]]
    ) -> Generator[HttpCall, EffectResult, str]:
        """RFC 9207 §2.4: an authorization response whose ``iss`` is not the issuer of the
        provider this attempt was sent to comes from another provider (a mix-up): refused
        before its code goes anywhere. A provider that announces it sends ``iss`` must
        send it. ``""`` when the response may be from this provider."""
        issuer = params.get("iss", [""])[0]
        metadata = yield from rp.metadata(ctx.now)  # cached since the attempt began
        if issuer and issuer != metadata.issuer:
            return "issuer_mismatch"
        if not issuer and metadata.sends_iss_in_response:
            return "issuer_missing"
        return ""

    def _accepted(
        self,
        ctx: RequestContext,
        rp: RelyingParty,
        attempt: LoginAttempt,
        answer: TokenAnswer,
        auth_time: int,
    ) -> Flow:
        """A valid ID token: the profile's own rules, then the person and their account."""
        refusal = rp.profile.refusal(answer.claims)
        if refusal is not None:
            # Entra's groups overage (rules on groups cannot be decided), CIS2's assurance
            # level below the one asked for: signing in anyway would decide wrongly.
            ctx.audit(
                "sign_in_failed",
                reason=refusal.reason,
                oid=rp.profile.stable_id(answer.claims) or str(answer.claims.get("sub", "")),
                **self.providers.audit_fields(rp),
            )
            return self._ended(ctx, attempt, refusal.kind)
        identity = rp.profile.identity(answer.claims, answer.userinfo)
        return (yield from self._admit(ctx, identity, attempt, answer.id_token, auth_time))

    def _spend(
        self, ctx: RequestContext, state: str, attempt: LoginAttempt | None
    ) -> Generator[StoreEffect, Any, str | None]:
        """``None`` when this is the first use of a live attempt's state, else why not.

        RFC 6749 §10.12: the state is single use. It is claimed in the store — a process-wide
        one for the cookie store, Redis otherwise — so a callback replayed to another
        process or instance is refused too."""
        if attempt is None:
            return "unknown_state"
        if attempt.expired(ctx.now):
            return "expired_attempt"
        ttl = attempt.expires_at - int(ctx.now)
        first_use = yield from self.sessions.keeper.claim(self.sessions.keeper.state_key(state), ttl)
        return None if first_use else "state_reused"

    def _provider_answered(
        self, ctx: RequestContext, rp: RelyingParty, params: Mapping[str, list[str]], attempt: LoginAttempt
    ) -> Outcome:
        """An error answer from the authorization endpoint, by what it means
        (``oidc.provider_errors`` and the provider's profile). The description is logged
        truncated, never shown."""
        answer = answer_from_query(params, rp.profile.answers)
        meaning = answer.meaning
        if meaning == "cancelled":
            ctx.audit("sign_in_cancelled")
            return self._ended(ctx, attempt, "cancelled")
        if meaning == "misconfigured":
            ctx.audit("provider_misconfigured", step="authorize", **answer.audit_fields())
            return self._ended(ctx, attempt, "misconfigured")
        if meaning == "outage":
            ctx.audit("provider_unavailable", step="authorize", reason=answer.error)
            return self._ended(ctx, attempt, "unavailable")
        ctx.audit("sign_in_failed", reason="provider_error", **answer.audit_fields())
        return self._ended(ctx, attempt, "failed")

    def _ended(self, ctx: RequestContext, attempt: LoginAttempt, kind: ResultKind) -> Outcome:
        result = SignInResult(kind, int(ctx.now), attempt.return_path, provider=attempt.provider)
        return self.results.show(ctx, result)

    def _admit(
        self, ctx: RequestContext, identity: Identity, attempt: LoginAttempt, id_token: str, auth_time: int
    ) -> Flow:
        if not identity.email:
            # Entra sends no email for accounts without a mailbox address, and
            # preferred_username and upn can be absent too: nothing to look an account up by.
            ctx.audit("sign_in_failed", reason="no_email_claim", oid=identity.object_id)
            return self._ended(ctx, attempt, "failed")
        if has_control_characters(identity.email) or has_control_characters(identity.name):
            # The email and name travel on as header values (REMOTE_USER, X-Forwarded-User):
            # a CR/LF there would split an upstream request (RFC 9110 §5.5).
            ctx.audit("sign_in_failed", reason="control_character_in_claim", oid=identity.object_id)
            return self._ended(ctx, attempt, "failed")
        if not email_domain_allowed(identity.email, self.allowed_domains):
            ctx.audit("sign_in_no_account", reason="domain_not_allowed", email=identity.email)
            return self.results.no_account(ctx, identity, attempt.return_path, attempt.provider)
        try:
            account = yield from self.accounts.look_up(ctx, identity)
        except LookupProblem:
            return self._ended(ctx, attempt, "unavailable")
        if account is None:
            ctx.audit(
                "sign_in_no_account", reason="lookup_none", email=identity.email, oid=identity.object_id
            )
            return self.results.no_account(ctx, identity, attempt.return_path, attempt.provider)
        # Server-side stores keep the ID token for RP-initiated logout's id_token_hint.
        kept_token = "" if self.sessions.keeper.stateless else id_token
        user = User(identity, account)
        current = ctx.session
        if (
            attempt.max_age
            and current is not None
            and current.provider == attempt.provider
            and same_person(current.user.identity, identity)
        ):
            # A step-up: the same person proved themselves again. The session keeps its id
            # (its other tabs, "sign out everywhere"), with the new sign-in time.
            moment = int(ctx.now)
            session = replace(
                current, user=user, renewed_at=moment, account_checked_at=moment, auth_time=auth_time
            )
            session = replace(session, id_token=kept_token or current.id_token)
            event = "step_up_succeeded"
        else:
            session = Session.start(
                user, ctx.now, self.sessions.keeper.deployment, kept_token, auth_time, attempt.provider
            )
            event = "sign_in_succeeded"
        yield from self.sessions.writer.write(ctx, session, new=True)
        ctx.audit(
            event,
            email=identity.email,
            oid=identity.object_id,
            session=session_ref(session.session_id),
            **self.providers.audit_fields(attempt.provider),
        )
        return Redirect(attempt.return_path)


def same_person(known: Identity, signed_in: Identity) -> bool:
    """The same account at the same provider: issuer, tenant, object id and subject."""
    return (known.issuer, known.tenant_id, known.object_id, known.subject) == (
        signed_in.issuer,
        signed_in.tenant_id,
        signed_in.object_id,
        signed_in.subject,
    )
