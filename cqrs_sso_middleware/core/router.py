"""The decision for every request: one path, one route, one session, one outcome.

``Router.handle(request)`` returns an outcome when no I/O is needed (a public path, and
every signed-in request with the cookie store), or a flow of effects that ends in one. In
order, for every request:

1. a browser's WebSocket upgrade from another origin is refused (RFC 6455 §10.2);
2. the path is normalised (``security.paths``); an ambiguous one is refused with 400
   before any rule sees it, and every later rule — and the app — gets the normal form;
3. the route is chosen: an endpoint under ``path_prefix``, a probe, a public path, or a
   protected path;
4. for routes that need it, the session is loaded **once** (decrypted from the cookie, or
   read from the store) and, on protected paths and forward-auth, renewed when due;
5. the route's handler decides;
6. the session it kept is written once, and its cookies and audit events go on the outcome.

A store that fails anywhere in that (``StoreProblem``) is "temporarily unavailable": never
a session, never a pass-through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import replies
from .accounts import AccountCheck
from .claim_headers import ClaimHeaders
from .context import RequestContext
from .oidc.client import RelyingParty
from .oidc.client_auth import ClientAssertionSigner
from .oidc.providers import Providers
from .protocol import (
    AuditEvent,
    Decision,
    Flow,
    IncomingRequest,
    Outcome,
    PassThrough,
    is_flow,
)
from .routes.access import Access, ForwardAuth
from .routes.authorise import Authorise
from .routes.callback import Callback
from .routes.logout_channels import LogoutChannels
from .routes.probes import Probes
from .routes.sign_in import SignIn, SignInStarter
from .routes.sign_in_result import SignInResults
from .routes.sign_out import SignOut
from .security.cookies import CookieNames, CookiePolicy, cookie_values
from .security.csrf import CsrfGuard
from .security.original_uri import OriginalUri
from .security.paths import PathRefused, PublicPaths, normalise_path
from .sessions.attempts import AttemptCookies
from .sessions.keeper import LoadedSession, SessionCookies, SessionKeeper, SessionWriter, StoreProblem
from .sessions.session import Deployment, SessionTimeouts

if TYPE_CHECKING:
    from ..settings import Settings

Handler = Callable[[RequestContext], Decision]
# nginx's auth_request subrequest keeps the original method.
_FORWARD_AUTH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    session: bool = False  # load the session before the handler runs
    renews: bool = False  # ... and renew it (sliding idle time-out) when due
    # True: always JSON (forward-auth, probes); False: always pages (our own forms, posted by
    # browsers); None: decided from the request (context.wants_json).
    api: bool | None = None


class Router:
    """One deployment's decisions. Built once (by ``runtime.Runtime``); ``handle`` per request."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        signers: Mapping[str, ClientAssertionSigner] | None = None,
        store_description: str = "",
    ) -> None:
        site, session = settings.site, settings.session
        self.clock = clock
        self.base_url = site.base_url.lower()
        self.prefix = site.path_prefix
        self.public = PublicPaths(site.public_paths, site.case_insensitive_paths)
        policy = CookiePolicy(secure=site.is_https)
        names = CookieNames(session.cookie_name, secure=site.is_https)
        self.timeouts = SessionTimeouts(session.session_idle_seconds, session.session_max_seconds)
        signers = signers or {}
        self.providers = Providers(
            [
                RelyingParty(
                    provider,
                    callback_uri(site.redirect_uri, provider.provider_name, first=n == 0),
                    signers.get(provider.provider_name),
                )
                for n, provider in enumerate(settings.providers)
            ]
        )
        self.keeper = SessionKeeper(
            session.session_store,
            session.secret_keys,
            self.timeouts,
            Deployment(settings.provider.issuer, settings.provider.client_id),
            session.session_key_prefix,
            frozenset(role for rule in settings.access.access_rules for role in rule.roles),
            frozenset(party.name for party in self.providers.all),
        )
        self.cookies = SessionCookies(self.keeper, names, policy)
        writer = SessionWriter(self.keeper, self.cookies)
        accounts = AccountCheck(settings.lookup.account_recheck_seconds)
        attempts = AttemptCookies(session.secret_keys, names.attempt_prefix)
        csrf = CsrfGuard(session.secret_keys, site.base_url, names, policy)
        starter = SignInStarter(self.providers, attempts, policy, names)
        original = OriginalUri(settings.proxy.forward_auth_uri_header)
        authorise = Authorise(settings, original)
        sign_in = SignIn(settings, starter, csrf, self.cookies, authorise.rules, original)
        results = SignInResults(
            session.secret_keys,
            self.keeper.deployment,
            names,
            policy,
            csrf,
            self.prefix,
            settings.pages.help_email,
            {"": self.providers.first.service, **{party.name: party.service for party in self.providers.all}},
        )
        callback = Callback(
            settings.lookup.allowed_email_domains,
            self.providers,
            attempts,
            policy,
            self.keeper,
            writer,
            accounts,
            results,
        )
        self.access = Access(
            settings, starter, accounts, self.keeper, writer, self.cookies, results, authorise
        )
        forward_auth = ForwardAuth(
            settings, self.access, self.public, ClaimHeaders(settings.access.claim_headers), original
        )
        sign_out = SignOut(
            f"{site.base_url}{self.prefix}/signed_out", self.providers, csrf, self.keeper, self.cookies
        )
        logout = LogoutChannels(self.providers, self.keeper, self.cookies)
        probes = Probes(self.providers, self.keeper, store_description or self.keeper.kind)
        self._protected = Route(self.access.protected, session=True, renews=True)
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/sign_in"): Route(sign_in.page, session=True),
            ("POST", "/start"): Route(sign_in.start, api=False),
            ("GET", "/start"): Route(sign_in.start_link, api=False),
            # The session is loaded so that a step-up can keep it (routes/callback.py). The
            # first provider answers at /callback, each other one at /callback/<name>.
            **{
                ("GET", callback_path(party.name, first=n == 0)): Route(callback.at(party.name), session=True)
                for n, party in enumerate(self.providers.all)
            },
            ("GET", "/sign_in_result"): Route(results.page),
            ("GET", "/forbidden"): Route(authorise.page, session=True),
            ("GET", "/sign_out"): Route(sign_out.page, session=True),
            ("POST", "/sign_out"): Route(sign_out.post, session=True, api=False),
            ("GET", "/signed_out"): Route(sign_out.signed_out),
            ("GET", "/frontchannel_logout"): Route(logout.front),
            ("POST", "/backchannel_logout"): Route(logout.back, api=True),
            ("GET", "/userinfo"): Route(self.access.userinfo, session=True, api=True),
            ("GET", "/static/cqrs.css"): Route(probes.stylesheet),
            **{
                (method, "/auth"): Route(forward_auth, session=True, renews=True, api=True)
                for method in _FORWARD_AUTH_METHODS
            },
        }
        self.probes: dict[str, Route] = {}
        if site.health_path:
            self.probes[site.health_path] = Route(probes.healthz, api=True)
        if site.ready_path:
            self.probes[site.ready_path] = Route(probes.readyz, api=True)

    # -- 1–3: origin, path, route ----------------------------------------------------------------

    def handle(self, request: IncomingRequest) -> Decision:
        """The outcome for ``request``, or a flow of effects that ends in one."""
        if request.is_websocket and self._cross_origin_websocket(request):
            return replace(
                replies.forbidden_websocket(),
                events=(AuditEvent("websocket_refused", {"reason": "cross_origin"}),),
            )
        path = normalise_path(request.path)
        if isinstance(path, PathRefused) or (request.root_path and not _under_root(path, request.root_path)):
            ctx = RequestContext(request, self.clock())
            ctx.audit(
                "path_refused", reason=path.reason if isinstance(path, PathRefused) else "outside_mount"
            )
            return self._finish(ctx, replies.bad_path(ctx), None)
        changed = None
        if path != request.path:
            changed = path
            request = replace(request, path=path)
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return self._endpoint(request, changed)
        probe = self.probes.get(path)
        if probe is not None and request.method in ("GET", "HEAD"):
            return self._run(probe, RequestContext(request, self.clock(), api=True), changed)
        if path in self.public:
            return PassThrough(None, path=changed)
        return self._with_session(self._protected, RequestContext(request, self.clock()), changed)

    def _cross_origin_websocket(self, request: IncomingRequest) -> bool:
        """A browser's upgrade names its page's origin (RFC 6455 §4.1 item 8, §10.2): one
        from another origin, a sibling sub-domain included, is cross-site WebSocket
        hijacking, which SameSite=Lax does not stop. Non-browser clients send no Origin."""
        origin = request.headers.get("origin")
        return origin is not None and origin.lower() != self.base_url

    def _endpoint(self, request: IncomingRequest, changed: str | None) -> Decision:
        endpoint = request.path[len(self.prefix) :]
        ctx = RequestContext(request, self.clock())
        if request.is_websocket:
            return self._finish(ctx, replies.not_found(ctx), changed)
        method = "GET" if request.method == "HEAD" else request.method
        route = self.routes.get((method, endpoint))
        if route is None:
            allowed = sorted(m for m, e in self.routes if e == endpoint)
            answer = replies.method_not_allowed(ctx, allowed) if allowed else replies.not_found(ctx)
            return self._finish(ctx, answer, changed)
        if route.api is not None:
            ctx.api = route.api
        if route.session:
            return self._with_session(route, ctx, changed)
        return self._run(route, ctx, changed)

    # -- 4: the session, loaded once -------------------------------------------------------------

    def _with_session(self, route: Route, ctx: RequestContext, changed: str | None) -> Decision:
        values = cookie_values(ctx.request.headers.get("cookie"), self.cookies.name)
        if not values:
            return self._run(route, ctx, changed)
        if self.keeper.stateless:  # the cookie is the session: no I/O (the hot path)
            self._loaded(route, ctx, self.keeper.from_cookie(values, ctx.now))
            return self._run(route, ctx, changed)
        return self._loading(route, ctx, values, changed)

    def _loading(self, route: Route, ctx: RequestContext, values: list[str], changed: str | None) -> Flow:
        try:
            self._loaded(route, ctx, (yield from self.keeper.load(values, ctx.now)))
        except StoreProblem as problem:
            return self._finish(ctx, self._store_unavailable(ctx, problem), changed)
        decision = self._run(route, ctx, changed)
        return (yield from decision) if is_flow(decision) else decision

    def _loaded(self, route: Route, ctx: RequestContext, loaded: LoadedSession) -> None:
        session = loaded.session
        if session is not None:
            ctx.session = session
            if route.renews and self.timeouts.needs_renewal(session, ctx.now):
                ctx.keep(self.timeouts.renewed(session, ctx.now))
            return
        # The cookie named no live session: it is cleared, a time-out is audited, and the
        # sign-in page is told why the person has to sign in again.
        if loaded.refused is not None:
            ctx.audit("session_refused", reason=loaded.refused)
        if loaded.expired is not None:
            ctx.audit("session_expired", reason=loaded.expired)
        ctx.ended = loaded.expired or "ended"
        ctx.set_cookies.append(self.cookies.clear())

    # -- 5–6: the handler, then one write and one finished outcome -------------------------------

    def _run(self, route: Route, ctx: RequestContext, changed: str | None) -> Decision:
        decision = route.handler(ctx)
        if not is_flow(decision) and (ctx.kept is None or self.keeper.stateless):
            return self._finish(ctx, decision, changed)
        return self._finishing(ctx, decision, changed)

    def _finishing(self, ctx: RequestContext, decision: Decision, changed: str | None) -> Flow:
        try:
            outcome = (yield from decision) if is_flow(decision) else decision
            if ctx.kept is not None and not self.keeper.stateless:
                yield from self.keeper.save(ctx.kept[0], ctx.now)
        except StoreProblem as problem:
            ctx.kept = None
            outcome = self._store_unavailable(ctx, problem)
        return self._finish(ctx, outcome, changed)

    def _store_unavailable(self, ctx: RequestContext, problem: StoreProblem) -> Outcome:
        ctx.audit("session_store_unavailable", reason=str(problem)[:200])
        return replies.unavailable(ctx)

    def _finish(self, ctx: RequestContext, outcome: Outcome, changed: str | None) -> Outcome:
        """The outcome with this request's cookies and events: the kept session's cookie,
        the notice of a session that ended, and what the handler added."""
        if ctx.kept is not None:
            session, new = ctx.kept
            cookie = self.cookies.issue(session, ctx.now, new)
            if cookie is not None:
                ctx.set_cookies.append(cookie)
        if ctx.ended is not None:
            ctx.set_cookies.append(self.cookies.notice(ctx.ended))
        if type(outcome) is PassThrough:
            if not ctx.set_cookies and not ctx.events and changed is None:
                return outcome  # the hot path: nothing to add
            return PassThrough(outcome.user, tuple(ctx.set_cookies), changed, tuple(ctx.events))
        if not ctx.set_cookies and not ctx.events:
            return outcome
        return replace(
            outcome,
            set_cookies=(*ctx.set_cookies, *outcome.set_cookies),
            events=(*ctx.events, *outcome.events),
        )


def callback_path(provider: str, *, first: bool) -> str:
    """The callback of one provider: ``/callback`` for the first, ``/callback/<name>`` for
    each other one, so that where a browser comes back says which provider sent it (RFC
    9700 §4.4.2: distinct redirect URIs defend against mix-up where a provider sends no
    RFC 9207 ``iss``). One provider keeps the one redirect URI it always had."""
    return "/callback" if first else f"/callback/{provider}"


def callback_uri(redirect_uri: str, provider: str, *, first: bool) -> str:
    return redirect_uri if first else f"{redirect_uri}/{provider}"


def _under_root(path: str, root_path: str) -> bool:
    root = root_path.rstrip("/")
    return not root or path == root or path.startswith(root + "/")
