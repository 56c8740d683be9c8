"""The decision for every request, and the sign-in state machine of the seed user guide.

``SignInFlow.handle(request)`` returns an outcome (``PassThrough`` or ``Respond``) when no
I/O is needed, or a generator that yields effects (HTTP calls to the provider, reading the
form, the account lookup) and returns the outcome. Both drivers run the same generators, so
the flow exists exactly once.

Seed steps: (1) no session → sign-in page; (2) Sign In → ``POST /start`` → provider;
(3) callback → code exchange → ID token → account lookup → session → back to the page
first asked for; (4) provider ``error`` → "Sign in to NHSmail failed" (401);
(5) no CQRS account → "no CQRS account is associated with …" (403), no session.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .actions import (
    OUTCOME_TYPES,
    Decision,
    EffectResult,
    Flow,
    IncomingRequest,
    LookUpAccount,
    LookupFailed,
    LookupReturned,
    Outcome,
    PassThrough,
    ReadForm,
    Respond,
)
from .attempts import AttemptCookies, LoginAttempt, SpentStates
from .audit import audit, session_ref
from .config import CoreSettings
from .cookies import CookiePolicy, cookie_values, parse_cookie_header
from .csrf import FIELD_NAME, cross_origin, csrf_token, csrf_token_valid, new_csrf_cookie_value
from .errors import ProviderError, TokenRejected
from .identity import Account, AccountCache, Identity, User, email_domain_allowed, identity_from_claims
from .oidc import ProviderState, RelyingParty
from .paths import PathRefused, compile_path_pattern, normalise_path, normalise_target
from .redirects import safe_return_path
from .responses import (
    PageRenderer,
    content_security_policy,
    html_response,
    json_response,
    redirect,
    static_response,
)
from .session_store import LoadedSession, SessionKeeper, StoreProblem
from .sessions import Session, SessionTimeouts

_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PROVIDER_OUTAGE_ERRORS = {"server_error", "temporarily_unavailable"}
_CALLBACK_PARAMS = ("state", "code", "error")


def _under_root(path: str, root_path: str) -> bool:
    root = root_path.rstrip("/")
    return not root or path == root or path.startswith(root + "/")


class LookupProblem(Exception):
    """The account lookup failed (raised, timed out, returned garbage)."""


class SignInFlow:
    """One deployment's sign-in logic. Create once; call :meth:`handle` per request."""

    def __init__(
        self,
        settings: CoreSettings,
        pages: PageRenderer,
        clock: Callable[[], float] = time.time,
        provider_state: ProviderState | None = None,
    ) -> None:
        self.settings = settings
        self.pages = pages
        self.clock = clock
        self.rp = RelyingParty(settings, provider_state)
        self.cookie_policy = CookiePolicy(secure=settings.is_https)
        self.session_cookie = self.cookie_policy.name(settings.cookie_name)
        self.csrf_cookie = self.cookie_policy.name(f"{settings.cookie_name}_csrf")
        self.attempts = AttemptCookies(settings.secret_keys, self.cookie_policy.name(settings.cookie_name))
        self.timeouts = SessionTimeouts(settings.session_idle_seconds, settings.session_max_seconds)
        self.sessions = SessionKeeper(
            settings.session_store, settings.secret_keys, self.timeouts, settings.session_key_prefix
        )
        self.codec = self.sessions.codec
        self.spent_states = SpentStates()  # the cookie store's per-process memory of states
        self.account_cache = AccountCache(settings.account_cache_seconds)
        # Called with (event, fields) for every audit event; the proxy's metrics listen here.
        self.observers: list[Callable[[str, Mapping[str, object]], None]] = []
        self.prefix = settings.path_prefix
        self._public = [compile_path_pattern(p) for p in settings.public_paths]
        self._probes: dict[str, Callable[[IncomingRequest], Decision]] = {}
        if settings.health_path:
            self._probes[settings.health_path] = self._healthz
        if settings.ready_path:
            self._probes[settings.ready_path] = self._readyz
        issuer = urlsplit(settings.issuer)
        self.csp = content_security_policy([f"{issuer.scheme}://{issuer.netloc}"])
        self.routes: dict[tuple[str, str], Callable[[IncomingRequest], Decision]] = {
            ("GET", "/sign_in"): self._sign_in_page,
            ("POST", "/start"): self._start,
            ("GET", "/callback"): self._callback,
            ("GET", "/sign_out"): self._sign_out_page,
            ("POST", "/sign_out"): self._sign_out,
            ("GET", "/userinfo"): self._userinfo,
            # nginx's auth_request subrequest keeps the original method.
            **{
                (method, "/auth"): self._forward_auth
                for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
            },
            ("GET", "/static/cqrs.css"): self._stylesheet,
        }

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, request: IncomingRequest) -> Decision:
        """The outcome for ``request``, or a ``Flow`` of effects that ends in one.

        Every rule below sees the normalised path (``core.paths``); an ambiguous path is
        refused before any rule runs.
        """
        path = normalise_path(request.path)
        if isinstance(path, PathRefused) or not _under_root(path, request.root_path):
            reason = path.reason if isinstance(path, PathRefused) else "outside_mount"
            self._audit("path_refused", reason=reason)
            return self._bad_path(request)
        if path is request.path or path == request.path:
            return self._route(request)
        request = replace(request, path=path)
        decision = self._route(request)
        if isinstance(decision, PassThrough):
            return replace(decision, path=path)
        if isinstance(decision, Respond):
            return decision
        return self._handing_on_path(decision, path)

    def _route(self, request: IncomingRequest) -> Decision:
        path = request.path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return self._endpoint(request)
        if path in self._probes and request.method in ("GET", "HEAD"):
            return self._probes[path](request)
        if self._is_public(path):
            return PassThrough(None)
        return self._protected(request)

    def _is_public(self, path: str) -> bool:
        return any(matches(path) for matches in self._public)

    @staticmethod
    def _handing_on_path(flow: Flow, path: str) -> Flow:
        outcome = yield from flow
        return replace(outcome, path=path) if isinstance(outcome, PassThrough) else outcome

    def _endpoint(self, request: IncomingRequest) -> Decision:
        if request.is_websocket:
            return Respond(404, ())
        method = "GET" if request.method == "HEAD" else request.method
        endpoint = request.path[len(self.prefix) :]
        handler = self.routes.get((method, endpoint))
        if handler is not None:
            return handler(request)
        allowed = sorted(m for m, e in self.routes if e == endpoint)
        if allowed:
            page = self._page(405, "error.html", title="This address cannot be used that way")
            return replace(page, headers=(*page.headers, ("Allow", ", ".join(allowed))))
        return self._page(404, "error.html", title="Page not found")

    # -- protected paths --------------------------------------------------------------------

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

    def _recheck_account(self, request: IncomingRequest, session: Session, now: float) -> Flow:
        """Every ``account_recheck_seconds``: does CQRS still have an account for this user?"""
        try:
            account = yield from self._look_up(session.user.identity)
        except LookupProblem:
            return self._unavailable(request)
        if account is None:
            self._audit("account_removed", email=session.user.email, session=session_ref(session.session_id))
            if self._is_api_request(request):
                return json_response(403, {"error": "no_account"}, set_cookies=[self._clear_session()])
            return self._no_account(session.user.identity, [self._clear_session()])
        user = User(session.user.identity, account)
        session = replace(session, user=user, account_checked_at=int(now), renewed_at=int(now))
        set_cookies = yield from self._keep(session, now)
        return PassThrough(user, tuple(set_cookies))

    # -- reading and writing sessions (core/session_store.py) ---------------------------------

    def _with_session(
        self,
        request: IncomingRequest,
        now: float,
        then: Callable[[Session | None, list[str]], Decision],
    ) -> Decision:
        """Call ``then(session, set_cookies)`` with the request's session, if any.

        The cookie store answers at once (no I/O); a server-side store is read through an
        effect, and if it fails the request gets "temporarily unavailable", never a session.
        """
        values = cookie_values(request.headers.get("cookie"), self.session_cookie)
        if not values:
            return then(None, [])
        if self.sessions.stateless:
            loaded = self.sessions.from_cookie(values, now)
            return then(loaded.session, self._after_load(loaded))
        return self._loading(request, values, now, then)

    def _loading(
        self,
        request: IncomingRequest,
        values: list[str],
        now: float,
        then: Callable[[Session | None, list[str]], Decision],
    ) -> Flow:
        try:
            loaded = yield from self.sessions.load(values, now)
            decision = then(loaded.session, self._after_load(loaded))
            if isinstance(decision, OUTCOME_TYPES):
                return decision
            return (yield from decision)
        except StoreProblem as problem:
            return self._store_unavailable(request, problem)

    def _session_in_flow(
        self, request: IncomingRequest, now: float
    ) -> Generator[Any, Any, tuple[Session | None, list[str]]]:
        """The session inside a flow that is already under way: ``(session, set_cookies)``."""
        values = cookie_values(request.headers.get("cookie"), self.session_cookie)
        if not values:
            return None, []
        if self.sessions.stateless:
            loaded = self.sessions.from_cookie(values, now)
        else:
            loaded = yield from self.sessions.load(values, now)
        return loaded.session, self._after_load(loaded)

    def _after_load(self, loaded: LoadedSession) -> list[str]:
        """A cookie that named no live session is cleared, and a time-out is audited."""
        if loaded.session is not None:
            return []
        if loaded.expired is not None:
            self._audit("session_expired", reason=loaded.expired)
        return [self._clear_session()]

    def _renewed(
        self,
        session: Session,
        now: float,
        set_cookies: list[str],
        then: Callable[[Session, list[str]], Outcome],
    ) -> Decision:
        """Sliding renewal: a new cookie (cookie store) or a new time to live (server store)."""
        session = self.timeouts.renewed(session, now)
        if self.sessions.stateless:
            return then(session, [*set_cookies, self._session_cookie(session, now)])
        return self._renewing(session, now, set_cookies, then)

    def _renewing(
        self,
        session: Session,
        now: float,
        set_cookies: list[str],
        then: Callable[[Session, list[str]], Outcome],
    ) -> Flow:
        yield from self.sessions.save(session, now)
        return then(session, set_cookies)

    def _keep(self, session: Session, now: float, new: bool = False) -> Generator[Any, Any, list[str]]:
        """Write the session where it lives; return the Set-Cookie headers that needs."""
        if self.sessions.stateless:
            return [self._session_cookie(session, now)]
        yield from self.sessions.save(session, now)
        if not new:
            return []
        max_age = self.timeouts.cookie_max_age(session, now)
        return [self.cookie_policy.set_cookie(self.session_cookie, session.session_id, max_age)]

    def _store_unavailable(self, request: IncomingRequest, problem: StoreProblem) -> Respond:
        self._audit("session_store_unavailable", reason=str(problem)[:200])
        return self._unavailable(request)

    def _account_recheck_due(self, session: Session, now: float) -> bool:
        every = self.settings.account_recheck_seconds
        return bool(every) and now - session.account_checked_at >= every

    @staticmethod
    def _is_api_request(request: IncomingRequest) -> bool:
        """API/XHR callers get 401 JSON; only browser navigations are redirected."""
        if request.method not in ("GET", "HEAD"):
            return True
        headers = request.headers
        if headers.get("x-requested-with"):
            return True
        fetch_mode = headers.get("sec-fetch-mode")
        if fetch_mode is not None and fetch_mode != "navigate":
            return True
        accept = headers.get("accept") or ""
        return "application/json" in accept and "text/html" not in accept

    def _return_path_of(self, request: IncomingRequest) -> str:
        path = request.path  # normalised, still percent-encoded
        if request.query_string:
            path = f"{path}?{request.query_string}"
        return safe_return_path(path, reserved_prefix=self.prefix) or self.settings.default_return_path

    # -- forward-auth: nginx auth_request, Traefik forwardAuth, Caddy forward_auth --------------

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
            return json_response(202, {"status": "public"}, [("X-Accel-Expires", "0")])
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
        status = outcome.status if isinstance(outcome, Respond) else 401
        return json_response(401 if status == 403 else status, {"error": "unauthenticated"})

    def _authorised(self, user: User, set_cookies: list[str]) -> Respond:
        settings = self.settings
        headers = [
            ("X-Auth-Request-User", user.email),
            ("X-Auth-Request-Email", user.email),
            ("X-Auth-Request-Preferred-Username", user.identity.name),
            (settings.account_header, user.account.account_id),
        ]
        return json_response(202, {"status": "authenticated"}, headers, set_cookies)

    @staticmethod
    def _original_target(request: IncomingRequest) -> str | PathRefused | None:
        """The URI the proxy in front was asked for, normalised like any request path."""
        for header in ("x-original-uri", "x-forwarded-uri"):
            value = request.headers.get(header)
            if value:
                return normalise_target(value)
        return None

    def _original_uri(self, request: IncomingRequest) -> str | None:
        for header in ("x-original-uri", "x-forwarded-uri"):
            candidate = safe_return_path(request.headers.get(header), reserved_prefix=self.prefix)
            if candidate:
                return candidate
        return None

    # -- step 1: the sign-in page -------------------------------------------------------------

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
        return self._page(
            200,
            "sign_in.html",
            set_cookies=[*set_cookies, *csrf_cookies],
            return_path=return_path,
            csrf_token=csrf_token(self.settings.secret_keys, csrf_value),
        )

    # -- step 2: start a login attempt ------------------------------------------------------

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

    def _begin_attempt(
        self, cookies: Mapping[str, list[str]], return_path: str, set_cookies: list[str]
    ) -> Flow:
        now = self.clock()
        try:
            metadata = yield from self.rp.metadata(now)
        except ProviderError as error:
            self._audit("provider_unavailable", step="metadata", reason=str(error))
            return self._page(503, "unavailable.html", set_cookies=set_cookies)
        attempt = LoginAttempt.start(return_path, now)
        name, value = self.attempts.cookie_name(attempt.state), self.attempts.encode(attempt)
        for stale in self.attempts.to_drop_before_adding(cookies, len(name) + len(value) + 3, now):
            set_cookies.append(self.cookie_policy.delete_cookie(stale))
        set_cookies.append(self.cookie_policy.set_cookie(name, value, max_age=attempt.expires_at - int(now)))
        self._audit("sign_in_started")
        return redirect(self.rp.authorization_url(metadata, attempt), set_cookies)

    # -- steps 3, 4 and 5: the callback -------------------------------------------------------

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
            claims = yield from self.rp.redeem_code(code, attempt, now)
        except ProviderError as error:
            self._audit("provider_unavailable", step="token", reason=str(error))
            return self._page(503, "unavailable.html", set_cookies=set_cookies)
        except TokenRejected as error:
            self._audit("token_rejected", reason=error.reason)
            return self._page(401, "sign_in_failed.html", set_cookies=set_cookies)
        return (yield from self._admit(identity_from_claims(claims), attempt, set_cookies))

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

    def _admit(self, identity: Identity, attempt: LoginAttempt, set_cookies: list[str]) -> Flow:
        if not identity.email:
            self._audit("sign_in_failed", reason="no_email_claim", oid=identity.object_id)
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
        session = Session.start(User(identity, account), self.clock())
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

    def _look_up(self, identity: Identity) -> Generator[LookUpAccount, EffectResult, Account | None]:
        cached, answer = self.account_cache.get(identity, self.clock())
        if cached:
            return answer
        result = yield LookUpAccount(identity)
        if isinstance(result, LookupFailed):
            self._audit("lookup_failed", reason=result.reason, email=identity.email)
            raise LookupProblem(result.reason)
        value = result.value if isinstance(result, LookupReturned) else result
        if value is None or isinstance(value, Account):
            self.account_cache.put(identity, value, self.clock())
            return value
        self._audit("lookup_failed", reason=f"returned {type(value).__name__}, expected Account or None")
        raise LookupProblem("bad return type")

    # -- sign-out, userinfo, assets -----------------------------------------------------------

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

    def _stylesheet(self, request: IncomingRequest) -> Outcome:
        return static_response(self.pages.asset("cqrs.css"), "text/css; charset=utf-8")

    # -- probes for load balancers and orchestrators ------------------------------------------

    def _healthz(self, request: IncomingRequest) -> Outcome:
        """Liveness: the process answers. Deliberately checks nothing else."""
        return json_response(200, {"status": "ok"})

    def _readyz(self, request: IncomingRequest) -> Flow:
        """Readiness: provider metadata loaded (fetched now if needed); the cookie session
        store needs nothing. 503 until then, so a load balancer keeps traffic away."""
        try:
            yield from self.rp.metadata(self.clock())
        except ProviderError as error:
            return json_response(503, {"status": "not ready", "provider": str(error)[:200]})
        store = self.sessions.kind
        if not self.sessions.stateless:
            try:
                yield from self.sessions.ping()
            except StoreProblem as problem:
                return json_response(
                    503,
                    {
                        "status": "not ready",
                        "provider": "ok",
                        "session_store": f"{store}: {str(problem)[:200]}",
                    },
                )
        return json_response(200, {"status": "ready", "provider": "ok", "session_store": f"{store}: ok"})

    # -- helpers ----------------------------------------------------------------------------

    def _audit(self, event: str, **fields: object) -> None:
        """Log the security event, then tell this flow's observers (metrics)."""
        audit(event, **fields)
        for observe in self.observers:
            observe(event, fields)

    def _csrf_cookie(self, cookies: Mapping[str, list[str]]) -> tuple[str, list[str]]:
        existing = cookies.get(self.csrf_cookie, [""])[0]
        if existing:
            return existing, []
        value = new_csrf_cookie_value()
        return value, [self.cookie_policy.set_cookie(self.csrf_cookie, value)]

    def _csrf_ok(self, request: IncomingRequest, cookies: Mapping[str, list[str]], form: object) -> bool:
        if not isinstance(form, Mapping) or cross_origin(request.headers, self.settings.base_url):
            return False
        cookie_value = cookies.get(self.csrf_cookie, [""])[0]
        return csrf_token_valid(self.settings.secret_keys, cookie_value, form.get(FIELD_NAME))

    def _session_cookie(self, session: Session, now: float) -> str:
        max_age = self.timeouts.cookie_max_age(session, now)
        return self.cookie_policy.set_cookie(self.session_cookie, self.codec.encode(session), max_age)

    def _clear_session(self) -> str:
        return self.cookie_policy.delete_cookie(self.session_cookie)

    def _page(
        self, status: int, template: str, set_cookies: list[str] | tuple[str, ...] = (), **context: Any
    ) -> Respond:
        settings = self.settings
        html = self.pages.render(
            template,
            {
                "status": status,
                "prefix": self.prefix,
                "css_url": f"{self.prefix}/static/cqrs.css",
                "sign_in_url": f"{self.prefix}/sign_in",
                "help_email": settings.help_email,
                "help_phone": settings.help_phone,
                "help_url": settings.help_url,
                "contact_url": settings.contact_url,
                "collections_url": settings.collections_url,
                **context,
            },
        )
        return html_response(status, html, self.csp, set_cookies)

    def _no_account(self, identity: Identity, set_cookies: list[str]) -> Respond:
        return self._page(403, "no_account.html", set_cookies=set_cookies, email=identity.email)

    def _attempt_invalid(self, set_cookies: list[str]) -> Respond:
        return self._page(400, "attempt_invalid.html", set_cookies=set_cookies)

    def _form_expired(self) -> Respond:
        return self._page(403, "error.html", title="This form has expired", retry=True)

    def _bad_path(self, request: IncomingRequest) -> Respond:
        if request.is_websocket or self._is_api_request(request):
            return json_response(400, {"error": "invalid_path"})
        return self._page(400, "error.html", title="This address is not valid")

    def _unavailable(self, request: IncomingRequest) -> Respond:
        if self._is_api_request(request):
            return json_response(503, {"error": "temporarily_unavailable"}, [("Retry-After", "30")])
        return self._page(503, "unavailable.html")
