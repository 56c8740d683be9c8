"""Who hears what the runtime does: the hooks metrics (``metrics.SSOMetrics``) attach to.

Its own module so that the runtime and metrics each import it, and not each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .audit import AuditObserver
from .lookups.runner import LookupObserver

# (what, seconds, succeeded): a store command ("get", "put"…) or a provider endpoint.
TimingObserver = Callable[[str, float, bool], None]


@dataclass(frozen=True)
class Observers:
    """Who hears what the runtime does (metrics): audit events, each lookup's time and
    result, each store command's and provider call's, and the kind of store in use."""

    audit: tuple[AuditObserver, ...] = ()
    lookups: tuple[LookupObserver, ...] = ()
    store: tuple[TimingObserver, ...] = ()
    provider: tuple[TimingObserver, ...] = ()
    store_kind: tuple[Callable[[str], None], ...] = ()


NO_OBSERVERS = Observers()
