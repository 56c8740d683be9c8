"""The built-in NHSmail-like OpenID provider, and its CIS2-like sibling — for demos and tests
only, never production. ``one_server`` serves several of them from one port."""

from starlette.types import ASGIApp, Receive, Scope, Send

from .app import NHSmailLikeProvider
from .cis2 import Cis2LikeProvider
from .model import DemoClient, DemoUser, ProviderFaults
from .pages import DEMO_NOTICE, WRONG_CREDENTIALS

__all__ = [
    "DEMO_NOTICE",
    "WRONG_CREDENTIALS",
    "Cis2LikeProvider",
    "DemoClient",
    "DemoUser",
    "NHSmailLikeProvider",
    "ProviderFaults",
    "one_server",
]


def one_server(*providers: NHSmailLikeProvider) -> ASGIApp:
    """One ASGI app for several demo providers on one port, told apart by the first path
    segment of each one's issuer (its tenant or realm); the first answers anything else."""
    by_tenant = {provider.tenant_id: provider.app for provider in providers}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        segment = scope.get("path", "/").split("/", 2)[1] if scope["type"] != "lifespan" else ""
        await by_tenant.get(segment, providers[0].app)(scope, receive, send)

    return app
