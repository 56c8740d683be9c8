"""The composition root: everything one deployment needs, built once from its settings.

``Runtime.from_settings(settings)`` is the only place resources are made: the session store
(from the ``session_store`` scheme), the account lookup and its runner (deadline, bound,
cache, observers), the provider's HTTP clients, the client-assertion key, the page
renderer, the audit sink that feeds metrics, the cookie and identity-header policies, and
the core's ``Router``. The drivers, the proxy, forward-auth, the demo and Django are given a
``Runtime``; none of them builds one of these or reaches into another's parts.

Everything a deployer can get wrong here (a lookup file that is missing, a key that is not
a key, a store without its extra) is a :class:`ConfigError` now, at start-up, never at the
first request.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audit import AuditSink, ensure_log_output
from .composition import build_router, providers_of, session_parts
from .core.claim_headers import ClaimHeaders
from .core.errors import ConfigError
from .core.oidc.client_auth import ClientAssertionSigner
from .core.oidc.providers import Providers
from .core.protocol import (
    HttpCall,
    HttpResult,
    Outcome,
    PassThrough,
    Respond,
)
from .core.responses import ResponseWriter, content_security_policy, provider_origin
from .core.router import Router
from .core.security.cookies import CookieNames
from .core.security.headers import IdentityHeaders
from .core.sessions.keeper import SessionParts
from .lookups import AccountLookup, resolve_account_lookup
from .lookups.runner import LookupRunner
from .observers import NO_OBSERVERS, Observers
from .pages import JinjaPages
from .provider_http import ProviderHttp
from .settings import Settings
from .settings.loading import ConfigFile, Environ
from .settings.schema import ProviderSettings
from .stores import StoreBackend, open_store, store_kind, store_label
from .tracing import Tracing

ProviderCall = Callable[[HttpCall], HttpResult]
AsyncProviderCall = Callable[[HttpCall], Awaitable[HttpResult]]


@dataclass
class Runtime:
    settings: Settings
    router: Router
    store: StoreBackend
    lookups: LookupRunner
    provider_http: ProviderHttp
    audit: AuditSink
    responses: ResponseWriter
    cookie_names: CookieNames
    identity_headers: IdentityHeaders
    # Every provider's client and the session machinery, the router's own: config-check
    # and admin take them from here.
    providers: Providers
    sessions: SessionParts
    # The provider calls of each face: httpx by default; the proxy gives its own async client.
    provider_call: ProviderCall = field(repr=False)
    provider_acall: AsyncProviderCall = field(repr=False)
    observers: Observers = field(default_factory=Observers, repr=False)
    # OpenTelemetry spans (tracing.py), or None: off, and nothing is spent on it.
    tracing: Tracing | None = field(default=None, repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        store: StoreBackend | None = None,
        observers: Observers = NO_OBSERVERS,
        provider_call: Callable[[ProviderHttp], AsyncProviderCall] | None = None,
        pages: JinjaPages | None = None,
        tracing: Tracing | None = None,
    ) -> Runtime:
        """Build every resource ``settings`` names. ``store`` shares one store between two
        runtimes (two instances of a service in one test); ``provider_call`` makes the async
        provider client from the runtime's httpx one (the proxy's own, which falls back to
        httpx for what it cannot make)."""
        ensure_log_output()
        problems: list[str] = []
        lookup = _lookup(settings, problems)
        signers = _signers(settings, problems)
        store = store if store is not None else _store(settings, problems)
        if problems:
            raise ConfigError(problems)
        assert lookup is not None and store is not None
        proxy = settings.proxy
        providers = providers_of(settings, signers)
        sessions = session_parts(settings, providers)
        router = build_router(
            settings,
            providers,
            sessions,
            clock=clock,
            store_description=store_kind(settings.session.session_store),
        )
        pages = pages or JinjaPages(settings.pages.templates_dir)
        provider_http = ProviderHttp(max(p.http_timeout_seconds for p in settings.providers))
        for observe in observers.store_kind:
            observe(store_label(settings.session.session_store))
        return cls(
            settings=settings,
            router=router,
            store=store,
            lookups=LookupRunner(
                lookup,
                timeout_seconds=settings.lookup.account_lookup_timeout_seconds,
                concurrency=settings.lookup.account_lookup_concurrency,
                cache_seconds=settings.lookup.account_cache_seconds,
                observers=observers.lookups,
            ),
            provider_http=provider_http,
            audit=AuditSink(observers.audit),
            responses=ResponseWriter(
                pages,
                content_security_policy(
                    list(dict.fromkeys(provider_origin(p.issuer) for p in settings.providers))
                ),
                page_defaults(settings),
            ),
            cookie_names=sessions.cookies.names,
            providers=providers,
            sessions=sessions,
            identity_headers=IdentityHeaders(
                proxy.user_header,
                proxy.email_header,
                proxy.account_header,
                ClaimHeaders(settings.access.claim_headers),
            ),
            provider_call=provider_http.call,
            provider_acall=provider_call(provider_http) if provider_call else provider_http.acall,
            observers=observers,
            tracing=tracing or Tracing.from_environment(),
        )

    @classmethod
    def load(cls, config_file: ConfigFile = None, environ: Environ = None, **overrides: Any) -> Runtime:
        """Settings from their sources, then the runtime, with every problem of both in one
        ``ConfigError``: a lookup file that is missing is reported with a mistyped setting,
        not after it is fixed."""
        settings, problems = Settings.read(config_file, environ, **overrides)
        if problems:
            named = {p.split(" ", 1)[0].rstrip(":") for p in problems}
            # Each resource is tried unless a setting it is built from was already refused
            # (that problem is the one to fix; building from the bad value says nothing more).
            for check, inputs in _RESOURCE_CHECKS:
                if not named & inputs:
                    check(settings, problems)
            raise ConfigError(problems)
        return cls.from_settings(settings)

    def finish(self, outcome: Outcome) -> PassThrough | Respond:
        """Log and count the outcome's audit events; render an answer into bytes."""
        if outcome.events:
            self.audit.emit(outcome.events)
        if isinstance(outcome, PassThrough):
            return outcome
        return self.responses.respond(outcome)

    def close(self) -> None:
        self.provider_http.close()
        self.store.close()
        self.lookups.close()

    async def aclose(self) -> None:
        await self.provider_http.aclose()
        await self.store.aclose()
        self.lookups.close()


def page_defaults(settings: Settings) -> dict[str, object]:
    """What every page shows: the help desk, and the links of the CQRS sign-in page."""
    prefix, pages = settings.site.path_prefix, settings.pages
    return {
        "prefix": prefix,
        "css_url": f"{prefix}/static/cqrs.css",
        "sign_in_url": f"{prefix}/sign_in",
        "help_email": pages.help_email,
        "help_phone": pages.help_phone,
        **phone_link(pages.help_phone),
        "help_url": pages.help_url,
        "contact_url": pages.contact_url,
        "collections_url": pages.collections_url,
    }


def phone_link(help_phone: str) -> dict[str, str]:
    """The help-desk phone as a ``tel:`` link (RFC 3966): the number before any words in
    brackets is the link, the rest ("(8am-6pm Mon-Fri exc Bank Holidays)") stays as text.
    A UK national number (0…) is written in the global form, +44…; a number that cannot be
    read gets no link."""
    number, bracket, rest = help_phone.partition("(")
    digits = "".join(char for char in number if char.isdigit())
    if number.strip().startswith("+") and 7 <= len(digits) <= 15:
        tel = "+" + digits
    elif digits.startswith("0") and len(digits) == 11:
        tel = "+44" + digits[1:]
    else:
        return {"help_phone_tel": ""}
    shown = number.rstrip()
    return {
        "help_phone_tel": tel,
        "help_phone_number": shown,
        "help_phone_rest": number[len(shown) :] + bracket + rest,
    }


def _lookup(settings: Settings, problems: list[str]) -> AccountLookup | None:
    configured = settings.lookup.account_lookup
    if not isinstance(configured, str):
        return configured
    try:
        return resolve_account_lookup(
            configured,
            account_query=settings.lookup.account_query,
            timeout_seconds=settings.lookup.account_lookup_timeout_seconds,
        )
    except ConfigError as error:
        problems.extend(error.problems)
        return None


def _store(settings: Settings, problems: list[str]) -> StoreBackend | None:
    try:
        return open_store(settings.session)
    except ConfigError as error:
        problems.extend(error.problems)
        return None


_RESOURCE_CHECKS: tuple[tuple[Callable[[Settings, list[str]], object], frozenset[str]], ...] = (
    (lambda settings, problems: _lookup(settings, problems), frozenset({"account_lookup", "account_query"})),
    (
        lambda settings, problems: _signers(settings, problems),
        frozenset({"private_key_file", "private_key_pem", "token_auth_method", "client_assertion_algorithm"}),
    ),
    (
        lambda settings, problems: _store(settings, problems),
        frozenset({"session_store", "redis_password", "session_key_prefix", "session_store_timeout_seconds"}),
    ),
)


def _signers(settings: Settings, problems: list[str]) -> dict[str, ClientAssertionSigner]:
    """The client-assertion key of each provider that uses ``private_key_jwt``."""
    signers = {}
    for provider in settings.providers:
        found: list[str] = []
        signer = _signer(provider, found)
        if signer is not None:
            signers[provider.provider_name] = signer
        where = f"providers ({provider.provider_name}): " if len(settings.providers) > 1 else ""
        problems.extend(where + problem for problem in found)
    return signers


def _signer(provider: ProviderSettings, problems: list[str]) -> ClientAssertionSigner | None:
    if provider.token_auth_method != "private_key_jwt":  # noqa: S105 - a method name
        return None
    pem = provider.private_key_pem
    if not pem:
        try:
            pem = Path(provider.private_key_file).read_text(encoding="ascii")
        except FileNotFoundError:
            problems.append(
                f"private_key_file: no file {provider.private_key_file!r} "
                "(`cqrs-sso certificate --out FOLDER` makes a key and certificate)"
            )
            return None
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not a PEM text file"
            problems.append(f"private_key_file: cannot read {provider.private_key_file!r}: {reason}")
            return None
    try:
        return ClientAssertionSigner.from_pem(pem, provider.client_assertion_algorithm)
    except ConfigError as error:
        problems.extend(error.problems)
        return None


def runtime_for(
    settings: Settings | None, runtime: Runtime | None, observers: Observers = NO_OBSERVERS
) -> Runtime:
    """What the drivers are given: a runtime, or settings to build one from (heard by
    ``observers``: a runtime given ready-made has its own)."""
    if (settings is None) == (runtime is None):
        raise TypeError("give settings or a runtime, not both")
    if runtime is not None:
        return runtime
    return Runtime.from_settings(settings, observers=observers)  # type: ignore[arg-type]


def load_or_explain(config_file: ConfigFile, environ: Environ = None) -> Runtime | None:
    """``Runtime.load``, or ``None`` after one ``config error:`` line per problem on stderr
    (the command line's way to fail: a sentence per problem, never a traceback)."""
    try:
        return Runtime.load(config_file, environ)
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return None
