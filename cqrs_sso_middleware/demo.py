"""The demo: a small CQRS "Message centre" app behind the middleware, and the NHSmail-like
provider, both on loopback. ``cqrs-sso demo`` / ``make demo`` run it.

Demo users (password ``cqrs-demo``): ``gp.user@nhs.net`` has a CQRS account (step 3 of the
CQRS sign-on user guide: the message centre); ``new.user@nhs.net`` has NHSmail but no CQRS
account (step 5: "no CQRS account is associated with …"); ``approver@nhs.net`` has an
account and the NHSmail app role CQRS.Approver, which the demo's access rules ask for on
/approvals. Any other address or a wrong password is refused by the provider (step 4).

The demo's sign-in page offers a second provider too, shaped like NHS CIS2 (the NHS Care
Identity): the same people, with national RBAC roles; the approver's CIS2 job role
``R8001`` is mapped to CQRS.Approver (``role_mapping``), so /approvals opens either way.
"""

from __future__ import annotations

import errno
import html
import secrets
import signal
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from werkzeug.wrappers import Response as WSGIResponse

from .core.identity import Account, Identity, User
from .drivers.asgi import ASGISSOMiddleware
from .drivers.wsgi import SSOMiddleware
from .provider import Cis2LikeProvider, DemoClient, DemoUser, NHSmailLikeProvider, one_server
from .serving import BackgroundASGIServer, BackgroundWSGIServer, bind_socket
from .settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEMO_TENANT_ID = "8e1f2b4c-3d5a-4f6e-9a7b-0c1d2e3f4a5b"
DEMO_CLIENT_ID = "cqrs-demo-client"
DEMO_CLIENT_SECRET = "cqrs-demo-client-secret"  # noqa: S105 - a published demo value
DEMO_PASSWORD = "cqrs-demo"  # noqa: S105 - a published demo value
DEMO_CIS2_REALM = "cis2"
DEMO_CIS2_CLIENT_ID = "cqrs-demo-cis2-client"
DEMO_CIS2_CLIENT_SECRET = "cqrs-demo-cis2-client-secret"  # noqa: S105 - a published demo value
# National RBAC assignments of the demo people at the CIS2-like provider (the first is the
# role each selects at sign-in).
DEMO_NRBAC_ROLES: dict[str, tuple[dict[str, Any], ...]] = {
    "gp.user@nhs.net": (
        {
            **{"person_roleid": "555021935107", "role_code": "S8000:G8000:R8000"},
            **{"role_name": '"Clinical":"Clinical Provision":"Clinical Practitioner Access Role"'},
            **{"org_code": "Y00001", "org_name": "Demo Surgery", "activity_codes": ["B0264", "B0360"]},
        },
    ),
    "approver@nhs.net": (
        {
            **{"person_roleid": "555021935108", "role_code": "S8000:G8001:R8001"},
            **{"role_name": '"Admin":"Management":"Practice Manager"'},
            **{"org_code": "QWE", "org_name": "Demo ICB", "activity_codes": ["B0172"]},
        },
    ),
    "new.user@nhs.net": (
        {
            **{"person_roleid": "555021935109", "role_code": "S8000:G8000:R8000"},
            **{"role_name": '"Clinical":"Clinical Provision":"Clinical Practitioner Access Role"'},
            **{"org_code": "Y00002", "org_name": "Riverside Practice"},
        },
    ),
}
GP_USER = "gp.user@nhs.net"
NEW_USER = "new.user@nhs.net"
APPROVER = "approver@nhs.net"
# Access rules of the demo (docs/authorisation.md): approvals for one Entra app role, the
# administration pages for a role nobody in the demo has, declarations only with a sign-in
# at most 15 minutes old (a step-up).
DEMO_ACCESS_RULES = (
    {"paths": ["/approvals", "/approvals/**"], "roles": ["CQRS.Approver"]},
    {"paths": ["/admin", "/admin/**"], "roles": ["CQRS.Admin"]},
    {"paths": ["/declarations", "/declarations/**"], "max_auth_age_seconds": 900},
)
DEMO_ROLE_LABELS = {"CQRS.Approver": "CQRS approver", "CQRS.Admin": "CQRS administrator"}
PAGES = {"/approvals": "Approvals", "/admin": "Administration", "/declarations": "Declarations"}
APP_PORT = 8000
PROVIDER_PORT = 8001


def demo_users() -> list[DemoUser]:
    return [
        DemoUser(GP_USER, DEMO_PASSWORD, "Dr Gita Patel", "0f4b3c1e-6d7a-4b8c-9e2f-1a3b5c7d9e0f"),
        DemoUser(
            NEW_USER,
            DEMO_PASSWORD,
            "Nia Evans",
            "7c2e9a41-5b3d-4f6a-8e1c-2d4f6a8b0c1e",
            company_name="Riverside Practice (Y00002)",
        ),
        DemoUser(
            APPROVER,
            DEMO_PASSWORD,
            "Alex Approver",
            "3a9d5e27-1c4b-4e8f-b6a2-9d0c1e2f3a4b",
            roles=("CQRS.Approver",),
        ),
    ]


def demo_account_lookup(identity: Identity) -> Account | None:
    """The demo's CQRS accounts: the GP user's and the approver's; the new user has none."""
    if identity.email == GP_USER:
        return Account(
            "CQRS-0001", GP_USER, {"organisation": "Demo Surgery (Y00001)", "role": "GP practice user"}
        )
    if identity.email == APPROVER:
        return Account("CQRS-0003", APPROVER, {"organisation": "Demo ICB (QWE)", "role": "Approver"})
    return None


def _message_centre(user: User | None, path: str = "/") -> str:
    if user is None:
        return "<p>No user was injected.</p>"
    name, email = html.escape(user.display_name), html.escape(user.email)
    organisation = html.escape(user.account.attributes.get("organisation", ""))
    title = next((words for prefix, words in PAGES.items() if path.startswith(prefix)), "Message centre")
    roles = html.escape(", ".join(sorted(user.roles)) or "none")
    links = " · ".join(f'<a href="{prefix}">{words}</a>' for prefix, words in PAGES.items())
    return f"""<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><title>{title} – CQRS</title>
<link rel="stylesheet" href="/oauth2/static/cqrs.css"></head>
<body><header class="banner"><div class="banner-inner"><span class="nhs-logo" aria-hidden="true">NHS</span>
<span class="service-name">Calculating Quality Reporting Service</span></div></header>
<main id="main" class="page"><h1>{title}</h1>
<p>Welcome, <strong>{name}</strong> ({email}).</p>
<p>Organisation: {organisation}. Roles: {roles}.</p>
<nav aria-label="CQRS"><p><a href="/messages">Message centre</a> · {links}</p></nav>
<div class="card"><h2>Messages</h2><p>You have no new messages.</p></div>
<form method="post" action="/oauth2/sign_out"><button type="submit" class="button">Sign out</button></form>
</main></body></html>"""


def message_centre_asgi() -> Starlette:
    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse(_message_centre(request.scope.get("cqrs_sso.user"), request.url.path))

    return Starlette(routes=[Route("/", home), Route("/{page:path}", home)])


def message_centre_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    body = _message_centre(environ.get("cqrs_sso.user"), environ.get("PATH_INFO", "/"))
    return WSGIResponse(body, content_type="text/html; charset=utf-8")(environ, start_response)


def demo_client(client_id: str, secret: str, app_url: str, callback: str, channel: str) -> DemoClient:
    """The demo app's registration with one provider: its callback under ``/oauth2``, and
    the logout it is told of (``channel``: ``frontchannel`` or ``backchannel``)."""
    logout = f"{app_url}/oauth2/{channel}_logout"
    return DemoClient(
        client_id,
        secret,
        redirect_uris=(f"{app_url}/oauth2/{callback}",),
        post_logout_redirect_uris=(f"{app_url}/oauth2/signed_out",),
        frontchannel_logout_uri=logout if channel == "frontchannel" else "",
        backchannel_logout_uri=logout if channel == "backchannel" else "",
    )


def demo_provider(provider_url: str, app_url: str) -> NHSmailLikeProvider:
    client = demo_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, app_url, "callback", "frontchannel")
    # The demo's registration has the auth_time optional claim, which its step-up rule on
    # /declarations needs (docs/nhsmail.md asks NHSmail's helpdesk for it).
    return NHSmailLikeProvider(provider_url, DEMO_TENANT_ID, demo_users(), [client], sends_auth_time=True)


def demo_cis2_provider(provider_url: str, app_url: str) -> Cis2LikeProvider:
    """The CIS2-like provider: the same people, with national RBAC roles."""
    secret = DEMO_CIS2_CLIENT_SECRET
    client = demo_client(DEMO_CIS2_CLIENT_ID, secret, app_url, "callback/cis2", "backchannel")
    users = [replace(user, nrbac_roles=DEMO_NRBAC_ROLES.get(user.email, ())) for user in demo_users()]
    return Cis2LikeProvider(provider_url, DEMO_CIS2_REALM, users, [client])


def demo_providers(provider_url: str) -> list[dict[str, Any]]:
    """``providers`` of the two-provider demo: NHSmail first, then the CIS2-like one."""
    return [
        {
            "name": "nhsmail",
            "issuer": f"{provider_url}/{DEMO_TENANT_ID}/v2.0",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
        },
        {
            "name": "cis2",
            "profile": "cis2",
            "issuer": f"{provider_url}/{DEMO_CIS2_REALM}/oauth2",
            "client_id": DEMO_CIS2_CLIENT_ID,
            "client_secret": DEMO_CIS2_CLIENT_SECRET,
            "role_mapping": {"cis2:R8001": "CQRS.Approver"},
        },
    ]


def demo_settings(
    provider_url: str, app_url: str, *, two_providers: bool = False, **overrides: Any
) -> Settings:
    """The demo's settings: NHSmail alone, or (``two_providers``) NHSmail and CIS2."""
    provider: dict[str, Any] = {
        "issuer": f"{provider_url}/{DEMO_TENANT_ID}/v2.0",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
    }
    if two_providers:
        provider = {"providers": demo_providers(provider_url)}
    values: dict[str, Any] = {
        **provider,
        "secret_keys": (secrets.token_urlsafe(32),),
        "base_url": app_url,
        "account_lookup": demo_account_lookup,
        "default_return_path": "/",
        # One process: the memory store lets sign-out revoke, "sign out everywhere" and
        # the provider's front-channel logout work in the demo.
        "session_store": "memory",
        "access_rules": DEMO_ACCESS_RULES,
        "role_labels": DEMO_ROLE_LABELS,
        **overrides,
    }
    return Settings(**values)


@dataclass
class DemoStack:
    provider: NHSmailLikeProvider
    provider_server: BackgroundASGIServer
    app_server: BackgroundASGIServer | BackgroundWSGIServer
    wsgi_middleware: SSOMiddleware | None = None
    cis2: Cis2LikeProvider | None = None  # the second provider, on the same server

    def stop(self) -> None:
        self.app_server.stop()  # the ASGI middleware closes its client at lifespan shutdown
        if self.wsgi_middleware is not None:
            self.wsgi_middleware.close()
        self.provider_server.stop()


class PortInUse(Exception):
    """A port the demo or the provider needs is taken; the message names it and the flag."""


def bind_or_explain(host: str, port: int, flag: str) -> socket.socket:
    try:
        return bind_socket(host, port)
    except OSError as error:
        reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
        raise PortInUse(f"port {port} on {host} {reason}; choose another with {flag}") from None


def start_demo(
    app_port: int = APP_PORT,
    provider_port: int = PROVIDER_PORT,
    variant: Literal["asgi", "wsgi"] = "asgi",
    host: str = "127.0.0.1",
    two_providers: bool = True,
) -> DemoStack:
    """Start provider and app on loopback; ports 0 pick free ones (tests). The sign-in page
    offers NHSmail and the CIS2-like provider, or (``two_providers=False``) NHSmail alone."""
    provider_sock = bind_or_explain(host, provider_port, "--provider-port (make demo PROVIDER_PORT=…)")
    provider_url = "http://{}:{}".format(*provider_sock.getsockname()[:2])
    try:
        app_sock = bind_or_explain(host, app_port, "--port (make demo PORT=…)")
    except PortInUse:
        provider_sock.close()
        raise
    app_url = "http://{}:{}".format(*app_sock.getsockname()[:2])
    provider = demo_provider(provider_url, app_url)
    cis2 = demo_cis2_provider(provider_url, app_url) if two_providers else None
    settings = demo_settings(provider_url, app_url, two_providers=two_providers)
    app_server: BackgroundASGIServer | BackgroundWSGIServer
    wsgi_middleware = None
    if variant == "wsgi":
        wsgi_middleware = SSOMiddleware(message_centre_wsgi, settings)
        app_server = BackgroundWSGIServer(wsgi_middleware, app_sock)
    else:
        app_server = BackgroundASGIServer(ASGISSOMiddleware(message_centre_asgi(), settings), app_sock)
    served = one_server(provider, cis2) if cis2 is not None else provider.app
    provider_server = BackgroundASGIServer(served, provider_sock)
    provider_server.start()
    app_server.start()
    return DemoStack(provider, provider_server, app_server, wsgi_middleware, cis2)


def run_demo(
    app_port: int = APP_PORT, provider_port: int = PROVIDER_PORT, variant: Literal["asgi", "wsgi"] = "asgi"
) -> None:
    """Run until Ctrl-C (SIGINT) or SIGTERM, then stop both servers cleanly."""
    stack = start_demo(app_port, provider_port, variant)
    print(
        f"""
CQRS single sign-on demo ({variant.upper()} app)
  CQRS demo app (Message centre):   {stack.app_server.url}
  NHSmail-like provider (demo only): {stack.provider_server.url}   issuer {stack.provider.issuer}
  CIS2-like provider (demo only):    issuer {stack.cis2.issuer if stack.cis2 else "-"}

  The provider's demo application: client id '{DEMO_CLIENT_ID}', secret '{DEMO_CLIENT_SECRET}',
  allowed callback {stack.app_server.url}/oauth2/callback

  Demo users, password '{DEMO_PASSWORD}':
    {GP_USER:<20} has a CQRS account: the message centre opens
    {APPROVER:<20} has a CQRS account and the NHSmail app role CQRS.Approver: /approvals opens
    {NEW_USER:<20} has no CQRS account: "no CQRS account is associated with …"
    any other address or a wrong password is refused by the NHSmail sign-in page

  The sign-in page has two buttons: "Sign in with NHSmail" and "Sign in with your NHS Care
  Identity" (the CIS2-like provider: the same people and password, with national RBAC roles;
  the approver's job role R8001 is mapped to CQRS.Approver).

  Access rules: /approvals needs CQRS.Approver, /admin needs CQRS.Admin (nobody has it),
  /declarations needs a sign-in at most 15 minutes old: after that, NHSmail asks for the
  password again (the provider sends auth_time, the optional claim a step-up needs).

Open {stack.app_server.url} in a browser. Press Ctrl-C to stop.
""",
        flush=True,
    )
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        stopping.wait()
    finally:
        stack.stop()
        print("Demo stopped.", flush=True)


def run_provider(listen: str, app_url: str | None = None) -> None:
    """``cqrs-sso provider``: only the NHSmail-like provider, for an app run by hand (the
    examples). The app it allows defaults to the same host, one port below ``listen``'s —
    the demo's own pair, 8000 and 8001."""
    import uvicorn

    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit():
        raise ValueError(f"--listen must be host:port, got {listen!r}")
    port = int(port_text)
    app_url = (app_url or f"http://{host}:{port - 1}").rstrip("/")
    sock = bind_or_explain(host, port, "--listen")
    provider = demo_provider(f"http://{host}:{port}", app_url)
    print(
        f"""NHSmail-like provider (demo and tests only), listening on http://{host}:{port}
  issuer         {provider.issuer}
  client id      {DEMO_CLIENT_ID}
  client secret  {DEMO_CLIENT_SECRET}
  callback       {app_url}/oauth2/callback   (the only one allowed: change with --app-url)
  users          {GP_USER} (has a CQRS account), {NEW_USER} (has none); password '{DEMO_PASSWORD}'
A callback it does not allow is refused with AADSTS50011 and logged here.""",
        flush=True,
    )
    config = uvicorn.Config(provider.app, log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down; nothing more to say
        pass
    finally:
        sock.close()
