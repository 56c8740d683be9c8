"""Signing out of CQRS, and of NHSmail after it.

* ``GET /sign_out``: a confirmation page (a link alone must never sign anybody out).
* ``POST /sign_out`` (CSRF-protected; a protected app's own Sign out button, posted from
  our origin, needs no token — ``CsrfGuard.checked_form``): ends the session where it lives (a server-side
  store deletes it, so a copied cookie stops working everywhere; ``everywhere=1`` ends all
  of this person's sessions), then — ``sign_out_at_provider``, and the provider announces an
  ``end_session_endpoint`` — sends the browser there (OpenID Connect RP-Initiated Logout 1.0
  §2), so that the next person at a shared PC must type a password again.
* ``GET /signed_out``: where the provider sends the browser back
  (``post_logout_redirect_uri``). It takes no parameters and changes nothing, so it can
  redirect nowhere and sign nobody out. It says "you have also signed out of your NHSmail
  account" only when this browser's sign-out was sent on to NHSmail a moment ago.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .. import replies
from ..context import RequestContext
from ..errors import ProviderError
from ..identity import session_ref
from ..oidc.providers import Providers
from ..protocol import Flow, HttpCall, Outcome, Page, Redirect, StoreEffect
from ..security.csrf import CsrfGuard
from ..sessions.keeper import SessionParts
from ..sessions.session import Session

# How long after sending the browser to NHSmail's sign-out /signed_out still says it ended
# there: the round trip takes seconds; a person who gave up at NHSmail is not told later.
PROVIDER_SIGN_OUT_SECONDS = 300


@dataclass(eq=False)
class SignOut:
    """``GET`` and ``POST /sign_out``, ``GET /signed_out``."""

    # Register this with each provider as the post-logout redirect URI.
    signed_out_url: str
    providers: Providers
    csrf: CsrfGuard
    sessions: SessionParts

    def page(self, ctx: RequestContext) -> Outcome:
        if ctx.session is None:
            return Page("signed_out.html")
        return Page(
            "sign_out.html",
            200,
            {
                "csrf_token": self.csrf.token(ctx),
                "user": ctx.session.user,
                "can_sign_out_everywhere": not self.sessions.keeper.stateless,
            },
        )

    def signed_out(self, ctx: RequestContext) -> Outcome:
        # Changes nothing: POST /sign_out already ended the session. A GET that cleared the
        # cookie would let any link sign a person out (logout CSRF).
        at_provider = bool(ctx.cookies.get(self.sessions.cookies.names.provider_signed_out))
        return Page("signed_out.html", 200, {"at_provider": at_provider})

    def post(self, ctx: RequestContext) -> Flow:
        form = yield from self.csrf.checked_form(ctx, "sign_out", same_origin_is_enough=True)
        if form is None:
            return replies.form_expired()
        everywhere = form.get("everywhere") == "1"
        session = ctx.session
        ended = yield from self._end(session, everywhere)
        if session is not None:
            ctx.audit(
                "signed_out",
                email=session.user.email,
                session=session_ref(session.session_id),
                everywhere=everywhere,
                ended=ended,
            )
        ctx.session = None
        ctx.set_cookies.append(self.sessions.cookies.clear())
        location = yield from self._provider_sign_out_url(ctx, session)
        if location is None:
            return Page("signed_out.html")
        ctx.audit("provider_sign_out_started")
        policy = self.sessions.cookies.policy
        ctx.set_cookies.append(
            policy.set_cookie(
                self.sessions.cookies.names.provider_signed_out, "1", max_age=PROVIDER_SIGN_OUT_SECONDS
            )
        )
        return Redirect(location)

    def _end(self, session: Session | None, everywhere: bool) -> Generator[StoreEffect, Any, int]:
        """End the session (or all of this person's); how many ended. The cookie store
        cannot end anything but the browser's own cookie."""
        if session is None or self.sessions.keeper.stateless:
            return 0
        if everywhere:
            return (yield from self.sessions.keeper.end_all_of(session.user.identity))
        yield from self.sessions.keeper.end(session)
        return 1

    def _provider_sign_out_url(
        self, ctx: RequestContext, session: Session | None
    ) -> Generator[HttpCall, Any, str | None]:
        """RP-Initiated Logout 1.0 §2: the provider's end_session_endpoint with our
        registered ``post_logout_redirect_uri``, ``id_token_hint`` when a server-side store
        kept the ID token, and Entra's ``logout_hint`` (the ``login_hint`` optional claim)
        so that Entra skips its account picker. ``None`` when the provider cannot be asked.
        The provider is the one the session came from (without a session: the first)."""
        rp = self.providers.named(session.provider if session is not None else "") or self.providers.first
        if not rp.registration.sign_out_at_provider:
            return None
        try:
            metadata = yield from rp.metadata(ctx.now)
        except ProviderError as error:
            ctx.audit("provider_unavailable", step="end_session", reason=str(error))
            return None  # our session has ended either way; the signed-out page says what to do
        if not metadata.end_session_endpoint:
            return None
        params = {"client_id": rp.registration.client_id, "post_logout_redirect_uri": self.signed_out_url}
        if session is not None:
            if session.id_token:
                params["id_token_hint"] = session.id_token
            login_hint = session.user.identity.claims.get("login_hint")
            if isinstance(login_hint, str) and login_hint:
                params["logout_hint"] = login_hint
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + separator + urlencode(params, quote_via=quote)
