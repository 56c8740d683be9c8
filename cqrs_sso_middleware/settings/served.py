"""What is served around the sign-in: the pages people read, and the proxy in front of a
legacy service. (The sections of the sign-in itself are in ``schema``.)"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .schema_base import GUIDE_HELP_EMAIL, GUIDE_HELP_PHONE, Problems, plain_path_or_empty, setting

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


@dataclass(frozen=True, kw_only=True)
class PagesSettings:
    """What the sign-in and error pages say: the help desk and the links of the CQRS page."""

    help_email: str = setting(GUIDE_HELP_EMAIL, "help desk email on every page")
    help_phone: str = setting(GUIDE_HELP_PHONE, "help desk phone on every page")
    help_url: str = setting(
        "https://digital.nhs.uk/services/calculating-quality-reporting-service",
        "the Help link on the sign-in page",
    )
    contact_url: str = setting("mailto:support@cqrs.co.uk", "the Contact Us link on the sign-in page")
    collections_url: str = setting(
        "https://digital.nhs.uk/services/general-practice-gp-collections",
        "the GP Collections Website link on the sign-in page",
    )
    templates_dir: str = setting("", "folder whose templates override the packaged ones")

    def check(self, problems: Problems) -> None:
        for name in ("help_url", "contact_url", "collections_url"):
            scheme = urlsplit(getattr(self, name)).scheme
            if scheme not in ("https", "http", "mailto", "tel"):
                problems.append(f"{name}: must be an https:, mailto: or tel: link")


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    """``cqrs-sso proxy`` and forward-auth: where requests go and what the upstream is told."""

    upstream: str = setting(
        "", "proxy mode: where authenticated requests go; empty: a sign-in and forward-auth service only"
    )
    listen: str = setting("127.0.0.1:8080", "proxy mode: `host:port`")
    workers: int = setting(1, "proxy mode: worker processes")
    trusted_proxies: tuple[str, ...] = setting(
        (), "proxy mode: addresses or CIDRs whose `X-Forwarded-*` and `X-Real-IP` are believed; empty: nobody"
    )
    shutdown_grace_seconds: int = setting(
        25,
        "proxy mode: on SIGTERM, how long requests in flight may take to finish before the process exits (keep the orchestrator's stop timeout above it)",
    )
    keep_alive_seconds: int = setting(
        75,
        "proxy mode: how long an idle client connection is kept open; longer than the idle time-out of a load balancer in front (nginx's default: 75)",
    )
    upstream_timeout_seconds: float = setting(
        30.0, "proxy mode: no answer from the upstream within this → 504"
    )
    metrics_path: str = setting("/metrics", "proxy mode: Prometheus metrics; empty disables")
    metrics_allow: tuple[str, ...] = setting(
        ("127.0.0.1/32", "::1/128"), "proxy mode: networks that may read the metrics"
    )
    metrics_listen: str = setting(
        "",
        "proxy mode: `host:port` of a listener of its own for `metrics_path` (the main listener then answers it 404); use it behind a front proxy, whose address `metrics_allow` cannot tell from a client's",
    )
    user_header: str = setting(
        "X-Forwarded-User",
        "header carrying the user's email to proxied apps (proxy) and in forward-auth answers",
    )
    email_header: str = setting("X-Forwarded-Email", "header carrying the email to proxied apps")
    account_header: str = setting(
        "X-CQRS-Account", "header carrying the CQRS account id to proxied apps and nginx"
    )
    forward_auth_uri_header: str = setting(
        "X-Original-URI",
        "the one header forward-auth believes for the original URI: `X-Original-URI` behind nginx (its example sets it), `X-Forwarded-Uri` behind Caddy and Traefik; a request that also carries the other with a different value is refused",
    )

    def check(self, problems: Problems) -> None:
        if self.upstream:
            parts = urlsplit(self.upstream)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(
                    f"upstream: must be an http(s) URL like http://127.0.0.1:9000, got {self.upstream!r}"
                )
        self._check_listeners(problems)
        if not 1 <= self.workers <= 64:
            problems.append("workers: must be between 1 and 64")
        self._check_names(problems)
        if not 0 <= self.shutdown_grace_seconds <= 3600:
            problems.append("shutdown_grace_seconds: must be between 0 and 3600")
        if not 1 <= self.keep_alive_seconds <= 3600:
            problems.append("keep_alive_seconds: must be between 1 and 3600")
        if not 0 < self.upstream_timeout_seconds <= 3600:
            problems.append("upstream_timeout_seconds: must be between 0 and 3600")
        plain_path_or_empty(problems, "metrics_path", self.metrics_path)

    def _check_listeners(self, problems: Problems) -> None:
        for name in ("listen", "metrics_listen"):
            host, _, port = getattr(self, name).rpartition(":")
            if (name == "listen" or port) and (not host or not port.isdigit() or not 0 < int(port) < 65536):
                problems.append(f"{name}: must be host:port, got {getattr(self, name)!r}")
        # The proxy tells its listeners apart by port (proxy/metrics_listener.py).
        if self.metrics_listen and self.metrics_listen.rpartition(":")[2] == self.listen.rpartition(":")[2]:
            problems.append("metrics_listen: must be on another port than listen")

    def _check_names(self, problems: Problems) -> None:
        for name in ("trusted_proxies", "metrics_allow"):
            for network in getattr(self, name):
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    problems.append(f"{name}: {network!r} is not an address or CIDR network")
        for name in ("user_header", "email_header", "account_header", "forward_auth_uri_header"):
            if not _HEADER_NAME.fullmatch(getattr(self, name)):
                problems.append(f"{name}: must be a header name (letters, digits, hyphens)")
