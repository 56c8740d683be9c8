"""Liveness, readiness and the stylesheet: answers that need no session."""

from __future__ import annotations

from ..context import RequestContext
from ..errors import ProviderError
from ..oidc.providers import Providers
from ..protocol import Flow, JsonReply, Outcome, Static
from ..sessions.keeper import SessionKeeper, StoreProblem


class Probes:
    """Probes for load balancers and orchestrators, and the packaged stylesheet."""

    def __init__(self, providers: Providers, keeper: SessionKeeper, store_description: str) -> None:
        self.providers = providers
        self.keeper = keeper
        self.store_description = store_description

    @staticmethod
    def healthz(ctx: RequestContext) -> Outcome:
        """Liveness: the process answers. Deliberately checks nothing else."""
        return JsonReply(200, {"status": "ok"})

    def readyz(self, ctx: RequestContext) -> Flow:
        """Readiness: provider metadata loaded (fetched now if needed) and the session store
        reachable. 503 until then, so a load balancer keeps traffic away. Every provider
        counts: a button that leads to an error page is not ready."""
        for party in self.providers.all:
            try:
                yield from party.metadata(ctx.now)
            except ProviderError as error:
                prefix = f"{party.name}: " if self.providers.several else ""
                return JsonReply(503, {"status": "not ready", "provider": (prefix + str(error))[:200]})
        store = self.store_description
        if not self.keeper.stateless:
            try:
                reaches = yield from self.keeper.ping()
            except StoreProblem as problem:
                body = {
                    "status": "not ready",
                    "provider": "ok",
                    "session_store": f"{store}: {str(problem)[:200]}",
                }
                return JsonReply(503, body)
            if reaches:
                store = f"{store} ({reaches})"
        return JsonReply(200, {"status": "ready", "provider": "ok", "session_store": f"{store}: ok"})

    @staticmethod
    def stylesheet(ctx: RequestContext) -> Outcome:
        return Static("cqrs.css", "text/css; charset=utf-8")
