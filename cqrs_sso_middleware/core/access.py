"""Who may pass: protected paths, the account re-check, forward-auth and ``/userinfo``.

Protected paths are the per-request hot path: with the cookie store a signed-in request
performs no effect at all between account re-checks."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

from .actions import (
    Decision,
    Flow,
    IncomingRequest,
    Outcome,
    PassThrough,
    Respond,
)
from .audit import session_ref
from .cookies import parse_cookie_header
from .flow_base import FlowBase, LookupProblem
from .identity import User
from .paths import PathRefused
from .redirects import safe_return_path
from .responses import (
    allowed_response,
    json_response,
    redirect,
)
from .sessions import Session


class AccessRoutes(FlowBase):
    """Protected paths, forward-auth (nginx, Caddy, Traefik) and userinfo."""

    def _protected(self, request: IncomingRequest) -> Decision:
        """The per-request hot path: with the cookie store, no I/O at all for a valid
        session between re-checks; with a server-side store, one store read."""
        now = self.clock()
        return self._with_session(
            request, now, lambda session, cookies: self._protected_with(request, session, cookies, now)
        )

    def _protected_with(
        self, request: IncomingRequest, session: Session | None, set_cookies: list[str], now: float
    ) -> Decision:
        if session is not None:
            if self._account_recheck_due(session, now):
                return self._recheck_account(request, session, now)
            if self.timeouts.needs_renewal(session, now):
                return self._renewed(session, now, set_cookies, lambda s, c: PassThrough(s.user, tuple(c)))
            return PassThrough(session.user, tuple(set_cookies))
        if request.is_websocket:
            return Respond(401, ())
        if self._is_api_request(request):
            return json_response(
                401,
                {"error": "unauthenticated", "sign_in_url": f"{self.prefix}/sign_in"},
                [("WWW-Authenticate", f'CQRS-SSO realm="CQRS", sign_in="{self.prefix}/sign_in"')],
                set_cookies,
            )
        return_path = self._return_path_of(request)
        if self.settings.auto_redirect:
            cookies = parse_cookie_header(request.headers.get("cookie"))
            return self._begin_attempt(cookies, return_path, set_cookies)
        return redirect(f"{self.prefix}/sign_in?rd={quote(return_path, safe='')}", set_cookies)

    def _return_path_of(self, request: IncomingRequest) -> str:
        path = request.path  # normalised, still percent-encoded
        if request.query_string:
            path = f"{path}?{request.query_string}"
        return safe_return_path(path, reserved_prefix=self.prefix) or self.settings.default_return_path

    def _forward_auth(self, request: IncomingRequest) -> Decision:
        """202 with the user in headers for a valid session, else 401; never a redirect.

        The proxy in front turns the 401 into the sign-in page (nginx ``error_page 401``)
        and copies the ``X-Auth-Request-*`` headers to the app. The original URI
        (``X-Original-URI`` / ``X-Forwarded-Uri``) becomes the sign-in URL's return path.
        """
        original = self._original_target(request)
        if isinstance(original, PathRefused):
            self._audit("path_refused", reason=original.reason, endpoint="auth")
            return json_response(400, {"error": "invalid_path"})
        if original is not None and self._is_public(original.split("?", 1)[0].split("#", 1)[0]):
            # An answer about a path, not a session: a proxy that caches auth answers by
            # cookie (the nginx example) must never reuse it for another path.
            # X-Accel-Expires is honoured by nginx even where Cache-Control is ignored.
            return allowed_response([("X-Accel-Expires", "0")])
        now = self.clock()
        return self._with_session(
            request, now, lambda session, cookies: self._forward_auth_with(request, session, cookies, now)
        )

    def _forward_auth_with(
        self, request: IncomingRequest, session: Session | None, set_cookies: list[str], now: float
    ) -> Decision:
        if session is None:
            return_path = self._original_uri(request) or self.settings.default_return_path
            sign_in = f"{self.prefix}/sign_in?rd={quote(return_path, safe='')}"
            return json_response(
                401, {"error": "unauthenticated", "sign_in_url": sign_in}, set_cookies=set_cookies
            )
        if self._account_recheck_due(session, now):
            return self._forward_auth_after_recheck(request, session, now)
        if self.timeouts.needs_renewal(session, now):
            return self._renewed(session, now, set_cookies, lambda s, c: self._authorised(s.user, c))
        return self._authorised(session.user, set_cookies)

    def _forward_auth_after_recheck(self, request: IncomingRequest, session: Session, now: float) -> Flow:
        outcome = yield from self._recheck_account(request, session, now)
        if isinstance(outcome, PassThrough) and outcome.user is not None:
            return self._authorised(outcome.user, list(outcome.set_cookies))
        if isinstance(outcome, Respond) and outcome.status == 503:
            return json_response(503, {"error": "temporarily_unavailable"}, [("Retry-After", "30")])
        # The account is gone: the session has ended; the proxy in front sends the person to
        # the sign-in page, which explains.
        cleared = [v for k, v in outcome.headers if k == "Set-Cookie"] if isinstance(outcome, Respond) else []
        return json_response(401, {"error": "unauthenticated"}, set_cookies=cleared)

    def _authorised(self, user: User, set_cookies: list[str]) -> Respond:
        settings = self.settings
        headers = [
            ("X-Auth-Request-User", user.email),
            ("X-Auth-Request-Email", user.email),
            ("X-Auth-Request-Preferred-Username", user.identity.name),
            (settings.account_header, user.account.account_id),
        ]
        return allowed_response(headers, set_cookies)

    def _userinfo(self, request: IncomingRequest) -> Decision:
        return self._with_session(
            request, self.clock(), lambda session, cookies: self._userinfo_for(session, cookies)
        )

    def _userinfo_for(self, session: Session | None, set_cookies: list[str]) -> Outcome:
        if session is None:
            return json_response(401, {"error": "unauthenticated"}, set_cookies=set_cookies)
        identity, account = session.user.identity, session.user.account
        return json_response(
            200,
            {
                "email": identity.email,
                "name": identity.name,
                "sub": identity.subject,
                "oid": identity.object_id,
                "tid": identity.tenant_id,
                "issuer": identity.issuer,
                "account_id": account.account_id,
                "account": dict(account.attributes),
            },
        )

    def _recheck_account(self, request: IncomingRequest, session: Session, now: float) -> Flow:
        """Every ``account_recheck_seconds``: does CQRS still have an account for this user?"""
        try:
            account = yield from self._look_up(session.user.identity)
        except LookupProblem:
            return self._unavailable(request)
        if account is None:
            self._audit("account_removed", email=session.user.email, session=session_ref(session.session_id))
            if not self.sessions.stateless:
                # Ended where it lives, so no instance accepts this cookie again. A store
                # failure raises StoreProblem: the caller answers "temporarily unavailable".
                yield from self.sessions.end(session)
            if self._is_api_request(request):
                return json_response(403, {"error": "no_account"}, set_cookies=[self._clear_session()])
            return self._no_account(session.user.identity, [self._clear_session()])
        user = User(session.user.identity, account)
        session = replace(session, user=user, account_checked_at=int(now), renewed_at=int(now))
        set_cookies = yield from self._keep(session, now)
        return PassThrough(user, tuple(set_cookies))
