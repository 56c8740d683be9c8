"""The seed user guide's sign-in, steps 1 to 5, as routes.

(1) the sign-in page; (2) Sign In → ``POST /start`` → the provider; (3) the callback →
code exchange → ID token → account lookup → session → back to the page first asked for;
(4) a provider ``error`` → "Sign in to NHSmail failed" (401); (5) no CQRS account →
"no CQRS account is associated with …" (403), no session."""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import parse_qs, quote

from .actions import (
    Decision,
    Flow,
    IncomingRequest,
    Outcome,
    ReadForm,
)
from .attempts import LoginAttempt
from .audit import session_ref
from .cookies import parse_cookie_header
from .csrf import csrf_token
from .errors import ProviderError, TokenRejected
from .flow_base import FlowBase, LookupProblem
from .identity import Identity, User, email_domain_allowed, has_control_characters, identity_from_claims
from .redirects import safe_return_path
from .responses import (
    json_response,
    redirect,
)
from .session_store import StoreProblem
from .sessions import Session

_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PROVIDER_OUTAGE_ERRORS = {"server_error", "temporarily_unavailable"}
_CALLBACK_PARAMS = ("state", "code", "error")


class SignInRoutes(FlowBase):
    """Seed steps 1–5."""

    def _sign_in_page(self, request: IncomingRequest) -> Decision:
        query = parse_qs(request.query_string)
        candidate = query.get("rd", [""])[0]
        # Behind nginx, `error_page 401 = /oauth2/sign_in` keeps the original URI in
        # X-Original-URI (safer than ?rd=$request_uri, which nginx does not escape).
        return_path = (
            safe_return_path(candidate, reserved_prefix=self.prefix)
            or self._original_uri(request)
            or self.settings.default_return_path
        )
        return self._with_session(
            request,
            self.clock(),
            lambda session, cookies: self._sign_in_page_for(request, session, cookies, return_path),
        )

    def _sign_in_page_for(
        self, request: IncomingRequest, session: Session | None, set_cookies: list[str], return_path: str
    ) -> Outcome:
        if session is not None:
            return redirect(return_path)
        cookies = parse_cookie_header(request.headers.get("cookie"))
        if self._is_api_request(request):
            # Behind nginx, `error_page 401 = /oauth2/sign_in` sends API and XHR calls here
            # too; they get the same 401 JSON as in embedded mode, not a page.
            sign_in = f"{self.prefix}/sign_in?rd={quote(return_path, safe='')}"
            return json_response(
                401, {"error": "unauthenticated", "sign_in_url": sign_in}, set_cookies=set_cookies
            )
        csrf_value, csrf_cookies = self._csrf_cookie(cookies)
        notice = self._notice(cookies, set_cookies)
        return self._page(
            200,
            "sign_in.html",
            set_cookies=[*set_cookies, *csrf_cookies],
            return_path=return_path,
            csrf_token=csrf_token(self.settings.secret_keys, csrf_value),
            notice=notice,
        )

    def _notice(self, cookies: Mapping[str, list[str]], set_cookies: list[str]) -> str:
        """Why the person was signed out, from the notice cookie: fixed sentences only, so
        nothing a cookie says is ever shown. The notice is shown once."""
        reason = next(iter(cookies.get(self.notice_cookie, [])), "")
        fresh = [c for c in set_cookies if c.startswith(self.notice_cookie + "=")]
        if fresh:  # this very request ended the session: the new reason wins
            reason = fresh[0].split("=", 1)[1].split(";", 1)[0]
            set_cookies.remove(fresh[0])
        elif reason:
            set_cookies.append(self.cookie_policy.delete_cookie(self.notice_cookie))
        idle_minutes = max(1, self.settings.session_idle_seconds // 60)
        max_hours = max(1, self.settings.session_max_seconds // 3600)
        return {
            "idle": f"You were signed out because you had not used CQRS for {idle_minutes} minutes.",
            "max": f"You were signed out because you had been signed in for {max_hours} hours, "
            "the longest a CQRS session can last.",
            "ended": "Your CQRS session has ended: you signed out, or it was ended elsewhere.",
        }.get(reason, "")

    def _start(self, request: IncomingRequest) -> Flow:
        form = yield ReadForm()
        cookies = parse_cookie_header(request.headers.get("cookie"))
        if not self._csrf_ok(request, cookies, form):
            self._audit("csrf_rejected", endpoint="start")
            return self._form_expired()
        assert isinstance(form, Mapping)
        return_path = (
            safe_return_path(form.get("rd"), reserved_prefix=self.prefix) or self.settings.default_return_path
        )
        return (yield from self._begin_attempt(cookies, return_path, []))

    def _callback(self, request: IncomingRequest) -> Flow:
        now = self.clock()
        params = parse_qs(request.query_string, keep_blank_values=True, max_num_fields=20)
        # RFC 6749 §3.1: parameters must not be repeated; a repeated one is an attack.
        if any(len(params.get(name, ())) > 1 for name in _CALLBACK_PARAMS):
            self._audit("sign_in_failed", reason="repeated_parameter")
            return self._attempt_invalid([])
        state = params.get("state", [""])[0]
        cookies = parse_cookie_header(request.headers.get("cookie"))
        attempt = self.attempts.find(cookies, state) if state else None
        set_cookies = [self.cookie_policy.delete_cookie(self.attempts.cookie_name(state))] if attempt else []
        if "error" in params:
            return self._provider_refused(params, set_cookies)
        try:
            first_use = attempt is not None and (yield from self._first_use_of(state, attempt, now))
        except StoreProblem as problem:
            return self._store_unavailable(request, problem)
        if attempt is None or attempt.expired(now) or not first_use:
            reason = (
                "unknown_state"
                if attempt is None
                else "expired_attempt"
                if attempt.expired(now)
                else "state_reused"
            )
            self._audit("sign_in_failed", reason=reason)
            return self._attempt_invalid(set_cookies)
        code = params.get("code", [""])[0]
        if not code:
            self._audit("sign_in_failed", reason="missing_code")
            return self._attempt_invalid(set_cookies)
        try:
            claims, id_token = yield from self.rp.redeem_code(code, attempt, now)
        except ProviderError as error:
            self._audit("provider_unavailable", step="token", reason=str(error))
            return self._page(503, "unavailable.html", set_cookies=set_cookies)
        except TokenRejected as error:
            self._audit("token_rejected", reason=error.reason)
            return self._page(401, "sign_in_failed.html", set_cookies=set_cookies)
        return (yield from self._admit(identity_from_claims(claims), attempt, set_cookies, id_token))

    def _first_use_of(self, state: str, attempt: LoginAttempt, now: float) -> Generator[Any, Any, bool]:
        """State is single use (RFC 6749 §10.12): per process with the cookie store; in the
        store otherwise, so a callback replayed to another instance is refused too."""
        if attempt.expired(now):
            return False
        if self.sessions.stateless:
            return self.spent_states.spend(state, attempt.expires_at, now)
        return (yield from self.sessions.claim(self.sessions.state_key(state), attempt.expires_at - int(now)))

    def _provider_refused(self, params: Mapping[str, list[str]], set_cookies: list[str]) -> Outcome:
        # Branch on `error` only; error_description is the provider's free text (AADSTS…):
        # logged truncated, never shown.
        error = params["error"][0]
        error = error if _ERROR_CODE.match(error) else "invalid_error_code"
        description = params.get("error_description", [""])[0]
        self._audit("sign_in_failed", reason="provider_error", error=error, description=description[:160])
        if error in _PROVIDER_OUTAGE_ERRORS:
            return self._page(503, "unavailable.html", set_cookies=set_cookies)
        return self._page(401, "sign_in_failed.html", set_cookies=set_cookies)

    def _admit(
        self, identity: Identity, attempt: LoginAttempt, set_cookies: list[str], id_token: str = ""
    ) -> Flow:
        if not identity.email:
            self._audit("sign_in_failed", reason="no_email_claim", oid=identity.object_id)
            return self._page(401, "sign_in_failed.html", set_cookies=set_cookies)
        if has_control_characters(identity.email) or has_control_characters(identity.name):
            # The email and name travel on as header values (REMOTE_USER, X-Forwarded-User):
            # a CR/LF there would split an upstream request (RFC 9110 §5.5).
            self._audit("sign_in_failed", reason="control_character_in_claim", oid=identity.object_id)
            return self._page(401, "sign_in_failed.html", set_cookies=set_cookies)
        if not email_domain_allowed(identity.email, self.settings.allowed_email_domains):
            self._audit("sign_in_no_account", reason="domain_not_allowed", email=identity.email)
            return self._no_account(identity, set_cookies)
        try:
            account = yield from self._look_up(identity)
        except LookupProblem:
            return self._page(503, "unavailable.html", set_cookies=set_cookies)
        if account is None:
            self._audit(
                "sign_in_no_account", reason="lookup_none", email=identity.email, oid=identity.object_id
            )
            return self._no_account(identity, set_cookies)
        # Server-side stores keep the ID token for RP-initiated logout's id_token_hint.
        kept_token = "" if self.sessions.stateless else id_token
        session = Session.start(User(identity, account), self.clock(), self.sessions.deployment, kept_token)
        try:
            set_cookies += yield from self._keep(session, self.clock(), new=True)
        except StoreProblem as problem:
            self._audit("session_store_unavailable", reason=str(problem)[:200])
            return self._page(503, "unavailable.html", set_cookies=set_cookies)
        self._audit(
            "sign_in_succeeded",
            email=identity.email,
            oid=identity.object_id,
            session=session_ref(session.session_id),
        )
        return redirect(attempt.return_path, set_cookies)
