"""What can be configured, by section, and what makes a value valid.

Each section is a frozen dataclass: the annotations are the types (``loading.coerce``
reads them, so environment variables, TOML and code are typed the same way), the metadata
is the description ``docs/configuration.md`` is generated from, and ``check`` names every
problem with the section's values. Nothing here reads a file, opens a connection or
imports a driver: turning a setting into a resource (a store, a lookup, a signing key) is
``runtime.Runtime``'s job.

Names are flat and unique across sections — ``issuer``, ``session_store``,
``help_email`` — because that is how they are spelt in ``CQRS_SSO_*`` variables and TOML.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .access import AccessSettings
from .providers import ProviderList, ProviderSettings, placeholder, token_auth_methods
from .schema_base import (
    Problems,
    display_url,
    is_loopback,
    plain_path_or_empty,
    setting,
)
from .served import PagesSettings, ProxySettings
from .sessions import SessionSettings

__all__ = [
    "SECTIONS",
    "LookupSettings",
    "PagesSettings",
    "ProviderList",
    "ProviderSettings",
    "ProxySettings",
    "SessionSettings",
    "SiteSettings",
    "display_url",
    "token_auth_methods",
]


@dataclass(frozen=True, kw_only=True)
class SiteSettings:
    """Where the protected service is, and which of its paths need no sign-in."""

    base_url: str = setting(
        "",
        "public origin, e.g. `https://cqrs.example.nhs.uk`; https unless loopback; builds the redirect URI",
        required=True,
    )
    path_prefix: str = setting("/oauth2", "where the endpoints live")
    default_return_path: str = setting(
        "/", "where users land when no safe return path is known (the message centre)"
    )
    public_paths: tuple[str, ...] = setting(
        (),
        "comma list of anchored globs (`*` within one segment, `**` across: `/static/**`) or `re:` regexes (fullmatch) on the normalised path; they pass without a session (see docs/proxy.md)",
    )
    case_insensitive_paths: bool = setting(
        False,
        "match `public_paths` and `access_rules` without regard to letter case: turn on when the app or upstream serves `/ADMIN` as `/admin` (IIS, ASP.NET, Windows file servers), so that no spelling steps around a rule",
    )
    auto_redirect: bool = setting(False, "skip the sign-in page, go straight to NHSmail")
    health_path: str = setting("/healthz", "liveness probe (always 200); empty disables")
    ready_path: str = setting(
        "/readyz",
        "readiness probe (provider metadata loaded, session store reachable, else 503); empty disables",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "path_prefix", "/" + self.path_prefix.strip("/"))

    @property
    def redirect_uri(self) -> str:
        """Register this with NHSmail as the redirect URI."""
        return f"{self.base_url}{self.path_prefix}/callback"

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    def check(self, problems: Problems) -> None:
        self._check_base_url(problems)
        if not re.fullmatch(r"/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", self.path_prefix):
            problems.append(f"path_prefix: must be a plain path such as /oauth2, got {self.path_prefix!r}")
        if not self.default_return_path.startswith("/") or self.default_return_path.startswith("//"):
            problems.append("default_return_path: must be a path on this site, such as /")
        plain_path_or_empty(problems, "health_path", self.health_path)
        plain_path_or_empty(problems, "ready_path", self.ready_path)
        for pattern in self.public_paths:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as error:
                    problems.append(f"public_paths: {pattern!r} is not a regular expression ({error})")

    def _check_base_url(self, problems: Problems) -> None:
        parts = urlsplit(self.base_url)
        if not self.base_url:
            problems.append("base_url: required (the public origin, e.g. https://cqrs.example.nhs.uk)")
        elif parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                f"base_url: must be an origin like https://cqrs.example.nhs.uk, got {self.base_url!r}"
            )
        elif parts.path or parts.query or parts.fragment:
            problems.append("base_url: must be an origin only (no path, query or fragment)")
        elif placeholder(parts.hostname):
            problems.append(f"base_url: {self.base_url!r} is a placeholder: set this service's public origin")
        elif parts.scheme == "http" and not is_loopback(self.base_url):
            problems.append("base_url: must be https; plain http is only allowed on loopback for development")


AccountLookupSpec = Callable[..., Any] | str


@dataclass(frozen=True, kw_only=True)
class LookupSettings:
    """How CQRS accounts are found for a signed-in person, and how often they are checked."""

    account_lookup: AccountLookupSpec = setting(
        "",
        "`package.module:function`, `csv:PATH`, `json:PATH`, `sql:URL` (with `account_query`) or `http(s)://…{email}…`",
        required=True,
    )
    account_query: str = setting(
        "", "for `sql:`: a `SELECT` using `:email` (and optionally `:oid`, `:tid`, `:sub`)"
    )
    account_lookup_timeout_seconds: float = setting(5.0, "a slower lookup counts as failed (503)")
    account_lookup_concurrency: int = setting(
        16,
        "lookups running at once per process; one more waits for a free place within its time-out, then fails (503)",
    )
    account_cache_seconds: int = setting(
        0,
        'keep lookup answers (account or "no account", never failures) this long, per process, keyed by email and `oid`; `0` off',
    )
    account_recheck_seconds: int = setting(900, "re-ask the lookup for signed-in users this often; `0` never")
    allowed_email_domains: tuple[str, ...] = setting(
        (), "comma list, e.g. `nhs.net`; others see the no-account page; empty: any"
    )

    def __post_init__(self) -> None:
        domains = tuple(d.strip().lower().lstrip("@") for d in self.allowed_email_domains if d.strip())
        object.__setattr__(self, "allowed_email_domains", domains)

    @property
    def spec(self) -> str:
        """The lookup as configured, for start-up lines: a string, or "code"."""
        return self.account_lookup if isinstance(self.account_lookup, str) else "code"

    def check(self, problems: Problems) -> None:
        lookup = self.account_lookup
        if lookup == "":
            problems.append(
                "account_lookup: required (csv:PATH, json:PATH, sql:URL, http(s)://… or module:function)"
            )
        elif not isinstance(lookup, str) and not callable(lookup):
            problems.append("account_lookup: must be a callable or a 'module:function' string")
        if not 0 < self.account_lookup_timeout_seconds <= 60:
            problems.append("account_lookup_timeout_seconds: must be between 0 and 60")
        if not 1 <= self.account_lookup_concurrency <= 256:
            problems.append("account_lookup_concurrency: must be between 1 and 256")
        if self.account_cache_seconds < 0:
            problems.append("account_cache_seconds: must be 0 (no caching) or more")
        if self.account_recheck_seconds < 0:
            problems.append("account_recheck_seconds: must be 0 (never) or more")


SECTIONS: dict[str, type[Any]] = {  # the order of docs/configuration.md
    "provider": ProviderSettings,
    "provider_list": ProviderList,
    "site": SiteSettings,
    "session": SessionSettings,
    "lookup": LookupSettings,
    "access": AccessSettings,
    "pages": PagesSettings,
    "proxy": ProxySettings,
}
