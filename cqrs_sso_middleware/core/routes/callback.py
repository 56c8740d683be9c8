"""Steps 3 to 5 of the CQRS sign-on user guide: the provider sends the browser back.

``GET /callback?code=…&state=…``: the state must name an open login attempt of this
browser and be used for the first time; the code is exchanged (with the PKCE verifier) and
the ID token validated (OIDC Core §3.1.3.7); then the CQRS account is looked up. With an
account (step 3) a session starts and the person goes back to the page first asked for;
without one (step 5) they see "no CQRS account is associated with …"; when the provider
refused (step 4, ``error=…``) they see "Sign in to NHSmail failed".
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from .. import replies
from ..accounts import AccountCheck, LookupProblem
from ..context import RequestContext
from ..errors import ProviderError, TokenRejected
from ..identity import (
    Identity,
    User,
    email_domain_allowed,
    has_control_characters,
    identity_from_claims,
    session_ref,
)
from ..oidc.client import RelyingParty
from ..protocol import Flow, Outcome, Redirect, StoreEffect
from ..security.cookies import CookiePolicy
from ..sessions.attempts import AttemptCookies, LoginAttempt
from ..sessions.keeper import SessionKeeper, SessionWriter
from ..sessions.session import Session

if TYPE_CHECKING:
    from ...settings import Settings

_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PROVIDER_OUTAGE_ERRORS = {"server_error", "temporarily_unavailable"}
_CALLBACK_PARAMS = ("state", "code", "error")


class Callback:
    """``GET /callback``."""

    def __init__(
        self,
        settings: Settings,
        rp: RelyingParty,
        attempts: AttemptCookies,
        policy: CookiePolicy,
        keeper: SessionKeeper,
        writer: SessionWriter,
        accounts: AccountCheck,
    ) -> None:
        self.allowed_domains = settings.lookup.allowed_email_domains
        self.rp = rp
        self.attempts = attempts
        self.policy = policy
        self.keeper = keeper
        self.writer = writer
        self.accounts = accounts

    def __call__(self, ctx: RequestContext) -> Flow:
        params = parse_qs(ctx.request.query_string, keep_blank_values=True, max_num_fields=20)
        # RFC 6749 §3.1: parameters must not be repeated; a repeated one is an attack.
        if any(len(params.get(name, ())) > 1 for name in _CALLBACK_PARAMS):
            ctx.audit("sign_in_failed", reason="repeated_parameter")
            return replies.attempt_invalid()
        state = params.get("state", [""])[0]
        attempt = self.attempts.find(ctx.cookies, state) if state else None
        if attempt is not None:
            ctx.set_cookies.append(self.policy.delete_cookie(self.attempts.cookie_name(state)))
        if "error" in params:
            return self._provider_refused(ctx, params)
        refusal = yield from self._spend(ctx, state, attempt)
        if refusal is not None or attempt is None:
            ctx.audit("sign_in_failed", reason=refusal or "unknown_state")
            return replies.attempt_invalid()
        code = params.get("code", [""])[0]
        if not code:
            ctx.audit("sign_in_failed", reason="missing_code")
            return replies.attempt_invalid()
        try:
            claims, id_token = yield from self.rp.redeem_code(code, attempt, ctx.now)
        except ProviderError as error:
            ctx.audit("provider_unavailable", step="token", reason=str(error))
            return replies.unavailable(ctx)
        except TokenRejected as error:
            ctx.audit("token_rejected", reason=error.reason)
            return replies.sign_in_failed()
        return (yield from self._admit(ctx, identity_from_claims(claims), attempt, id_token))

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
        first_use = yield from self.keeper.claim(self.keeper.state_key(state), ttl)
        return None if first_use else "state_reused"

    def _provider_refused(self, ctx: RequestContext, params: Mapping[str, list[str]]) -> Outcome:
        # Branch on `error` only; error_description is the provider's free text (AADSTS…):
        # logged truncated, never shown.
        error = params["error"][0]
        error = error if _ERROR_CODE.match(error) else "invalid_error_code"
        description = params.get("error_description", [""])[0]
        ctx.audit("sign_in_failed", reason="provider_error", error=error, description=description[:160])
        if error in _PROVIDER_OUTAGE_ERRORS:
            return replies.unavailable(ctx)
        return replies.sign_in_failed()

    def _admit(self, ctx: RequestContext, identity: Identity, attempt: LoginAttempt, id_token: str) -> Flow:
        if not identity.email:
            ctx.audit("sign_in_failed", reason="no_email_claim", oid=identity.object_id)
            return replies.sign_in_failed()
        if has_control_characters(identity.email) or has_control_characters(identity.name):
            # The email and name travel on as header values (REMOTE_USER, X-Forwarded-User):
            # a CR/LF there would split an upstream request (RFC 9110 §5.5).
            ctx.audit("sign_in_failed", reason="control_character_in_claim", oid=identity.object_id)
            return replies.sign_in_failed()
        if not email_domain_allowed(identity.email, self.allowed_domains):
            ctx.audit("sign_in_no_account", reason="domain_not_allowed", email=identity.email)
            return replies.no_account(ctx, identity.email)
        try:
            account = yield from self.accounts.look_up(ctx, identity)
        except LookupProblem:
            return replies.unavailable(ctx)
        if account is None:
            ctx.audit(
                "sign_in_no_account", reason="lookup_none", email=identity.email, oid=identity.object_id
            )
            return replies.no_account(ctx, identity.email)
        # Server-side stores keep the ID token for RP-initiated logout's id_token_hint.
        kept_token = "" if self.keeper.stateless else id_token
        session = Session.start(User(identity, account), ctx.now, self.keeper.deployment, kept_token)
        yield from self.writer.write(ctx, session, new=True)
        ctx.audit(
            "sign_in_succeeded",
            email=identity.email,
            oid=identity.object_id,
            session=session_ref(session.session_id),
        )
        return Redirect(attempt.return_path)
