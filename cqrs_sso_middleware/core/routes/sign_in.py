"""Steps 1 and 2 of the CQRS sign-on user guide: the sign-in page, and Sign In → NHSmail.

Step 1, "click on the Sign In button": ``GET /sign_in`` shows the CQRS page (or sends a
person who is already signed in back where they were going). Step 2, "redirected to the
NHSmail login page": ``POST /start`` (CSRF-protected) opens a login attempt — state,
nonce, PKCE verifier, in a cookie of its own — and sends the browser to the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from .. import replies
from ..authorisation import AccessRule, AccessRules, NeedsStepUp, verdict
from ..context import RequestContext
from ..errors import ProviderError
from ..oidc.client import RelyingParty
from ..oidc.providers import Providers
from ..protocol import Decision, Flow, Outcome, Page, Redirect
from ..security.cookies import CookieNames, CookiePolicy
from ..security.csrf import CsrfGuard
from ..security.htmx import HtmxNavigation
from ..security.original_uri import OriginalUri
from ..security.redirects import ReturnPaths
from ..security.request_numbers import MIN_AUTH_AGE_SECONDS, auth_age
from ..sessions.attempts import AttemptCookies, LoginAttempt
from ..sessions.keeper import SessionCookies
from ..sessions.session import SessionTimeouts


class SignInStarter:
    """Opens a login attempt and sends the browser to the provider (RFC 9700 §2.1: PKCE,
    state and nonce on every attempt). Used by the Sign In button, and by protected paths
    when ``auto_redirect`` skips the sign-in page.

    ``prompt`` (OIDC Core §3.1.2.1): ``select_account`` when the person asked to sign in
    with a different NHSmail account; ``login`` on every attempt with ``shared_devices``,
    so that NHSmail asks for the password even when its own session, or a Windows Primary
    Refresh Token, would have let the previous person at a shared PC straight through.

    ``prompt=login`` is a request, not a proof: it sits in a URL the browser can edit. Such
    a sign-in (and a step-up) is proven by the ID token's ``auth_time`` alone, which the
    callback checks (``oidc.tokens.auth_time_of``)."""

    def __init__(
        self,
        providers: Providers,
        attempts: AttemptCookies,
        policy: CookiePolicy,
        names: CookieNames,
    ) -> None:
        self.providers = providers
        self.attempts = attempts
        self.policy = policy
        # What the last sign-in or sign-out left to show: stale once a new sign-in starts.
        self.stale_on_start = (names.result, names.provider_signed_out)

    def begin(
        self,
        ctx: RequestContext,
        return_path: str,
        prompt: str = "",
        max_age: int = 0,
        provider: RelyingParty | None = None,
    ) -> Flow:
        """Send the browser to ``provider`` (the first one unless given). ``max_age``: a
        step-up — the provider must ask for the password now (``prompt=login``), and the
        callback checks the new sign-in's time."""
        rp = provider or self.providers.first
        try:
            metadata = yield from rp.metadata(ctx.now)
        except ProviderError as error:
            ctx.audit(
                "provider_unavailable", step="metadata", reason=str(error), **self.providers.audit_fields(rp)
            )
            return replies.unavailable(ctx)
        fresh = rp.registration.shared_devices or bool(max_age)
        prompt = "login" if fresh else prompt
        attempt = LoginAttempt.start(return_path, ctx.now, max_age, fresh_sign_in=fresh, provider=rp.name)
        name, value = self.attempts.cookie_name(attempt.state), self.attempts.encode(attempt)
        for stale in self.attempts.to_drop_before_adding(ctx.cookies, len(name) + len(value) + 3, ctx.now):
            ctx.set_cookies.append(self.policy.delete_cookie(stale))
        for shown in self.stale_on_start:
            if shown in ctx.cookies:
                ctx.set_cookies.append(self.policy.delete_cookie(shown))
        ctx.set_cookies.append(self.policy.set_cookie(name, value, max_age=attempt.expires_at - int(ctx.now)))
        ctx.audit(
            "sign_in_started", **self.providers.audit_fields(rp), **({"prompt": prompt} if prompt else {})
        )
        return Redirect(rp.authorization_url(metadata, attempt, prompt))


@dataclass(eq=False)
class SignIn:
    """``GET /sign_in`` and ``POST /start``. ``timeouts`` name the lifetimes the page's
    notices speak of; ``rules`` say when a signed-in person must sign in again first."""

    paths: ReturnPaths
    htmx: HtmxNavigation
    timeouts: SessionTimeouts
    starter: SignInStarter
    csrf: CsrfGuard
    cookies: SessionCookies
    rules: AccessRules
    original: OriginalUri

    def page(self, ctx: RequestContext) -> Outcome:
        query = parse_qs(ctx.request.query_string)
        query_rd = query.get("rd", [""])[0]
        # Behind nginx, `error_page 401 = /oauth2/sign_in` keeps the original URI in
        # X-Original-URI (safer than ?rd=$request_uri, which nginx does not escape).
        return_path = (
            self.paths.safe(query_rd or None)
            or self.original.return_path(ctx.request.headers, self.paths.prefix)
            or self.paths.default
        )
        asked = query.get("max_auth_age", [""])[0]
        asked_age = auth_age(asked) if asked else None
        if asked and asked_age is None:
            ctx.audit("request_refused", reason="invalid_max_auth_age")
            return replies.bad_request(ctx, "invalid_max_auth_age")
        if ctx.session is not None:
            return self._signed_in(ctx, return_path, asked_age)
        if ctx.api:
            # Behind nginx, API and XHR calls are sent here too: the same 401 as embedded.
            back = self.htmx.return_path(ctx.request, return_path)
            return replies.unauthenticated(self.paths.prefix, back or return_path, navigate=back is not None)
        return Page(
            "sign_in.html",
            200,
            {
                "return_path": return_path,
                "csrf_token": self.csrf.token(ctx),
                "notice": self._notice(ctx),
                "providers": self._offered(query.get("provider", [""])[0]),
            },
        )

    def _signed_in(self, ctx: RequestContext, return_path: str, asked_age: int | None) -> Outcome:
        """A signed-in person goes on, unless their sign-in is too old for where they go."""
        assert ctx.session is not None
        max_age = self._step_up_for(ctx, return_path, asked_age) or self._refused_in_front(ctx, return_path)
        if not max_age:
            return Redirect(return_path)
        if ctx.api:
            back = self.htmx.return_path(ctx.request, return_path)
            return replies.step_up_required(
                self.paths.prefix, back or return_path, max_age, navigate=back is not None
            )
        return Page(
            "step_up.html",
            401,
            {
                "return_path": return_path,
                "csrf_token": self.csrf.token(ctx),
                "max_auth_age": max_age,
                "within": duration(max_age),
                "user": ctx.session.user,
                "provider": ctx.session.provider,
                "provider_label": self._provider(ctx.session.provider).label,
            },
        )

    def _step_up_for(self, ctx: RequestContext, return_path: str, asked: int | None) -> int:
        """The sign-in age a signed-in person must meet to go on to ``return_path``, when
        theirs is too old: from ``?max_auth_age=`` (a forward-auth location's own rule) or
        the access rule of that path; 0 when they may simply go on."""
        session = ctx.session
        assert session is not None
        rule = AccessRule(("/**",), (), asked) if asked else None
        rule = rule or self.rules.rule_for(return_path.split("?", 1)[0])
        found = verdict(rule, session.user, session.auth_time, ctx.now)
        return found.max_age if isinstance(found, NeedsStepUp) else 0

    def _refused_in_front(self, ctx: RequestContext, return_path: str) -> int:
        """A proxy in front showed this page *in place of* ``return_path`` (nginx
        ``error_page 401``, Caddy ``handle_response``: the original URI names that page, not
        this one), so forward-auth refused this signed-in person there — a location's own
        ``max_auth_age`` that this request does not carry. Sending them back would loop;
        they are asked for a fresh sign-in instead (the shortest age a rule may ask, which
        meets every longer one). 0 when the page was asked for itself."""
        original = self.original.raw(ctx.request.headers)
        if not isinstance(original, str) or original.startswith(self.paths.prefix + "/"):
            return 0
        in_place_of = self.paths.safe(original)
        return MIN_AUTH_AGE_SECONDS if in_place_of == return_path else 0

    def _notice(self, ctx: RequestContext) -> str:
        """Why the person was signed out, shown once: the session this very request carried,
        or the notice cookie a moment ago's request left. Fixed sentences only, so nothing a
        cookie says is ever shown."""
        reason = ctx.ended
        if reason is not None:
            ctx.ended = None  # said here, so no notice cookie for later
        else:
            reason = next(iter(ctx.cookies.get(self.cookies.names.notice, [])), "")
            if reason:
                ctx.set_cookies.append(self.cookies.clear_notice())
        idle, longest = duration(self.timeouts.idle_seconds), duration(self.timeouts.max_seconds)
        return {
            "idle": f"You were signed out because you had not used CQRS for {idle}.",
            "max": f"You were signed out because you had been signed in for {longest}, "
            "the longest a CQRS session can last.",
            "ended": "Your CQRS session has ended: you signed out, or it was ended elsewhere.",
        }.get(reason, "")

    def _offered(self, name: str) -> list[dict[str, str]]:
        """The buttons: none of their own with one provider (the page's one Sign In button),
        else one per provider — or only the one a link named (``?provider=``)."""
        providers = self.starter.providers
        if not providers.several:
            return []
        return [choice for choice in providers.choices() if choice["name"] == name] or providers.choices()

    def _provider(self, name: str) -> RelyingParty:
        return self.starter.providers.named(name) or self.starter.providers.first

    def start(self, ctx: RequestContext) -> Decision:
        return self._start(ctx)

    def start_link(self, ctx: RequestContext) -> Outcome:
        """``GET /start?provider=…&rd=…``: a link for one provider (an intranet's "Sign in
        with your smartcard"). A sign-in starts only from the CSRF-checked form, so the link
        shows the sign-in page with that provider's button alone; without ``provider`` it is
        405, as ever."""
        query = parse_qs(ctx.request.query_string, max_num_fields=10)
        if "provider" not in query:
            return replies.method_not_allowed(ctx, ["POST"])
        provider = self._chosen(ctx, query["provider"][0])
        if provider is None:
            return replies.bad_request(ctx, "unknown_provider")
        return_path = self.paths.safe(query.get("rd", [""])[0] or None)
        url = replies.sign_in_url(self.paths.prefix, return_path)
        return Redirect(f"{url}{'&' if '?' in url else '?'}provider={provider.name}")

    def _chosen(self, ctx: RequestContext, name: str) -> RelyingParty | None:
        """The provider a form or link names: required when there are several."""
        providers = self.starter.providers
        found = providers.named(name) if name or not providers.several else None
        if found is None:
            ctx.audit("request_refused", reason="unknown_provider")
        return found

    def _start(self, ctx: RequestContext) -> Flow:
        form = yield from self.csrf.checked_form(ctx, "start")
        if form is None:
            return replies.form_expired()
        provider = self._chosen(ctx, form.get("provider", ""))
        if provider is None:
            return replies.bad_request(ctx, "unknown_provider")
        return_path = self.paths.or_default(form.get("rd"))
        # "Sign in with a different NHSmail account", from the no-account page: NHSmail shows
        # its account picker instead of signing the same person in again silently.
        prompt = "select_account" if form.get("account") == "another" else ""
        asked = form.get("max_auth_age", "")
        max_age = auth_age(asked) if asked else 0
        if max_age is None:
            ctx.audit("request_refused", reason="invalid_max_auth_age")
            return replies.bad_request(ctx, "invalid_max_auth_age")
        return (yield from self.starter.begin(ctx, return_path, prompt, max_age, provider))


def duration(seconds: int) -> str:
    """``1 minute``, ``20 minutes``, ``1 hour``, ``12 hours``: whole hours when it is, else
    minutes (at least one)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" if hours == 1 else f"{hours} hours"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"
