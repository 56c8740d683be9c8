"""The core's object graph, built once from the settings: the one place that reads them.

``build_router`` turns ``Settings`` into the small configuration each part of the core
takes (a provider's ``ClientRegistration``, the ``ReturnPaths``, the ``SessionTimeouts``,
compiled ``AccessRules``…) and wires the handlers to each other. No handler sees
``Settings``: the core never imports them. ``runtime.Runtime.from_settings`` calls it; the
drivers, the proxy, admin and config-check take the parts from the ``Runtime``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .core.accounts import AccountCheck
from .core.authorisation import AccessRules
from .core.claim_headers import ClaimHeaders
from .core.oidc.client import RelyingParty
from .core.oidc.client_auth import ClientAssertionSigner
from .core.oidc.providers import Providers
from .core.oidc.registration import ClientRegistration
from .core.router import Route, Router, callback_path, callback_uri
from .core.routes.access import Access, ForwardAuth
from .core.routes.authorise import Authorise
from .core.routes.bearer import BearerAccess
from .core.routes.callback import Callback
from .core.routes.logout_channels import LogoutChannels
from .core.routes.probes import Probes
from .core.routes.sign_in import SignIn, SignInStarter
from .core.routes.sign_in_result import SignInResults
from .core.routes.sign_out import SignOut
from .core.security.cookies import CookieNames, CookiePolicy
from .core.security.csrf import CsrfGuard
from .core.security.htmx import HtmxNavigation
from .core.security.original_uri import OriginalUri
from .core.security.paths import PublicPaths
from .core.security.redirects import ReturnPaths
from .core.sessions.attempts import AttemptCookies
from .core.sessions.keeper import SessionCookies, SessionKeeper, SessionParts, SessionWriter
from .core.sessions.session import Deployment, SessionTimeouts
from .settings import Settings
from .settings.providers import ProviderSettings

# nginx's auth_request subrequest keeps the original method.
_FORWARD_AUTH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def registration(provider: ProviderSettings, redirect_uri: str) -> ClientRegistration:
    """What the core's client needs of one provider's settings."""
    return ClientRegistration(
        name=provider.provider_name,
        label=provider.label,
        profile=provider.profile,
        issuer=provider.issuer,
        redirect_uri=redirect_uri,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        token_auth_method=str(provider.token_auth_method),
        assertion_algorithm=provider.client_assertion_algorithm,
        scopes=provider.scopes,
        extra_authorize_params=provider.extra_authorize_params,
        clock_leeway_seconds=provider.clock_leeway_seconds,
        shared_devices=provider.shared_devices,
        sign_out_at_provider=provider.sign_out_at_provider,
    )


def providers_of(settings: Settings, signers: Mapping[str, ClientAssertionSigner]) -> Providers:
    """One client per configured provider; the first answers at the one redirect URI it
    always had, each other one at its own (``core.router.callback_uri``)."""
    redirect_uri = settings.site.redirect_uri
    return Providers(
        [
            RelyingParty(
                registration(provider, callback_uri(redirect_uri, provider.provider_name, first=n == 0)),
                signers.get(provider.provider_name),
            )
            for n, provider in enumerate(settings.providers)
        ]
    )


def session_parts(settings: Settings, providers: Providers) -> SessionParts:
    """Where this deployment's sessions live, how one is written, and their cookies."""
    site, session = settings.site, settings.session
    keeper = SessionKeeper(
        session.session_store,
        session.secret_keys,
        SessionTimeouts(session.session_idle_seconds, session.session_max_seconds),
        Deployment(settings.provider.issuer, settings.provider.client_id),
        session.session_key_prefix,
        frozenset(role for rule in settings.access.access_rules for role in rule.roles),
        frozenset(party.name for party in providers.all),
    )
    cookies = SessionCookies(
        keeper, CookieNames(session.cookie_name, secure=site.is_https), CookiePolicy(secure=site.is_https)
    )
    return SessionParts(keeper, SessionWriter(keeper, cookies), cookies)


@dataclass(frozen=True)
class _Shared:
    """What several handlers are given alike."""

    providers: Providers
    sessions: SessionParts
    names: CookieNames
    policy: CookiePolicy
    csrf: CsrfGuard
    paths: ReturnPaths
    htmx: HtmxNavigation
    original: OriginalUri


def build_router(
    settings: Settings,
    providers: Providers,
    sessions: SessionParts,
    *,
    clock: Callable[[], float] = time.time,
    store_description: str = "",
) -> Router:
    site, keys = settings.site, settings.session.secret_keys
    names, policy = sessions.cookies.names, sessions.cookies.policy
    paths = ReturnPaths(site.path_prefix, site.default_return_path)
    shared = _Shared(
        providers,
        sessions,
        names,
        policy,
        CsrfGuard(keys, site.base_url, names, policy),
        paths,
        HtmxNavigation(site.base_url, paths),
        OriginalUri(settings.proxy.forward_auth_uri_header),
    )
    attempts = AttemptCookies(keys, names.attempt_prefix)
    starter = SignInStarter(providers, attempts, policy, names)
    authorise = Authorise(
        AccessRules(settings.access.access_rules, site.case_insensitive_paths),
        settings.access.role_labels,
        shared.original,
        shared.htmx,
        settings.pages.help_email,
    )
    results = SignInResults(
        keys,
        sessions.keeper.deployment,
        names,
        policy,
        shared.csrf,
        site.path_prefix,
        settings.pages.help_email,
        {"": providers.first.service, **{party.name: party.service for party in providers.all}},
    )
    accounts = AccountCheck(settings.lookup.account_recheck_seconds)
    access = Access(
        shared.paths, shared.htmx, site.auto_redirect, starter, accounts, sessions, results, authorise
    )
    callback = Callback(
        settings.lookup.allowed_email_domains, providers, attempts, policy, sessions, accounts, results
    )
    public = PublicPaths(site.public_paths, site.case_insensitive_paths)
    bearer = _bearer(settings, providers, accounts, authorise, access)
    routes = {
        **_sign_in_routes(shared, starter, authorise, sessions.keeper.timeouts),
        **_callback_routes(providers, callback),
        ("GET", "/sign_in_result"): Route(results.page),
        ("GET", "/forbidden"): Route(authorise.page, session=True),
        **_sign_out_routes(shared, f"{site.base_url}{site.path_prefix}/signed_out"),
        ("GET", "/userinfo"): Route(access.userinfo, session=True, api=True),
        **_forward_auth_routes(settings, shared, access, public, bearer),
    }
    probes = Probes(providers, sessions.keeper, store_description or sessions.keeper.kind)
    routes[("GET", "/static/cqrs.css")] = Route(probes.stylesheet)
    health = {site.health_path: Route(probes.healthz, api=True)} if site.health_path else {}
    ready = {site.ready_path: Route(probes.readyz, api=True)} if site.ready_path else {}
    return Router(
        routes,
        Route(access.protected, session=True, renews=True),
        {**health, **ready},
        base_url=site.base_url,
        prefix=site.path_prefix,
        public=public,
        api=Route(bearer, session=True, renews=True, api=True) if bearer else None,
        api_paths=bearer.paths if bearer else None,
        sessions=sessions,
        timeouts=sessions.keeper.timeouts,
        clock=clock,
    )


def _sign_in_routes(
    shared: _Shared, starter: SignInStarter, authorise: Authorise, timeouts: SessionTimeouts
) -> dict[tuple[str, str], Route]:
    sign_in = SignIn(
        shared.paths,
        shared.htmx,
        timeouts,
        starter,
        shared.csrf,
        shared.sessions.cookies,
        authorise.rules,
        shared.original,
    )
    return {
        ("GET", "/sign_in"): Route(sign_in.page, session=True),
        ("POST", "/start"): Route(sign_in.start, api=False),
        ("GET", "/start"): Route(sign_in.start_link, api=False),
    }


def _callback_routes(providers: Providers, callback: Callback) -> dict[tuple[str, str], Route]:
    # The session is loaded so that a step-up can keep it (routes/callback.py). The first
    # provider answers at /callback, each other one at /callback/<name>.
    return {
        ("GET", callback_path(party.name, first=n == 0)): Route(callback.at(party.name), session=True)
        for n, party in enumerate(providers.all)
    }


def _sign_out_routes(shared: _Shared, signed_out_url: str) -> dict[tuple[str, str], Route]:
    sign_out = SignOut(signed_out_url, shared.providers, shared.csrf, shared.sessions)
    logout = LogoutChannels(shared.providers, shared.sessions)
    return {
        ("GET", "/sign_out"): Route(sign_out.page, session=True),
        ("POST", "/sign_out"): Route(sign_out.post, session=True, api=False),
        ("GET", "/signed_out"): Route(sign_out.signed_out),
        ("GET", "/frontchannel_logout"): Route(logout.front),
        ("POST", "/backchannel_logout"): Route(logout.back, api=True),
    }


def _bearer(
    settings: Settings, providers: Providers, accounts: AccountCheck, authorise: Authorise, access: Access
) -> BearerAccess | None:
    """``api_paths``: access tokens for API clients, when configured."""
    api, site = settings.access, settings.site
    if not api.api_paths:
        return None
    return BearerAccess(
        PublicPaths(api.api_paths, site.case_insensitive_paths),
        providers,
        frozenset(api.api_audiences),
        frozenset(api.api_scopes),
        accounts,
        authorise.rules,
        access.protected,
    )


def _forward_auth_routes(
    settings: Settings, shared: _Shared, access: Access, public: PublicPaths, bearer: BearerAccess | None
) -> dict[tuple[str, str], Route]:
    forward_auth = ForwardAuth(
        access,
        public,
        shared.original,
        ClaimHeaders(settings.access.claim_headers),
        settings.proxy.account_header,
        bearer,
    )
    route = Route(forward_auth, session=True, renews=True, api=True)
    return {(method, "/auth"): route for method in _FORWARD_AUTH_METHODS}
