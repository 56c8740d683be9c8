"""The decision for every request: normalise the path, then dispatch to a route.

``SignInFlow.handle(request)`` returns an outcome (``PassThrough`` or ``Respond``) when no
I/O is needed, or a generator that yields effects (HTTP calls to the provider, reading the
form, the account lookup, the session store) and returns the outcome. Both drivers run the
same generators, so the flow exists exactly once. The routes live by concern in
``sign_in.py``, ``access.py``, ``sign_out.py`` and ``probes.py``, on ``FlowBase``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from .access import AccessRoutes
from .actions import (
    Decision,
    Flow,
    IncomingRequest,
    PassThrough,
    Respond,
)
from .config import CoreSettings
from .oidc import ProviderState
from .paths import PathRefused, normalise_path
from .probes import ProbeRoutes
from .responses import PageRenderer
from .sign_in import SignInRoutes
from .sign_out import SignOutRoutes


def _under_root(path: str, root_path: str) -> bool:
    root = root_path.rstrip("/")
    return not root or path == root or path.startswith(root + "/")


class SignInFlow(SignInRoutes, AccessRoutes, SignOutRoutes, ProbeRoutes):
    """One deployment's sign-in logic. Create once; call :meth:`handle` per request."""

    def __init__(
        self,
        settings: CoreSettings,
        pages: PageRenderer,
        clock: Callable[[], float] = time.time,
        provider_state: ProviderState | None = None,
    ) -> None:
        super().__init__(settings, pages, clock, provider_state)
        self._probes: dict[str, Callable[[IncomingRequest], Decision]] = {}
        if settings.health_path:
            self._probes[settings.health_path] = self._healthz
        if settings.ready_path:
            self._probes[settings.ready_path] = self._readyz
        self.routes: dict[tuple[str, str], Callable[[IncomingRequest], Decision]] = {
            ("GET", "/sign_in"): self._sign_in_page,
            ("POST", "/start"): self._start,
            ("GET", "/callback"): self._callback,
            ("GET", "/sign_out"): self._sign_out_page,
            ("POST", "/sign_out"): self._sign_out,
            ("GET", "/signed_out"): self._signed_out,
            ("GET", "/frontchannel_logout"): self._frontchannel_logout,
            ("POST", "/backchannel_logout"): self._backchannel_logout,
            ("GET", "/userinfo"): self._userinfo,
            # nginx's auth_request subrequest keeps the original method.
            **{
                (method, "/auth"): self._forward_auth
                for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
            },
            ("GET", "/static/cqrs.css"): self._stylesheet,
        }

    def handle(self, request: IncomingRequest) -> Decision:
        """The outcome for ``request``, or a ``Flow`` of effects that ends in one.

        Every rule below sees the normalised path (``core.paths``); an ambiguous path is
        refused before any rule runs.
        """
        if request.is_websocket and self._cross_origin_websocket(request):
            return Respond(403, ())
        path = normalise_path(request.path)
        if isinstance(path, PathRefused) or not _under_root(path, request.root_path):
            reason = path.reason if isinstance(path, PathRefused) else "outside_mount"
            self._audit("path_refused", reason=reason)
            return self._bad_path(request)
        if path is request.path or path == request.path:
            return self._route(request)
        request = replace(request, path=path)
        decision = self._route(request)
        if isinstance(decision, PassThrough):
            return replace(decision, path=path)
        if isinstance(decision, Respond):
            return decision
        return self._handing_on_path(decision, path)

    def _cross_origin_websocket(self, request: IncomingRequest) -> bool:
        """A browser's upgrade names its page's origin (RFC 6455 §4.1, item 8; §10.2): one
        from another origin, a sibling sub-domain included, is cross-site WebSocket
        hijacking, which SameSite=Lax does not stop. Non-browser clients send no Origin."""
        origin = request.headers.get("origin")
        if origin is None or origin.lower() == self.settings.base_url.lower():
            return False
        self._audit("websocket_refused", reason="cross_origin")
        return True

    def _route(self, request: IncomingRequest) -> Decision:
        path = request.path
        if path == self.prefix or path.startswith(self.prefix + "/"):
            return self._endpoint(request)
        if path in self._probes and request.method in ("GET", "HEAD"):
            return self._probes[path](request)
        if self._is_public(path):
            return PassThrough(None)
        return self._protected(request)

    @staticmethod
    def _handing_on_path(flow: Flow, path: str) -> Flow:
        outcome = yield from flow
        return replace(outcome, path=path) if isinstance(outcome, PassThrough) else outcome

    def _endpoint(self, request: IncomingRequest) -> Decision:
        if request.is_websocket:
            return Respond(404, ())
        method = "GET" if request.method == "HEAD" else request.method
        endpoint = request.path[len(self.prefix) :]
        handler = self.routes.get((method, endpoint))
        if handler is not None:
            return handler(request)
        allowed = sorted(m for m, e in self.routes if e == endpoint)
        if allowed:
            page = self._page(405, "error.html", title="This address cannot be used that way")
            return replace(page, headers=(*page.headers, ("Allow", ", ".join(allowed))))
        return self._page(404, "error.html", title="Page not found")
