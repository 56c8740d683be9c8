"""Does CQRS have an account for this person? The question the callback and the periodic
re-check both ask, answered the same way.

The lookup is an effect (the runtime runs the deployer's callable under its time-out and
concurrency bound). A failure — it raised, timed out, or answered neither an ``Account`` nor
``None`` — is *not* "no account": the caller answers "temporarily unavailable" and creates
no session. An account id with a control character is refused too: it travels on as a
header value (``X-CQRS-Account``), where a CR/LF would split the header (RFC 9110 §5.5).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NoReturn

from .context import RequestContext
from .identity import Account, Identity, has_control_characters
from .interpreter import unknown_effect
from .protocol import LookUpAccount, LookupFailed, LookupReturned
from .sessions.session import Session


class LookupProblem(Exception):
    """The account lookup failed; the request fails closed (503)."""


class AccountCheck:
    def __init__(self, recheck_seconds: int) -> None:
        self.recheck_seconds = recheck_seconds

    def recheck_due(self, session: Session, now: float) -> bool:
        """Every ``account_recheck_seconds`` a signed-in person's account is asked for again,
        so that a withdrawn account stops working within that time."""
        every = self.recheck_seconds
        return bool(every) and now - session.account_checked_at >= every

    def look_up(
        self, ctx: RequestContext, identity: Identity
    ) -> Generator[LookUpAccount, Any, Account | None]:
        result = yield LookUpAccount(identity)
        match result:
            case LookupReturned(account=None):
                return None
            case LookupReturned(account=Account() as account):
                if has_control_characters(account.account_id):
                    return self._failed(ctx, identity, "account id with control characters")
                return account
            case LookupReturned(account=other):
                return self._failed(
                    ctx, identity, f"returned {type(other).__name__}, expected Account or None"
                )
            case LookupFailed(reason=reason):
                return self._failed(ctx, identity, reason)
            case _:
                unknown_effect(result)

    @staticmethod
    def _failed(ctx: RequestContext, identity: Identity, reason: str) -> NoReturn:
        ctx.audit("lookup_failed", reason=reason, email=identity.email)
        raise LookupProblem(reason)
