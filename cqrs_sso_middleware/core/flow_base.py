"""What every route of the flow needs: sessions, pages, CSRF, the account lookup, audit.

``FlowBase`` holds one deployment's state (settings, the provider cache, cookie names, the
session keeper) and the helpers the route modules share. The routes themselves live by
concern — ``sign_in.py`` (seed steps 1–5), ``access.py`` (protected paths, forward-auth,
userinfo), ``sign_out.py``, ``probes.py`` — and ``flow.py`` puts them together and
dispatches each request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from typing import Any
from urllib.parse import urlsplit

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
    Respond,
)
from .attempts import AttemptCookies, LoginAttempt, SpentStates
from .audit import audit
from .config import CoreSettings
from .cookies import CookieNames, CookiePolicy, cookie_values
from .csrf import FIELD_NAME, cross_origin, csrf_token_valid, new_csrf_cookie_value
from .errors import ProviderError
from .identity import Account, AccountCache, Identity, has_control_characters
from .oidc import ProviderState, RelyingParty
from .paths import PathRefused, compile_path_pattern, normalise_target
from .redirects import safe_return_path
from .responses import (
    PageRenderer,
    content_security_policy,
    html_response,
    json_response,
    redirect,
)
from .session_store import LoadedSession, SessionKeeper, StoreProblem
from .sessions import Deployment, Session, SessionTimeouts


class LookupProblem(Exception):
    """The account lookup failed (raised, timed out, returned garbage)."""


class FlowBase:
    """One deployment's state and the helpers every route uses."""

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
        self.cookie_names = CookieNames(settings.cookie_name, secure=settings.is_https)
        self.session_cookie = self.cookie_names.session
        self.csrf_cookie = self.cookie_names.csrf
        self.notice_cookie = self.cookie_names.notice
        self.attempts = AttemptCookies(settings.secret_keys, self.cookie_names.attempt_prefix)
        self.timeouts = SessionTimeouts(settings.session_idle_seconds, settings.session_max_seconds)
        self.sessions = SessionKeeper(
            settings.session_store,
            settings.secret_keys,
            self.timeouts,
            Deployment(settings.issuer, settings.client_id),
            settings.session_key_prefix,
        )
        self.codec = self.sessions.codec
        self.spent_states = SpentStates()  # the cookie store's per-process memory of states
        self.account_cache = AccountCache(settings.account_cache_seconds)
        # Called with (event, fields) for every audit event; the proxy's metrics listen here.
        self.observers: list[Callable[[str, Mapping[str, object]], None]] = []
        self.prefix = settings.path_prefix
        self.forward_auth_path = f"{self.prefix}/auth"
        self._public = [compile_path_pattern(p) for p in settings.public_paths]
        issuer = urlsplit(settings.issuer)
        self.csp = content_security_policy([f"{issuer.scheme}://{issuer.netloc}"])

    def _is_public(self, path: str) -> bool:
        # Tomcat, Jetty and Spring drop ";…" path parameters before routing, so "/admin;.css"
        # is served as "/admin": a path with one never counts as public, whatever pattern
        # (such as "re:.*\\.css") its text would match.
        if ";" in path or "%3B" in path:
            return False
        return any(matches(path) for matches in self._public)

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
        """A cookie that named no live session is cleared, a time-out is audited, and a
        short-lived notice tells the sign-in page why the person has to sign in again."""
        if loaded.session is not None:
            return []
        if loaded.refused is not None:
            self._audit("session_refused", reason=loaded.refused)
        if loaded.expired is not None:
            self._audit("session_expired", reason=loaded.expired)
        notice = loaded.expired or "ended"
        return [self._clear_session(), self.cookie_policy.set_cookie(self.notice_cookie, notice, max_age=600)]

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

    def _is_api_request(self, request: IncomingRequest) -> bool:
        """API/XHR callers get 401 JSON; only browser navigations are redirected. Forward-auth
        is always an API: nginx reads its status and headers, never a page."""
        if request.method not in ("GET", "HEAD") or request.path == self.forward_auth_path:
            return True
        headers = request.headers
        if headers.get("x-requested-with"):
            return True
        fetch_mode = headers.get("sec-fetch-mode")
        if fetch_mode is not None and fetch_mode != "navigate":
            return True
        accept = headers.get("accept") or ""
        return "application/json" in accept and "text/html" not in accept

    def _look_up(self, identity: Identity) -> Generator[LookUpAccount, EffectResult, Account | None]:
        cached, answer = self.account_cache.get(identity, self.clock())
        if cached:
            return answer
        result = yield LookUpAccount(identity)
        if isinstance(result, LookupFailed):
            self._audit("lookup_failed", reason=result.reason, email=identity.email)
            raise LookupProblem(result.reason)
        value = result.value if isinstance(result, LookupReturned) else result
        if isinstance(value, Account) and has_control_characters(value.account_id):
            # The account id is sent on as a header value (X-CQRS-Account): refused here.
            self._audit("lookup_failed", reason="account id with control characters")
            raise LookupProblem("account id with control characters")
        if value is None or isinstance(value, Account):
            self.account_cache.put(identity, value, self.clock())
            return value
        self._audit("lookup_failed", reason=f"returned {type(value).__name__}, expected Account or None")
        raise LookupProblem("bad return type")

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

    # -- shared by sign-in and access: starting an attempt, the forward-auth original URI --

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
