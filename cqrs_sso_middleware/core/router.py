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

from . import replies
from .context import RequestContext
from .protocol import (
    AuditEvent,
    Decision,
    Flow,
    IncomingRequest,
    Outcome,
    PassThrough,
    is_flow,
)
from .security.cookies import cookie_values
from .security.paths import PathRefused, PublicPaths, normalise_path
from .sessions.keeper import LoadedSession, SessionParts, StoreProblem
from .sessions.session import SessionTimeouts

Handler = Callable[[RequestContext], Decision]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    session: bool = False  # load the session before the handler runs
    renews: bool = False  # ... and renew it (sliding idle time-out) when due
    # True: always JSON (forward-auth, probes); False: always pages (our own forms, posted by
    # browsers); None: decided from the request (context.wants_json).
    api: bool | None = None


class Router:
    """One deployment's decisions: ``handle`` per request. Built once, with its handlers
    already made (``composition.build_router``): it only chooses among them."""

    def __init__(
        self,
        routes: Mapping[tuple[str, str], Route],
        protected: Route,
        probes: Mapping[str, Route],
        *,
        base_url: str,
        prefix: str,
        public: PublicPaths,
        api: Route | None = None,
        api_paths: PublicPaths | None = None,
        sessions: SessionParts,
        timeouts: SessionTimeouts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.routes = dict(routes)  # (method, endpoint under prefix): route
        self.probes = dict(probes)  # the health and readiness paths
        self._protected = protected
        self.base_url = base_url.lower()
        self.prefix = prefix
        self.public = public
        self._api, self.api_paths = api, api_paths
        self.keeper = sessions.keeper
        self.cookies = sessions.cookies
        self.timeouts = timeouts
        self.clock = clock

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
        api = self._api_route(path)
        if api is not None:
            return self._with_session(api, RequestContext(request, self.clock(), api=True), changed)
        return self._with_session(self._protected, RequestContext(request, self.clock()), changed)

    def _api_route(self, path: str) -> Route | None:
        """``api_paths``' route (``routes/bearer.py``), when ``path`` is one of them."""
        if self._api is None or self.api_paths is None or path not in self.api_paths:
            return None
        return self._api

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
