"""Thin I/O drivers around the core: ``wsgi`` (werkzeug, httpx.Client) and ``asgi``.

Both take their parts from one ``Runtime`` (``driver_parts``): the router, the metrics
path they answer themselves, tracing, and the session cookie's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

from ..observers import Observers
from ..runtime import Runtime, runtime_for

if TYPE_CHECKING:
    from ..core.router import Router
    from ..metrics import MetricsEndpoint, SSOMetrics
    from ..settings import Settings
    from ..tracing import Tracing


App = TypeVar("App")


class Driver(Generic[App]):
    """What both drivers are built from: the wrapped ``app``, and ``Settings`` (the driver
    builds its runtime) or a ``Runtime`` (shared, or built with a test's clock or store);
    ``metrics`` hear the runtime and answer ``metrics_path``."""

    def __init__(
        self,
        app: App,
        settings: Settings | None = None,
        *,
        runtime: Runtime | None = None,
        metrics: SSOMetrics | None = None,
    ) -> None:
        self.app = app
        parts = driver_parts(settings, runtime, metrics)
        self.runtime, self._router, self._metrics, self._tracing, self._session_cookie = parts
        self._identity_headers = self.runtime.identity_headers


class DriverParts(NamedTuple):
    runtime: Runtime
    router: Router
    metrics: MetricsEndpoint | None
    tracing: Tracing | None
    session_cookie: str


def driver_parts(
    settings: Settings | None, runtime: Runtime | None, metrics: SSOMetrics | None
) -> DriverParts:
    """A driver's parts: from ``runtime``, or from one built of ``settings`` (heard by
    ``metrics``, when given)."""
    built = runtime_for(settings, runtime, metrics.observers() if metrics else Observers())
    return DriverParts(
        built,
        built.router,
        metrics_endpoint(metrics, built.settings) if metrics is not None else None,
        built.tracing,
        built.cookie_names.session,
    )


def metrics_endpoint(metrics: SSOMetrics, settings: Settings) -> MetricsEndpoint | None:
    """The ``metrics_path`` a driver answers itself (for ``metrics_allow``), unless the path
    is switched off or served on ``metrics_listen`` (the proxy's listener of its own:
    ``proxy/metrics_listener.py``)."""
    proxy = settings.proxy
    if not proxy.metrics_path or proxy.metrics_listen:
        return None
    from ..metrics import MetricsEndpoint

    return MetricsEndpoint(metrics, proxy.metrics_path, proxy.metrics_allow)
