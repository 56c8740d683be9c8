"""How a sign-in that did not end in a session is told: a redirect to a page that can be
reloaded, bookmarked and shared (POST/redirect/GET).

The callback URL holds a single-use ``code`` and ``state``: reloading it, or going back to
it, can only say "this sign in link has expired". So when a sign-in ends without a
session — no CQRS account (step 5 of the CQRS sign-on user guide), NHSmail refused (step 4),
a cancel, a deployment NHSmail does not accept, an outage — the callback keeps what happened
in a short-lived encrypted cookie and answers ``303`` to ``GET /sign_in_result``, which shows
the page for as long as the cookie lives. Opened without the cookie (a bookmark, a link
sent to a colleague, a cookie that expired) it sends the browser to the sign-in page:
never a 400, and never someone else's result.

The cookie is AES-256-GCM under a key derived from ``secret_keys`` for this purpose and
this deployment (``sessions.session.KeyRing``): the email address in it is personal data.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import quote

from .. import replies
from ..context import RequestContext
from ..identity import Identity, has_control_characters
from ..protocol import Outcome, Page, Redirect
from ..security.cookies import CookieNames, CookiePolicy
from ..security.csrf import CsrfGuard
from ..sessions.session import Deployment, KeyRing

RESULT_LIFETIME_SECONDS = 900
ResultKind = Literal[
    "no_account",
    "failed",
    "cancelled",
    "misconfigured",
    "unavailable",
    "too_many_groups",
    "no_auth_time",
    "not_fresh",
    "assurance_too_low",
]
_KINDS: tuple[ResultKind, ...] = get_args(ResultKind)
_ASSOCIATED = b"cqrs-sso.sign-in-result.v1"
# Claims that name the person's organisation, when the directory sends one (Entra can emit
# the user's company name as an optional claim).
ORGANISATION_CLAIMS = ("companyName", "organisation", "organization")
_MAX_ORGANISATION = 120


@dataclass(frozen=True, slots=True)
class SignInResult:
    """What a finished sign-in that did not give a session comes to, and for whom."""

    kind: ResultKind
    at: int
    return_path: str = "/"
    email: str = ""
    organisation: str = ""
    provider: str = ""  # the name of the provider the sign-in was with ("": the first)


class SignInResults:
    """The result cookie of one deployment, and the page that shows it."""

    def __init__(
        self,
        secret_keys: tuple[str, ...],
        deployment: Deployment,
        names: CookieNames,
        policy: CookiePolicy,
        csrf: CsrfGuard,
        prefix: str,
        help_email: str,
        services: Mapping[str, str] | None = None,
    ) -> None:
        self._ring = KeyRing(secret_keys, b"sign-in-result v1", deployment)
        self.name = names.result
        self.policy = policy
        self.csrf = csrf
        self.prefix = prefix
        self.help_email = help_email
        # Each provider's name in the pages' sentences, by provider name; "" is the first.
        self.services = dict(services or {})

    # -- the callback's side -----------------------------------------------------------------

    def no_account(
        self, ctx: RequestContext, identity: Identity, return_path: str, provider: str = ""
    ) -> Outcome:
        """Step 5 of the user guide, at sign-in or when a re-check finds the account gone."""
        result = SignInResult(
            "no_account", int(ctx.now), return_path, identity.email, organisation_of(identity), provider
        )
        return self.show(ctx, result)

    def show(self, ctx: RequestContext, result: SignInResult) -> Outcome:
        """The callback's answer: JSON for an API caller, else the cookie and a 303."""
        if ctx.api:
            return _json_reply(ctx, result.kind)
        ctx.set_cookies.append(self.policy.set_cookie(self.name, self._seal(result), RESULT_LIFETIME_SECONDS))
        return Redirect(f"{self.prefix}/sign_in_result")

    def clear(self) -> str:
        return self.policy.delete_cookie(self.name)

    def _seal(self, result: SignInResult) -> str:
        record = [
            result.kind,
            result.at,
            result.return_path,
            result.email,
            result.organisation,
            result.provider,
        ]
        sealed = self._ring.seal(json.dumps(record, separators=(",", ":")).encode(), _ASSOCIATED)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def _open(self, value: str, now: float) -> SignInResult | None:
        try:
            opened = self._ring.open(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), _ASSOCIATED)
            if opened is None:
                return None
            kind, at, return_path, email, organisation, provider = json.loads(opened)
        except (binascii.Error, ValueError, TypeError):
            return None
        if kind not in _KINDS or not isinstance(at, int) or now - at > RESULT_LIFETIME_SECONDS:
            return None
        return SignInResult(kind, at, str(return_path), str(email), str(organisation), str(provider))

    # -- GET /sign_in_result ---------------------------------------------------------------

    def page(self, ctx: RequestContext) -> Outcome:
        result = None
        for value in ctx.cookies.get(self.name, ()):
            result = self._open(value, ctx.now)
            if result is not None:
                break
        if result is None:
            return Redirect(replies.sign_in_url(self.prefix, None))
        if ctx.api:
            return _json_reply(ctx, result.kind)
        retry_url = replies.sign_in_url(self.prefix, result.return_path)
        when = utc_words(result.at)
        service = self.services.get(result.provider) or self.services.get("", "NHSmail")
        if result.kind == "no_account":
            return Page(
                "no_account.html",
                403,
                {
                    "email": result.email,
                    "organisation": result.organisation,
                    "csrf_token": self.csrf.token(ctx),
                    "return_path": result.return_path,
                    "access_request_url": access_request_mailto(self.help_email, result, when, service),
                    "provider": result.provider,
                    "service": service,
                },
            )
        if result.kind == "cancelled":
            return Page("cancelled.html", 200, {"retry_url": retry_url})
        if result.kind == "misconfigured":
            return Page("misconfigured.html", 500, {"when": when})
        if result.kind == "unavailable":
            return Page("unavailable.html", 503, {"sign_in_url": retry_url}, replies.RETRY_AFTER)
        if result.kind == "too_many_groups":
            return Page("too_many_groups.html", 403, {"when": when})
        if result.kind == "no_auth_time":
            return Page("no_auth_time.html", 403, {"when": when})
        if result.kind == "assurance_too_low":
            return Page("assurance_too_low.html", 403, {"sign_in_url": retry_url})
        if result.kind == "not_fresh":
            return Page("not_fresh.html", 401, {"sign_in_url": retry_url})
        return Page("sign_in_failed.html", 401, {"sign_in_url": retry_url, "service": service})


def _json_reply(ctx: RequestContext, kind: ResultKind) -> Outcome:
    if kind == "unavailable":
        return replies.temporarily_unavailable()
    if kind == "no_account":
        return replies.no_account()
    status, error = {
        "cancelled": (401, "sign_in_cancelled"),
        "failed": (401, "sign_in_failed"),
        "misconfigured": (500, "sign_in_not_set_up"),
        "too_many_groups": (403, "too_many_groups"),
        "no_auth_time": (403, "sign_in_time_unknown"),
        "not_fresh": (401, "sign_in_not_fresh"),
        "assurance_too_low": (403, "assurance_too_low"),
    }[kind]
    return replies.json_error(status, error)


def organisation_of(identity: Identity) -> str:
    """The organisation the directory names for this person, if any (for the help desk)."""
    for claim in ORGANISATION_CLAIMS:
        value = identity.claims.get(claim)
        if isinstance(value, str) and value.strip() and not has_control_characters(value):
            return value.strip()[:_MAX_ORGANISATION]
    return ""


def utc_words(moment: int) -> str:
    """``2 December 2026, 14:05 UTC``: a time a help desk can match to its logs."""
    when = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return f"{when.day} {when:%B %Y, %H:%M} UTC"


def access_request_mailto(help_email: str, result: SignInResult, when: str, service: str = "NHSmail") -> str:
    """A ``mailto:`` link (RFC 6068) to the help desk, with the request already written:
    the verified NHSmail address, the organisation when the claims name one, and the time.
    Every part is percent-encoded as UTF-8 (RFC 6068 §2), line breaks as ``%0D%0A`` (§5)."""
    lines = [
        "Hello,",
        "",
        "Please could you give me access to the Calculating Quality Reporting Service (CQRS).",
        f"I signed in to {service} successfully, but CQRS said no CQRS account is associated "
        "with my address.",
        "",
        f"{'NHSmail' if service == 'NHSmail' else 'Email'} address: {result.email}",
        *([f"Organisation: {result.organisation}"] if result.organisation else []),
        f"Time of sign in: {when}",
        "",
        "Thank you",
    ]
    return help_desk_mailto(help_email, "CQRS access request: " + result.email, lines)


def help_desk_mailto(help_email: str, subject: str, lines: list[str]) -> str:
    """A ``mailto:`` link to the help desk with ``subject`` and ``lines`` as the body."""
    body = "\r\n".join(lines)
    return (
        f"mailto:{quote(help_email, safe='@')}?subject={quote(subject, safe='')}&body={quote(body, safe='')}"
    )
