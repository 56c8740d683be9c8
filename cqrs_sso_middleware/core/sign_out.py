"""Signing out."""

from __future__ import annotations

from .actions import (
    Decision,
    Flow,
    IncomingRequest,
    Outcome,
    ReadForm,
)
from .audit import session_ref
from .cookies import parse_cookie_header
from .csrf import csrf_token
from .flow_base import FlowBase
from .session_store import StoreProblem
from .sessions import Session


class SignOutRoutes(FlowBase):
    """Sign-out."""

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
        return self._page(200, "sign_out.html", set_cookies=csrf_cookies, csrf_token=token, user=session.user)

    def _sign_out(self, request: IncomingRequest) -> Flow:
        form = yield ReadForm()
        cookies = parse_cookie_header(request.headers.get("cookie"))
        if not self._csrf_ok(request, cookies, form):
            self._audit("csrf_rejected", endpoint="sign_out")
            return self._form_expired()
        try:
            session, _ = yield from self._session_in_flow(request, self.clock())
            if session is not None and not self.sessions.stateless:
                yield from self.sessions.end(session)  # revoked: a copied cookie stops working
        except StoreProblem as problem:
            return self._store_unavailable(request, problem)
        if session is not None:
            self._audit("signed_out", email=session.user.email, session=session_ref(session.session_id))
        return self._page(200, "signed_out.html", set_cookies=[self._clear_session()])
