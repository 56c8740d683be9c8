"""Every refusal the package answers, in one shape each: 400, 401, 403, 404, 405, 503.

A browser navigation gets a page (with the help desk); an API or XHR call, forward-auth and
a websocket get JSON. Which one is decided once per request (``context.wants_json``, kept
on the context as ``api``). Keeping every shape here is what keeps them from drifting: the 401
body always names the sign-in page, the 503 always says ``temporarily_unavailable`` and
``Retry-After``.
"""

from __future__ import annotations

from urllib.parse import quote

from .context import RequestContext
from .protocol import JsonReply, Page

RETRY_AFTER_SECONDS = "30"
RETRY_AFTER = (("Retry-After", RETRY_AFTER_SECONDS),)


def sign_in_url(prefix: str, return_path: str | None) -> str:
    if not return_path:
        return f"{prefix}/sign_in"
    return f"{prefix}/sign_in?rd={quote(return_path, safe='')}"


def unauthenticated(prefix: str, return_path: str | None = None, *, navigate: bool = False) -> JsonReply:
    """401: no session. Names the sign-in page, in the body and in ``WWW-Authenticate``
    (RFC 9110 §11.6.1 asks a 401 to carry one); ``navigate``: in ``HX-Redirect`` too, for
    htmx (``security.htmx``)."""
    url = sign_in_url(prefix, return_path)
    return JsonReply(
        401,
        {"error": "unauthenticated", "sign_in_url": url},
        (("WWW-Authenticate", f'CQRS-SSO realm="CQRS", sign_in="{url}"'), *_navigating(url, navigate)),
    )


def _navigating(url: str, navigate: bool) -> tuple[tuple[str, str], ...]:
    return (("HX-Redirect", url),) if navigate else ()


def step_up_required(prefix: str, return_path: str, max_age: int, *, navigate: bool = False) -> JsonReply:
    """401 for an API call to a path whose rule needs a more recent sign-in: the page that
    asks for it is named, as for ``unauthenticated``."""
    url = f"{sign_in_url(prefix, return_path)}&max_auth_age={max_age}"
    return JsonReply(
        401,
        {"error": "step_up_required", "sign_in_url": url, "max_auth_age": max_age},
        (
            ("WWW-Authenticate", f'CQRS-SSO realm="CQRS", sign_in="{url}", max_age="{max_age}"'),
            *_navigating(url, navigate),
        ),
    )


def forbidden() -> JsonReply:
    """403 for an API call by a signed-in person without a role the path's rule needs."""
    return JsonReply(403, {"error": "forbidden"})


def temporarily_unavailable() -> JsonReply:
    return JsonReply(503, {"error": "temporarily_unavailable"}, RETRY_AFTER)


def json_error(status: int, error: str) -> JsonReply:
    return JsonReply(status, {"error": error})


def unavailable(ctx: RequestContext) -> JsonReply | Page:
    """503: the provider, the account lookup or the session store could not answer. Never a
    session, never a pass-through: the person is told to try again in a few minutes."""
    return temporarily_unavailable() if ctx.api else Page("unavailable.html", 503, {}, RETRY_AFTER)


def no_account() -> JsonReply:
    """403 for an API caller, step 5 of the CQRS user guide (a browser is shown the page,
    ``routes.sign_in_result``)."""
    return JsonReply(403, {"error": "no_account"})


def bad_path(ctx: RequestContext) -> JsonReply | Page:
    return bad_request(ctx, "invalid_path")


def bad_request(ctx: RequestContext, error: str) -> JsonReply | Page:
    """400: a request that can be read more than one way, or not at all (an ambiguous path,
    a number that is not one, two headers naming different addresses)."""
    if ctx.api:
        return JsonReply(400, {"error": error})
    return Page("error.html", 400, {"title": "This address is not valid"})


def not_found(ctx: RequestContext) -> JsonReply | Page:
    if ctx.api:
        return JsonReply(404, {"error": "not_found"})
    return Page("error.html", 404, {"title": "Page not found"})


def method_not_allowed(ctx: RequestContext, allowed: list[str]) -> JsonReply | Page:
    allow = (("Allow", ", ".join(allowed)),)
    if ctx.api:
        return JsonReply(405, {"error": "method_not_allowed"}, allow)
    return Page("error.html", 405, {"title": "This address cannot be used that way"}, allow)


def sign_in_failed() -> Page:
    """401, step 4 of the user guide: the provider refused, or its answer was not trusted."""
    return Page("sign_in_failed.html", 401)


def attempt_invalid() -> Page:
    """400: a callback that belongs to no sign-in of this browser (expired, used, forged)."""
    return Page("attempt_invalid.html", 400)


def form_expired() -> Page:
    """403: a form post without a valid CSRF token, or from another site."""
    return Page("error.html", 403, {"title": "This form has expired", "retry": True})


def forbidden_websocket() -> JsonReply:
    """403 for a websocket upgrade from another origin (closed before it is accepted)."""
    return JsonReply(403, {"error": "forbidden_origin"})
