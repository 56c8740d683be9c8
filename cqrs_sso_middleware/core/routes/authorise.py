"""What a signed-in person is told when an access rule stops them (``core/authorisation``):

* without a role the rule needs — **403**, "You do not have access to this part of CQRS",
  naming the role in the site's words (``role_labels``), with the help desk and an email
  already written asking for it; JSON for API and XHR calls. Nothing reaches the app or
  the upstream, and ``access_denied`` is audited;
* with a sign-in older than the rule allows — the step-up page (``/sign_in?max_auth_age=``),
  or 401 JSON naming it. The page then sends them to NHSmail with ``prompt=login``; they
  come back to a GET of the path (a POST is never replayed).

``GET /forbidden`` is the 403 page on its own, for nginx's ``error_page 403`` in front of
forward-auth: the rule is read from the original URI (or ``?roles=``). Anybody can put
words in that query, so the page and the prepared email name only roles the deployment
knows (a role some access rule names, or one with a ``role_labels`` entry), in its words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from .. import replies
from ..authorisation import (
    AccessRule,
    AccessRules,
    Allowed,
    NeedsRole,
    NeedsStepUp,
    forward_auth_rule,
    verdict,
)
from ..context import RequestContext
from ..identity import User
from ..protocol import IncomingRequest, Outcome, Page, Redirect
from ..security.htmx import HtmxNavigation
from ..security.original_uri import OriginalUri
from ..sessions.session import Session
from .sign_in_result import help_desk_mailto, organisation_of, utc_words


class Authorise:
    """The access rules of one deployment, and the answers that refuse. ``help_email``
    receives the access requests the 403 page offers to write."""

    def __init__(
        self,
        rules: AccessRules,
        role_labels: Mapping[str, str],
        original: OriginalUri,
        htmx: HtmxNavigation,
        help_email: str,
    ) -> None:
        self.rules = rules
        self.labels = dict(role_labels)
        # The roles a 403 page may name: every other name came from somebody's query.
        self.known_roles = frozenset([*self.labels, *(role for rule in rules.rules for role in rule.roles)])
        self.original = original
        self.htmx = htmx
        self.prefix = htmx.paths.prefix
        self.help_email = help_email

    def __bool__(self) -> bool:
        return bool(self.rules)

    def check(
        self,
        ctx: RequestContext,
        rule: AccessRule,
        session: Session,
        user: User,
        return_path: Callable[[RequestContext], str],
    ) -> Outcome | None:
        """``None`` when ``rule`` (the one of this request's path) lets ``user`` through,
        else the answer, which sends the person back to ``return_path(ctx)``."""
        found = verdict(rule, user, session.auth_time, ctx.now)
        if isinstance(found, Allowed):
            return None
        return self.refusal(ctx, found, user, ctx.request.path, return_path(ctx))

    def refusal(
        self,
        ctx: RequestContext,
        found: NeedsRole | NeedsStepUp,
        user: User,
        path: str,
        return_path: str,
        *,
        forward_auth: bool = False,
    ) -> Outcome:
        """``forward_auth``: JSON only (401 or 403), which is all a proxy in front reads."""
        if isinstance(found, NeedsRole):
            ctx.audit(
                "access_denied",
                reason="role",
                email=user.email,
                path=path[:200],
                roles=",".join(found.rule.roles),
            )
            return replies.forbidden() if ctx.api else self.forbidden_page(ctx, user, found.rule, path)
        ctx.audit("step_up_required", email=user.email, path=path[:200], max_age=found.max_age)
        if forward_auth:
            return replies.step_up_required(self.prefix, return_path, found.max_age)
        if ctx.api and not browser_navigation(ctx.request):
            back = self.htmx.return_path(ctx.request, return_path)
            return replies.step_up_required(
                self.prefix, back or return_path, found.max_age, navigate=back is not None
            )
        # A browser's form POST too: it comes back to a GET of the path, never a replay.
        return Redirect(f"{replies.sign_in_url(self.prefix, return_path)}&max_auth_age={found.max_age}")

    def forbidden_page(self, ctx: RequestContext, user: User, rule: AccessRule | None, path: str) -> Page:
        roles = [
            self.labels.get(role, role) for role in (rule.roles if rule else ()) if role in self.known_roles
        ]
        when = utc_words(int(ctx.now))
        lines = [
            "Hello,",
            "",
            "Please could you give me access to a part of the Calculating Quality Reporting Service (CQRS)",
            "that I cannot open.",
            "",
            f"NHSmail address: {user.email}",
            f"CQRS account: {user.account.account_id}",
            *([f"Organisation: {organisation_of(user.identity)}"] if organisation_of(user.identity) else []),
            *([f"Access needed: {' or '.join(roles)}"] if roles else []),
            f"Page: {path}",
            f"Time: {when}",
            "",
            "Thank you",
        ]
        return Page(
            "forbidden.html",
            403,
            {
                "roles": roles,
                "user": user,
                "access_request_url": help_desk_mailto(
                    self.help_email, "CQRS access request: " + user.email, lines
                ),
            },
        )

    def page(self, ctx: RequestContext) -> Outcome:
        """``GET /forbidden``: the 403 page, for a proxy in front that got a 403 from
        forward-auth (nginx ``error_page 403``)."""
        session = ctx.session
        if session is None:
            return Redirect(replies.sign_in_url(self.prefix, None))
        query = parse_qs(ctx.request.query_string)
        rule = forward_auth_rule_or_none(query.get("roles", [""])[0])
        original = self.original.target(ctx.request.headers)
        path = original.split("?", 1)[0] if isinstance(original, str) else "/"
        if rule is None and isinstance(original, str):
            rule = self.rules.rule_for(path)
        if ctx.api:
            return replies.forbidden()
        return self.forbidden_page(ctx, session.user, rule, path)


def browser_navigation(request: IncomingRequest) -> bool:
    """A page load or form post by a browser (not a script's call): it is shown pages."""
    headers = request.headers
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    accept = headers.get("accept") or ""
    return not headers.get("x-requested-with") and "text/html" in accept


def forward_auth_rule_or_none(roles: str) -> AccessRule | None:
    try:
        return forward_auth_rule(roles, None)
    except ValueError:
        return None
