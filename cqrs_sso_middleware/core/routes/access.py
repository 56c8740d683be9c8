"""Who may pass: protected paths, the account re-check, forward-auth and ``/userinfo``.

Protected paths are the per-request hot path: with the cookie store a signed-in request
performs no effect at all between account re-checks (the router loaded and, when due,
renewed the session before the handler runs)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

from .. import replies
from ..accounts import AccountCheck, LookupProblem
from ..authorisation import NeedsRole, NeedsStepUp, forward_auth_rule, verdict
from ..claim_headers import ClaimHeaders
from ..context import RequestContext
from ..identity import User, session_ref
from ..protocol import Decision, Effect, Empty, Flow, JsonReply, Outcome, PassThrough, Redirect
from ..security.header_values import header_value
from ..security.htmx import HtmxNavigation
from ..security.original_uri import AmbiguousOriginalUri, OriginalUri
from ..security.paths import PathRefused, PublicPaths
from ..security.redirects import ReturnPaths
from ..sessions.keeper import SessionParts
from ..sessions.session import Session
from .authorise import Authorise
from .bearer import BearerAccess, bearer_token
from .sign_in import SignInStarter
from .sign_in_result import SignInResults


@dataclass(eq=False)
class Access:
    """Protected paths and ``/userinfo``; ``recheck`` is shared with forward-auth.
    ``auto_redirect``: a person without a session goes straight to the provider (with one
    provider) instead of the sign-in page."""

    paths: ReturnPaths
    htmx: HtmxNavigation
    auto_redirect: bool
    starter: SignInStarter
    accounts: AccountCheck
    sessions: SessionParts
    results: SignInResults
    authorise: Authorise

    def protected(self, ctx: RequestContext) -> Decision:
        session = ctx.session
        if session is not None:
            if self.accounts.recheck_due(session, ctx.now):
                return self._rechecked(ctx, session)
            return self._let_through(ctx, session, session.user)
        if ctx.request.is_websocket:
            return replies.unauthenticated(self.paths.prefix)
        if ctx.api:
            back = self.htmx.return_path(ctx.request, self._return_path(ctx))
            return replies.unauthenticated(self.paths.prefix, back, navigate=back is not None)
        return_path = self._return_path(ctx)
        if self.auto_redirect and not self.starter.providers.several:
            # With several providers the person chooses: the sign-in page.
            return self.starter.begin(ctx, return_path)
        return Redirect(replies.sign_in_url(self.paths.prefix, return_path))

    def _rechecked(self, ctx: RequestContext, session: Session) -> Flow:
        user = yield from self.recheck(ctx, session)
        return self._let_through(ctx, session, user) if isinstance(user, User) else user

    def _let_through(self, ctx: RequestContext, session: Session, user: User) -> Outcome:
        """The app gets the request, unless an access rule of this path says otherwise."""
        if self.authorise:
            rule = self.authorise.rules.rule_for(ctx.request.path)
            if rule is not None:
                # The return path is worked out only when a rule answers (it is not cheap).
                refused = self.authorise.check(ctx, rule, session, user, self._return_path)
                if refused is not None:
                    return refused
        return PassThrough(user)

    def recheck(self, ctx: RequestContext, session: Session) -> Generator[Effect, Any, User | Outcome]:
        """Every ``account_recheck_seconds``: does CQRS still have an account for this user?
        Returns the (refreshed) ``User``, or the answer that refuses them."""
        try:
            account = yield from self.accounts.look_up(ctx, session.user.identity)
        except LookupProblem:
            return replies.unavailable(ctx)
        if account is None:
            ctx.audit("account_removed", email=session.user.email, session=session_ref(session.session_id))
            if not self.sessions.keeper.stateless:
                # Ended where it lives, so no instance accepts this cookie again. A store
                # failure raises StoreProblem: the router answers "temporarily unavailable".
                yield from self.sessions.keeper.end(session)
            ctx.session, ctx.kept = None, None
            ctx.set_cookies.append(self.sessions.cookies.clear())
            return self.results.no_account(
                ctx, session.user.identity, self._return_path(ctx), session.provider
            )
        user = User(session.user.identity, account)
        yield from self.sessions.writer.write(
            ctx, replace(session, user=user, account_checked_at=int(ctx.now), renewed_at=int(ctx.now))
        )
        return user

    def _return_path(self, ctx: RequestContext) -> str:
        return self.paths.of_request(ctx.request.path, ctx.request.query_string)

    def userinfo(self, ctx: RequestContext) -> Outcome:
        """The signed-in user as JSON, for the app's own scripts."""
        if ctx.session is None:
            return replies.unauthenticated(self.paths.prefix)
        identity, account = ctx.session.user.identity, ctx.session.user.account
        return JsonReply(
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
                # Every role, from the token's roles and groups and the account's own.
                "roles": sorted(ctx.session.user.roles),
            },
        )


@dataclass(eq=False)
class ForwardAuth:
    """``/auth`` for nginx ``auth_request``, Traefik ``forwardAuth`` and Caddy
    ``forward_auth``: ``202`` with the user in headers for a valid session, else ``401``;
    never a redirect (the proxy in front turns the 401 into the sign-in page, nginx
    ``error_page 401``). The original URI (``forward_auth_uri_header`` alone,
    ``security.original_uri``) is judged like any path, and becomes the sign-in page's
    return path."""

    access: Access
    public: PublicPaths
    original: OriginalUri
    claim_headers: ClaimHeaders
    account_header: str
    bearer: BearerAccess | None = None  # api_paths, when configured

    def __call__(self, ctx: RequestContext) -> Decision:
        original = self.original.target(ctx.request.headers)
        if isinstance(original, AmbiguousOriginalUri):
            # A client's copy of the other header (Caddy and Traefik pass it through), or a
            # proxy in front that sets another header than the one configured.
            ctx.audit("ambiguous_original_uri", believed=original.header)
            return JsonReply(400, {"error": "ambiguous_original_uri"})
        if isinstance(original, PathRefused):
            ctx.audit("path_refused", reason=original.reason, endpoint="auth")
            return JsonReply(400, {"error": "invalid_path"})
        if original is not None and original.split("?", 1)[0].split("#", 1)[0] in self.public:
            # An answer about a path, not a session: a proxy that caches auth answers by
            # cookie (the nginx example) must never reuse it for another path.
            # X-Accel-Expires is honoured by nginx even where Cache-Control is ignored.
            return Empty(202, (("X-Accel-Expires", "0"),))
        path = (original or "/").split("?", 1)[0]
        token = bearer_token(ctx.request.headers.get("authorization"))
        if self.bearer is not None and token is not None and path in self.bearer.paths:
            return self._bearer(ctx, token, path)
        session = ctx.session
        if session is None:
            return replies.unauthenticated(self.access.paths.prefix, self._return_path(ctx))
        if self.access.accounts.recheck_due(session, ctx.now):
            return self._rechecked(ctx, session, original)
        return self._decide(ctx, session, session.user, original)

    def _bearer(self, ctx: RequestContext, token: str, path: str) -> Flow:
        """An API path's access token, checked as ``api_paths`` check it: 202 with the
        caller in headers, or the same refusal (never a sign-in page)."""
        assert self.bearer is not None
        outcome = yield from self.bearer.check(ctx, token, path)
        return self.allowed(outcome.user) if isinstance(outcome, PassThrough) and outcome.user else outcome

    def _decide(self, ctx: RequestContext, session: Session, user: User, original: str | None) -> Outcome:
        """202, or the rule's refusal: the location's own (``?roles=``, ``?max_auth_age=``)
        or the ``access_rules`` entry of the original path. Always JSON (``api``)."""
        query = parse_qs(ctx.request.query_string)
        try:
            rule = forward_auth_rule(query.get("roles", [""])[0], query.get("max_auth_age", [""])[0])
        except ValueError:
            ctx.audit("request_refused", reason="invalid_rule")
            return JsonReply(400, {"error": "invalid_rule"})
        path = (original or "/").split("?", 1)[0]
        rule = rule or self.access.authorise.rules.rule_for(path)
        found = verdict(rule, user, session.auth_time, ctx.now)
        if isinstance(found, NeedsRole | NeedsStepUp):
            return self.access.authorise.refusal(
                ctx, found, user, path, self._return_path(ctx), forward_auth=True
            )
        return self.allowed(user)

    def _return_path(self, ctx: RequestContext) -> str:
        return (
            self.original.return_path(ctx.request.headers, self.access.paths.prefix)
            or self.access.paths.default
        )

    def _rechecked(self, ctx: RequestContext, session: Session, original: str | None) -> Flow:
        user = yield from self.access.recheck(ctx, session)
        if isinstance(user, User):
            return self._decide(ctx, session, user, original)
        if isinstance(user, JsonReply) and user.status == 503:
            return user
        # The account is gone and the session ended: the proxy in front sends the person
        # to the sign-in page, which explains.
        return replies.unauthenticated(self.access.paths.prefix)

    def allowed(self, user: User) -> Empty:
        """202 with an empty body: nginx reads only the head of an ``auth_request`` answer
        and closes the connection when a body follows (oauth2-proxy answers the same way)."""
        email = header_value(user.email)
        return Empty(
            202,
            (
                ("X-Auth-Request-User", email),
                ("X-Auth-Request-Email", email),
                ("X-Auth-Request-Preferred-Username", header_value(user.identity.name)),
                (self.account_header, header_value(user.account.account_id)),
                *self.claim_headers.values(user, every=True),
            ),
        )
