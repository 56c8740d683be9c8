"""Signing out: of CQRS, of NHSmail, and when NHSmail says so.

* ``POST /sign_out`` (CSRF-protected): ends the session where it lives (a server-side
  store deletes it, so a copied cookie stops working everywhere; ``everywhere=1`` ends all
  of this person's sessions), then — ``sign_out_at_provider``, and the provider announces
  an ``end_session_endpoint`` — sends the browser there (OpenID Connect RP-Initiated
  Logout 1.0 §2) so that the next person at a shared PC must type a password again.
* ``GET /signed_out``: where the provider sends the browser back
  (``post_logout_redirect_uri``). It takes no parameters, so it cannot redirect anywhere.
* ``GET /frontchannel_logout?sid=…[&iss=…]`` (OpenID Connect Front-Channel Logout 1.0):
  the provider's iframe. Ends the sessions of that provider session (server-side stores),
  clears our cookie only when its session has that ``sid``, and may be framed by the
  provider's origin only.
* ``POST /backchannel_logout`` (OpenID Connect Back-Channel Logout 1.0 §2.5–2.8): a signed
  ``logout_token`` from the provider, server to server. Valid → the sessions of that
  ``sid`` (else of that ``sub``) end; 200. Invalid → 400. The ``jti`` is single use.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from .actions import Decision, Flow, IncomingRequest, Outcome, ReadForm, Respond
from .audit import session_ref
from .cookies import parse_cookie_header
from .csrf import csrf_token
from .errors import ProviderError, TokenRejected
from .flow_base import FlowBase
from .responses import frameable_html_response, json_response, redirect
from .session_store import StoreProblem
from .sessions import Session

MAX_LOGOUT_TOKEN_FORM_BYTES = 16 * 1024


class SignOutRoutes(FlowBase):
    """Sign-out (ours and the provider's), front- and back-channel logout."""

    # -- our sign-out, then RP-initiated logout at the provider ----------------------------

    def _sign_out_page(self, request: IncomingRequest) -> Decision:
        return self._with_session(
            request, self.clock(), lambda session, cookies: self._sign_out_page_for(request, session, cookies)
        )

    def _sign_out_page_for(
        self, request: IncomingRequest, session: Session | None, set_cookies: list[str]
    ) -> Outcome:
        cookies = parse_cookie_header(request.headers.get("cookie"))
        if session is None:
            return self._page(200, "signed_out.html", set_cookies=set_cookies)
        csrf_value, csrf_cookies = self._csrf_cookie(cookies)
        token = csrf_token(self.settings.secret_keys, csrf_value)
        return self._page(
            200,
            "sign_out.html",
            set_cookies=csrf_cookies,
            csrf_token=token,
            user=session.user,
            can_sign_out_everywhere=not self.sessions.stateless,
        )

    def _sign_out(self, request: IncomingRequest) -> Flow:
        form = yield ReadForm()
        cookies = parse_cookie_header(request.headers.get("cookie"))
        if not self._csrf_ok(request, cookies, form):
            self._audit("csrf_rejected", endpoint="sign_out")
            return self._form_expired()
        everywhere = isinstance(form, Mapping) and form.get("everywhere") == "1"
        now = self.clock()
        try:
            session, _ = yield from self._session_in_flow(request, now)
            ended = yield from self._end(session, everywhere)
        except StoreProblem as problem:
            return self._store_unavailable(request, problem)
        if session is not None:
            self._audit(
                "signed_out",
                email=session.user.email,
                session=session_ref(session.session_id),
                everywhere=everywhere,
                ended=ended,
            )
        set_cookies = [self._clear_session()]
        location = yield from self._provider_sign_out_url(session, now)
        if location is not None:
            self._audit("provider_sign_out_started")
            return redirect(location, set_cookies)
        return self._page(200, "signed_out.html", set_cookies=set_cookies)

    def _end(self, session: Session | None, everywhere: bool) -> Generator[Any, Any, int]:
        """End the session (or all of this person's); how many ended. The cookie store
        cannot end anything but the browser's own cookie."""
        if session is None or self.sessions.stateless:
            return 0
        if everywhere:
            return (yield from self.sessions.end_all_of(session.user.identity))
        yield from self.sessions.end(session)
        return 1

    def _provider_sign_out_url(self, session: Session | None, now: float) -> Generator[Any, Any, str | None]:
        """RP-Initiated Logout 1.0 §2: the provider's end_session_endpoint with our
        registered ``post_logout_redirect_uri``, ``id_token_hint`` when a server-side store
        kept the ID token, and Entra's ``logout_hint`` (the ``login_hint`` optional claim)
        so that Entra skips its account picker. ``None`` when the provider cannot be asked."""
        if not self.settings.sign_out_at_provider:
            return None
        try:
            metadata = yield from self.rp.metadata(now)
        except ProviderError as error:
            self._audit("provider_unavailable", step="end_session", reason=str(error))
            return None  # our session has ended either way; the signed-out page says what to do
        if not metadata.end_session_endpoint:
            return None
        params = {
            "client_id": self.settings.client_id,
            "post_logout_redirect_uri": self.signed_out_url,
        }
        if session is not None:
            if session.id_token:
                params["id_token_hint"] = session.id_token
            login_hint = session.user.identity.claims.get("login_hint")
            if isinstance(login_hint, str) and login_hint:
                params["logout_hint"] = login_hint
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + separator + urlencode(params, quote_via=quote)

    @property
    def signed_out_url(self) -> str:
        """Register this with NHSmail as the post-logout redirect URI."""
        return f"{self.settings.base_url}{self.prefix}/signed_out"

    def _signed_out(self, request: IncomingRequest) -> Outcome:
        # Changes nothing: POST /sign_out already ended the session. A GET that cleared the
        # cookie would let any link sign a person out (logout CSRF).
        return self._page(200, "signed_out.html", at_provider=True)

    # -- front-channel logout: the provider's iframe ---------------------------------------

    def _frontchannel_logout(self, request: IncomingRequest) -> Decision:
        """Front-Channel Logout 1.0 §2–3: end the sessions of the provider session ``sid``.

        ``sid`` decides, and must name a session: a bare request ends nothing, so a
        cross-site link cannot sign anybody out (logout CSRF). ``iss``, when sent, must be
        our provider's issuer. Entra sends ``sid`` without ``iss`` (a known deviation from
        §2, which asks for both); without ``iss`` the configured provider is meant. Our
        cookie is cleared only when its own session has that ``sid``.
        """
        params = parse_qs(request.query_string, max_num_fields=10)
        issuer, sid = params.get("iss", [""])[0], params.get("sid", [""])[0]
        if not sid or len(sid) > 256:
            self._audit("frontchannel_logout_refused", reason="no_sid")
            return self._frontchannel_page([])
        return self._frontchannel_end(request, issuer, sid)

    def _frontchannel_end(self, request: IncomingRequest, issuer: str, sid: str) -> Flow:
        now = self.clock()
        try:
            provider_issuer = (yield from self.rp.metadata(now)).issuer
        except ProviderError as error:
            self._audit("provider_unavailable", step="frontchannel_logout", reason=str(error))
            return self._frontchannel_page([])  # whose sid this is cannot be told: end nothing
        if issuer and issuer not in (provider_issuer, self.settings.issuer):
            self._audit("frontchannel_logout_refused", reason="foreign_issuer")
            return self._frontchannel_page([])
        try:
            session, _ = yield from self._session_in_flow(request, now)
            ended = 0
            if not self.sessions.stateless:
                ended = yield from self.sessions.end_indexed(self.sessions.sid_index(provider_issuer, sid))
        except StoreProblem as problem:
            self._audit("session_store_unavailable", reason=str(problem)[:200])
            return self._frontchannel_page([])
        own = session is not None and session.user.identity.claims.get("sid") == sid
        if not ended and not own:
            self._audit("frontchannel_logout_refused", reason="no_matching_session")
            return self._frontchannel_page([])
        self._audit("frontchannel_logout", ended=ended, cleared_cookie=own, with_iss=bool(issuer))
        if not own:
            return self._frontchannel_page([])
        notice = self.cookie_policy.set_cookie(self.notice_cookie, "ended", max_age=600)
        return self._frontchannel_page([self._clear_session(), notice])

    def _frontchannel_page(self, set_cookies: list[str]) -> Respond:
        """Always 200: Entra requires the front-channel URL to answer 200, and the page says
        nothing about whether a session ended."""
        html = self.pages.render(
            "frontchannel.html", {"status": 200, "css_url": f"{self.prefix}/static/cqrs.css"}
        )
        return frameable_html_response(html, self.provider_origin, set_cookies)

    @property
    def provider_origin(self) -> str:
        parts = urlsplit(self.settings.issuer)
        return f"{parts.scheme}://{parts.netloc}"

    # -- back-channel logout: a logout token from the provider ------------------------------

    def _backchannel_logout(self, request: IncomingRequest) -> Flow:
        form = yield ReadForm(max_bytes=MAX_LOGOUT_TOKEN_FORM_BYTES)
        token = form.get("logout_token") if isinstance(form, Mapping) else None
        if not token:
            return self._logout_refused("invalid_request", "no logout_token")
        now = self.clock()
        try:
            logout = yield from self.rp.verify_logout_token(token, now)
        except TokenRejected as error:
            return self._logout_refused("invalid_request", error.reason)
        except ProviderError as error:
            self._audit("provider_unavailable", step="backchannel_logout", reason=str(error))
            return json_response(503, {"error": "temporarily_unavailable"}, [("Retry-After", "30")])
        if self.sessions.stateless:
            # §2.8: a logout this RP cannot perform. With the cookie store nothing can be ended.
            self._audit("backchannel_logout_refused", reason="cookie_store_cannot_revoke")
            return json_response(
                501, {"error": "not_implemented", "error_description": "session_store=cookie"}
            )
        try:
            ttl = int(logout.keep_jti_until - now) + 1
            if not (yield from self.sessions.claim(self.sessions.jti_key(logout.issuer, logout.jti), ttl)):
                return self._logout_refused("invalid_request", "jti_reused")
            index = (
                self.sessions.sid_index(logout.issuer, logout.sid)
                if logout.sid
                else self.sessions.subject_index(logout.issuer, logout.subject or "")
            )
            ended = yield from self.sessions.end_indexed(index)
        except StoreProblem as problem:
            self._audit("session_store_unavailable", reason=str(problem)[:200])
            return json_response(503, {"error": "temporarily_unavailable"}, [("Retry-After", "30")])
        self._audit("backchannel_logout", ended=ended, by="sid" if logout.sid else "sub")
        return json_response(200, {})

    def _logout_refused(self, error: str, reason: str) -> Respond:
        self._audit("backchannel_logout_refused", reason=reason)
        return json_response(400, {"error": error, "error_description": reason})
