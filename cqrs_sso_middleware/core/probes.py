"""Liveness, readiness and the stylesheet: answers that need no session."""

from __future__ import annotations

from .actions import (
    Flow,
    IncomingRequest,
    Outcome,
)
from .errors import ProviderError
from .flow_base import FlowBase
from .responses import (
    json_response,
    static_response,
)
from .session_store import StoreProblem


class ProbeRoutes(FlowBase):
    """Probes for load balancers and orchestrators, and static assets."""

    def _healthz(self, request: IncomingRequest) -> Outcome:
        """Liveness: the process answers. Deliberately checks nothing else."""
        return json_response(200, {"status": "ok"})

    def _readyz(self, request: IncomingRequest) -> Flow:
        """Readiness: provider metadata loaded (fetched now if needed); the cookie session
        store needs nothing. 503 until then, so a load balancer keeps traffic away."""
        try:
            yield from self.rp.metadata(self.clock())
        except ProviderError as error:
            return json_response(503, {"status": "not ready", "provider": str(error)[:200]})
        store = self.sessions.kind
        if not self.sessions.stateless:
            try:
                yield from self.sessions.ping()
            except StoreProblem as problem:
                return json_response(
                    503,
                    {
                        "status": "not ready",
                        "provider": "ok",
                        "session_store": f"{store}: {str(problem)[:200]}",
                    },
                )
        return json_response(200, {"status": "ready", "provider": "ok", "session_store": f"{store}: ok"})

    def _stylesheet(self, request: IncomingRequest) -> Outcome:
        return static_response(self.pages.asset("cqrs.css"), "text/css; charset=utf-8")
