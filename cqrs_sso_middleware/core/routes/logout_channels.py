"""When NHSmail says a person signed out: front-channel and back-channel logout.

* ``GET /frontchannel_logout?sid=…[&iss=…]`` (OpenID Connect Front-Channel Logout 1.0):
  the provider's hidden iframe. Ends the sessions of that provider session (server-side
  stores), clears our cookie only when its session has that ``sid``, and may be framed by
  the provider's origin only.
* ``POST /backchannel_logout`` (OpenID Connect Back-Channel Logout 1.0 §2.5–2.8): a signed
  ``logout_token`` from the provider, server to server. Valid → the sessions of that
  ``sid`` (else of that ``sub``) end; 200. Invalid → 400. The ``jti`` is single use.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from .. import replies
from ..context import RequestContext
from ..errors import ProviderError, TokenRejected
from ..forms import parse_form
from ..oidc.client import RelyingParty
from ..oidc.providers import Providers
from ..oidc.tokens import unverified_issuer
from ..protocol import Flow, JsonReply, Outcome, Page, ReadForm
from ..responses import provider_origin
from ..sessions.keeper import SessionParts, StoreProblem

MAX_LOGOUT_TOKEN_FORM_BYTES = 16 * 1024


class LogoutChannels:
    def __init__(self, providers: Providers, sessions: SessionParts) -> None:
        self.providers = providers
        # The iframe may be framed by a provider's origin only (CSP frame-ancestors).
        self.provider_origins = " ".join(
            dict.fromkeys(provider_origin(party.registration.issuer) for party in providers.all)
        )
        self.keeper, _, self.cookies = sessions

    # -- front-channel logout: the provider's iframe ---------------------------------------

    def front(self, ctx: RequestContext) -> Outcome | Flow:
        """Front-Channel Logout 1.0 §2–3: end the sessions of the provider session ``sid``.

        ``sid`` decides, and must name a session: a bare request ends nothing, so a
        cross-site link cannot sign anybody out (logout CSRF). ``iss``, when sent, must be
        one of our providers' issuers, and only its sessions end. Entra sends ``sid``
        without ``iss`` (a known deviation from §2, which asks for both); without ``iss``
        the ``sid`` is looked for at every provider (a provider's session ids are random,
        so no other provider's session has it). Our cookie is cleared only when its own
        session has that ``sid``.
        """
        params = parse_qs(ctx.request.query_string, max_num_fields=10)
        issuer, sid = params.get("iss", [""])[0], params.get("sid", [""])[0]
        if not sid or len(sid) > 256:
            ctx.audit("frontchannel_logout_refused", reason="no_sid")
            return self._frame()
        return self._front_end(ctx, issuer, sid)

    def _front_end(self, ctx: RequestContext, issuer: str, sid: str) -> Flow:
        parties: tuple[RelyingParty, ...] = self.providers.all
        if issuer:
            found = yield from self.providers.by_issuer(issuer, ctx.now)
            if found is None:
                ctx.audit("frontchannel_logout_refused", reason="foreign_issuer")
                return self._frame()
            parties = (found,)
        issuers = []
        for party in parties:
            try:
                issuers.append((yield from party.metadata(ctx.now)).issuer)
            except ProviderError as error:
                # Whose sid this is cannot be told there: nothing of that provider's ends.
                ctx.audit("provider_unavailable", step="frontchannel_logout", reason=str(error))
        if not issuers:
            return self._frame()
        try:
            values = self.cookies.values(ctx.request.headers.get("cookie"))
            if self.keeper.stateless:
                loaded = self.keeper.from_cookie(values, ctx.now)
            else:
                loaded = yield from self.keeper.load(values, ctx.now)
            ended = 0
            if not self.keeper.stateless:
                for provider_issuer in issuers:
                    ended += yield from self.keeper.end_indexed(self.keeper.sid_index(provider_issuer, sid))
        except StoreProblem as problem:
            # Entra requires this URL to answer 200: the page is shown, nothing ended.
            ctx.audit("session_store_unavailable", reason=str(problem)[:200])
            return self._frame()
        session = loaded.session
        own = (
            session is not None
            and session.user.identity.claims.get("sid") == sid
            and session.user.identity.issuer in issuers
        )
        if not ended and not own:
            ctx.audit("frontchannel_logout_refused", reason="no_matching_session")
            return self._frame()
        ctx.audit("frontchannel_logout", ended=ended, cleared_cookie=own, with_iss=bool(issuer))
        if own:
            ctx.set_cookies += [self.cookies.clear(), self.cookies.notice("ended")]
        return self._frame()

    def _frame(self) -> Page:
        """Always 200: Entra requires the front-channel URL to answer 200, and the page says
        nothing about whether a session ended."""
        return Page("frontchannel.html", frame_ancestor=self.provider_origins)

    # -- back-channel logout: a logout token from the provider ------------------------------

    def back(self, ctx: RequestContext) -> Flow:
        body = yield ReadForm(max_bytes=MAX_LOGOUT_TOKEN_FORM_BYTES)
        form = parse_form(body, ctx.request.headers.get("content-type")) if isinstance(body, bytes) else None
        token = form.get("logout_token") if form is not None else None
        if not token:
            return self._refused(ctx, "no logout_token")
        try:
            # The token's own iss chooses the provider whose keys must have signed it; the
            # signature, iss and aud are then checked against that provider alone.
            rp = yield from self.providers.by_issuer(unverified_issuer(token), ctx.now)
            if rp is None:
                return self._refused(ctx, "unknown_issuer")
            logout = yield from rp.verify_logout_token(token, ctx.now)
        except TokenRejected as error:
            return self._refused(ctx, error.reason)
        except ProviderError as error:
            ctx.audit("provider_unavailable", step="backchannel_logout", reason=str(error))
            return replies.temporarily_unavailable()
        if self.keeper.stateless:
            # §2.8: a logout this RP cannot perform. With the cookie store nothing can be ended.
            ctx.audit("backchannel_logout_refused", reason="cookie_store_cannot_revoke")
            return JsonReply(501, {"error": "not_implemented", "error_description": "session_store=cookie"})
        ttl = int(logout.keep_jti_until - ctx.now) + 1
        if not (yield from self.keeper.claim(self.keeper.jti_key(logout.issuer, logout.jti), ttl)):
            return self._refused(ctx, "jti_reused")
        index = (
            self.keeper.sid_index(logout.issuer, logout.sid)
            if logout.sid
            else self.keeper.subject_index(logout.issuer, logout.subject or "")
        )
        ended = yield from self.keeper.end_indexed(index)
        ctx.audit("backchannel_logout", ended=ended, by="sid" if logout.sid else "sub")
        return JsonReply(200, {})

    @staticmethod
    def _refused(ctx: RequestContext, reason: str) -> JsonReply:
        ctx.audit("backchannel_logout_refused", reason=reason)
        return JsonReply(400, {"error": "invalid_request", "error_description": reason})
