"""``api_paths``: API clients with an access token (RFC 6750), and nothing a browser needs.

A request there with ``Authorization: Bearer <token>`` is let through on the token alone:
the provider that issued it is found by its ``iss`` (read unverified, only to choose whose
keys verify it), the token is checked (``oidc.access_tokens``), the caller's CQRS account is
looked up as a person's would be (an application's by ``app:<client id>``), and
``access_rules`` apply to the token's roles. The app and the upstream then get the caller
exactly as they get a signed-in person. Without a token, a browser session still works
there (the app's own scripts), but nobody is sent to a sign-in page: a caller with neither
gets ``401`` and ``WWW-Authenticate: Bearer`` (RFC 6750 §3), with ``error=invalid_token``
for a token that was refused, ``403 insufficient_scope`` for one that grants too little,
and RFC 9470's ``insufficient_user_authentication`` where a rule wants a recent sign-in.

Checked tokens are remembered (by a hash of the token, until their ``exp``, a bounded
table), so that a script's next request costs no signature check.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

from .. import replies
from ..accounts import AccountCheck, LookupProblem
from ..authorisation import AccessRules, NeedsRole, NeedsStepUp, verdict
from ..context import RequestContext
from ..errors import ProviderError, TokenRejected
from ..identity import Identity, User
from ..oidc.access_tokens import ApiCaller
from ..oidc.client import RelyingParty
from ..oidc.providers import Providers
from ..oidc.tokens import unverified_issuer
from ..protocol import Decision, Effect, Flow, JsonReply, Outcome, PassThrough
from ..security.paths import PublicPaths

_REMEMBERED = 4096


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750 §2.1: the scheme in any
    case, one space, token68 characters); ``""`` for any other Authorization, ``None``
    for none."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        return ""
    return token.strip()


def challenge(status: int, error: str = "", description: str = "", **more: str) -> JsonReply:
    """The answer that refuses an API caller, with its RFC 6750 §3 challenge."""
    params = ['realm="CQRS"']
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{description}"')
    params += [f'{name}="{value}"' for name, value in more.items()]
    body: dict[str, object] = {"error": error or "unauthenticated"}
    return JsonReply(status, body, (("WWW-Authenticate", "Bearer " + ", ".join(params)),))


@dataclass(eq=False)
class BearerAccess:
    """``api_paths``. ``session_access``: what a request with a session but no token gets
    (the protected path's own handler)."""

    paths: PublicPaths  # api_paths, matched as public_paths are
    providers: Providers
    audiences: frozenset[str]
    scopes: frozenset[str]
    accounts: AccountCheck
    rules: AccessRules
    session_access: Callable[[RequestContext], Decision]
    _checked: OrderedDict[bytes, tuple[float, ApiCaller, str]] = field(default_factory=OrderedDict)

    def __call__(self, ctx: RequestContext) -> Decision:
        token = bearer_token(ctx.request.headers.get("authorization"))
        if token is None:
            if ctx.session is not None:
                return self.session_access(ctx)
            return challenge(401)
        if not token:
            ctx.audit("api_token_refused", reason="not_bearer")
            return challenge(401, "invalid_request", "Authorization must be Bearer")
        return self.check(ctx, token, ctx.request.path)

    def check(self, ctx: RequestContext, token: str, path: str) -> Flow:
        """``PassThrough(user)`` when ``token`` lets its caller reach ``path``, else the
        answer that refuses it (forward-auth asks for the original URI's path)."""
        try:
            caller, provider = yield from self._caller(ctx, token)
        except TokenRejected as refused:
            ctx.audit("api_token_refused", reason=refused.reason)
            if refused.reason == "insufficient_scope":
                return challenge(403, "insufficient_scope", "the token grants no access to this API")
            return challenge(401, "invalid_token", "the access token is not valid")
        except ProviderError as error:
            ctx.audit("provider_unavailable", step="access_token", reason=str(error))
            return replies.temporarily_unavailable()
        identity = self._identity(caller, provider)
        try:
            account = yield from self.accounts.look_up(ctx, identity)
        except LookupProblem:
            return replies.temporarily_unavailable()
        if account is None:
            ctx.audit("api_no_account", email=identity.email)
            return challenge(403, "insufficient_scope", "no CQRS account")
        return self._allowed(ctx, User(identity, account), caller, path)

    def _caller(
        self, ctx: RequestContext, token: str
    ) -> Generator[Effect, Any, tuple[ApiCaller, RelyingParty]]:
        key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        remembered = self._checked.get(key)
        if remembered is not None and ctx.now < remembered[0]:
            party = self.providers.named(remembered[2])
            assert party is not None
            return remembered[1], party
        party = yield from self.providers.by_issuer(unverified_issuer(token), ctx.now)
        if party is None:
            raise TokenRejected("wrong_issuer", "no configured provider issued it")
        caller = yield from party.verify_access_token(token, self.audiences, self.scopes, ctx.now)
        expires = caller.claims.get("exp")
        if isinstance(expires, int | float):
            if len(self._checked) >= _REMEMBERED:
                self._checked.popitem(last=False)
            self._checked[key] = (float(expires), caller, party.name)
        return caller, party

    @staticmethod
    def _identity(caller: ApiCaller, party: RelyingParty) -> Identity:
        identity = party.profile.identity(caller.claims)
        if caller.application:
            # No person: the account of the application is looked up as "app:<client id>".
            return application_identity(identity, caller.application)
        return identity

    def _allowed(self, ctx: RequestContext, user: User, caller: ApiCaller, path: str) -> Outcome:
        rule = self.rules.rule_for(path)
        auth_time = caller.claims.get("auth_time")
        found = verdict(rule, user, int(auth_time) if isinstance(auth_time, int) else 0, ctx.now)
        if isinstance(found, NeedsRole):
            ctx.audit("access_denied", reason="role", email=user.email, path=path[:200])
            return challenge(403, "insufficient_scope", "a role this path needs is missing")
        if isinstance(found, NeedsStepUp):
            # RFC 9470 §3: the client must get a token from a more recent sign-in.
            return challenge(
                401,
                "insufficient_user_authentication",
                "a more recent sign-in is needed",
                max_age=str(found.max_age),
            )
        return PassThrough(user)


def application_identity(identity: Identity, application: str) -> Identity:
    """An application has no email: its account is looked up as ``app:<client id>``."""
    return replace(identity, email=f"app:{application.lower()}", name=identity.name or application)
