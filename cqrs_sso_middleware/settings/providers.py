"""Who signs people in: one provider (the flat settings of the ``provider`` section, named
``nhsmail``), or several (``[[providers]]`` tables in TOML, ``CQRS_SSO_PROVIDERS`` as a JSON
array, ``providers=[{…}, …]`` in code), each with its profile (``core.profiles``).

A ``[[providers]]`` table takes the provider settings by their flat names (``issuer``,
``client_id``, ``scopes``…) plus ``name``, ``label`` and ``profile``, and each table is
checked as a provider of its own: a problem says which provider it is in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args
from urllib.parse import urlsplit

from ..core.profiles import ProfileOptions, ProviderProfile, profile_for, profile_kinds
from .schema_base import ENTRA_AUTHORITY, Problems, is_loopback, setting

TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
AssertionAlgorithm = Literal["PS256", "RS256"]
# An Entra tenant is named by its id (a GUID) or one of its verified domains.
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.IGNORECASE)
# What an example file or a how-to says in place of the real value.
_PLACEHOLDER = re.compile(r"replace|change-?me|your[-_ ]|<|>|\.\.\.|xxxx", re.IGNORECASE)
_PROVIDER_NAME = re.compile(r"[a-z0-9_-]{1,32}")
# Parameters a deployer may add to the authorization request: hints and display only. The
# others (client_id, redirect_uri, scope, state, nonce, PKCE, prompt, max_age, claims,
# response_type, response_mode) carry the protocol's security and are set by the client.
EXTRA_AUTHORIZE_PARAMS = frozenset({"domain_hint", "login_hint", "ui_locales", "display"})


def placeholder(value: str) -> bool:
    """True for a value copied from an example without being filled in."""
    return bool(_PLACEHOLDER.search(value))


@dataclass(frozen=True, kw_only=True)
class ProviderSettings:
    """Who signs people in (NHSmail, or any OpenID provider) and how we authenticate to it."""

    provider_name: str = setting(
        "nhsmail",
        "the provider's name (`name` in `[[providers]]`): `/oauth2/start?provider=<name>`, sessions and logs name it; lower-case letters, digits, `-`, `_`",
    )
    provider_label: str = setting(
        "",
        'what the sign-in button says after "Sign in with" (`label` in `[[providers]]`); unset: the profile\'s (`NHSmail`, `your NHS Care Identity`)',
    )
    provider_profile: str = setting(
        "entra",
        "what kind of identity service it is (`profile` in `[[providers]]`): `entra` (NHSmail), `cis2` (NHS Care Identity) or `generic` (any OpenID provider)",
    )
    acr_values: str = setting(
        "",
        "`cis2`: the assurance level asked for and checked in the ID token's `acr`: `AAL3_ANY` (smartcard or equivalent), `AAL2_OR_AAL3_ANY` (the default), `AAL2_ANY`, `AAL1_USERPASS`",
    )
    extra_authorize_params: Mapping[str, str] = setting(
        factory=lambda: MappingProxyType({}),
        text="more parameters of the authorization request, from an allow-list: `domain_hint`, `login_hint`, `ui_locales`, `display`",
    )
    role_mapping: Mapping[str, str] = setting(
        factory=lambda: MappingProxyType({}),
        text='provider roles or groups to CQRS role names for `access_rules`, e.g. `{"cis2:R8000" = "practice_user"}`',
    )

    issuer: str = setting("", "OpenID issuer; metadata from `<issuer>/.well-known/openid-configuration`")
    tenant: str = setting(
        "", "NHSmail preset: the issuer becomes `https://login.microsoftonline.com/<tenant>/v2.0`"
    )
    client_id: str = setting("", "the client id NHSmail registered for this app", required=True)
    client_secret: str = setting(
        "", "client secret, for `client_secret_basic` / `client_secret_post`", secret=True
    )
    private_key_file: str = setting(
        "",
        "PEM RSA private key (plus the certificate, whose thumbprint Entra finds it by) for `private_key_jwt` (`cqrs-sso certificate`)",
    )
    private_key_pem: str = setting("", "the key itself instead of a file (code or `_FILE` only)", secret=True)
    client_assertion_algorithm: AssertionAlgorithm = setting(
        "PS256",
        "`private_key_jwt`: how the client assertion is signed; `PS256` with an `x5t#S256` header is Microsoft's current guidance, `RS256` (with `x5t`) for providers without PS256",
    )
    token_auth_method: TokenAuthMethod | None = setting(
        None,
        "`client_secret_basic`, `client_secret_post` or `private_key_jwt`; unset: basic, or `private_key_jwt` when a key is given",
    )
    scopes: tuple[str, ...] = setting(
        (),
        "requested scopes; must include `openid`; unset: the profile's (`openid profile email`; `cis2` adds `nhsperson nationalrbacaccess associatedorgs selectedrole`)",
    )
    clock_leeway_seconds: int = setting(180, "allowed clock skew for `exp` / `iat` / `nbf`")
    http_timeout_seconds: float = setting(10.0, "time-out of each call to the provider")
    shared_devices: bool = setting(
        False,
        "PCs shared between staff: every sign-in asks NHSmail for the password (`prompt=login`), so neither a remembered NHSmail session nor Windows' Primary Refresh Token lets the previous person through",
    )
    sign_out_at_provider: bool = setting(
        True,
        "sign-out also ends the NHSmail session (RP-initiated logout) when the provider has an `end_session_endpoint`",
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "extra_authorize_params", MappingProxyType(dict(self.extra_authorize_params))
        )
        object.__setattr__(self, "role_mapping", MappingProxyType(dict(self.role_mapping)))
        if not self.scopes and self.provider_profile in profile_kinds():
            object.__setattr__(self, "scopes", self.profile.scopes)
        issuer = self.issuer or (f"{ENTRA_AUTHORITY}/{self.tenant}/v2.0" if self.tenant else "")
        object.__setattr__(self, "issuer", issuer.rstrip("/"))
        if self.token_auth_method is None:
            keyed = self.private_key_file or self.private_key_pem
            object.__setattr__(
                self, "token_auth_method", "private_key_jwt" if keyed else "client_secret_basic"
            )

    @property
    def profile(self) -> ProviderProfile:
        return profile_for(self.provider_profile, ProfileOptions(self.acr_values, self.role_mapping))

    @property
    def label(self) -> str:
        return self.provider_label or profile_for(self.provider_profile).label

    def check(self, problems: Problems) -> None:
        self._check_profile(problems)
        self._check_issuer(problems)
        self._check_credentials(problems)
        if "openid" not in self.scopes:
            problems.append("scopes: must include 'openid'")
        if not 0 <= self.clock_leeway_seconds <= 600:
            problems.append("clock_leeway_seconds: must be between 0 and 600")
        if not 0 < self.http_timeout_seconds <= 60:
            problems.append("http_timeout_seconds: must be between 0 and 60")

    def _check_profile(self, problems: Problems) -> None:
        if not _PROVIDER_NAME.fullmatch(self.provider_name):
            problems.append(
                f"provider_name: {self.provider_name!r} must be 1-32 lower-case letters, digits, '-' or '_'"
            )
        if self.provider_profile not in profile_kinds():
            problems.append(
                f"provider_profile: {self.provider_profile!r} is not one of " + ", ".join(profile_kinds())
            )
        else:
            problems.extend(self.profile.option_problems())
        for name in self.extra_authorize_params:
            if name not in EXTRA_AUTHORIZE_PARAMS:
                problems.append(
                    f"extra_authorize_params: {name!r} may not be set (allowed: "
                    + ", ".join(sorted(EXTRA_AUTHORIZE_PARAMS))
                    + "; the others are the middleware's own)"
                )

    def _check_issuer(self, problems: Problems) -> None:
        tenant = self.tenant
        if tenant and (placeholder(tenant) or not (_GUID.fullmatch(tenant) or _DOMAIN.fullmatch(tenant))):
            problems.append(
                f"tenant: must be the NHSmail tenant id (a GUID) or one of its domains, got {tenant!r}"
            )
        elif not self.issuer:
            problems.append("issuer: required (or set tenant for the NHSmail preset)")
        elif urlsplit(self.issuer).scheme != "https" and not is_loopback(self.issuer):
            problems.append(f"issuer: must be https (http only on loopback), got {self.issuer!r}")

    def _check_credentials(self, problems: Problems) -> None:
        if not self.client_id:
            problems.append("client_id: required (the id NHSmail registered for this app)")
        elif placeholder(self.client_id):
            problems.append(f"client_id: {self.client_id!r} is a placeholder: set the id NHSmail registered")
        method = self.token_auth_method
        if method == "private_key_jwt":
            if not (self.private_key_file or self.private_key_pem):
                problems.append("private_key_file: required for private_key_jwt")
        elif not self.client_secret:
            problems.append(f"client_secret: required for {method}")


def token_auth_methods() -> tuple[str, ...]:
    return get_args(TokenAuthMethod)


# A [[providers]] table's short keys, and the settings they stand for.
TABLE_ALIASES = {"name": "provider_name", "label": "provider_label", "profile": "provider_profile"}


@dataclass(frozen=True, kw_only=True)
class ProviderList:
    """Several providers, one sign-in button each (see ``docs/providers.md``)."""

    providers: tuple[Mapping[str, object], ...] = setting(
        (),
        "`[[providers]]` tables (a JSON array in `CQRS_SSO_PROVIDERS`), each with `name`, `label`, `profile` and the provider settings above; instead of the flat provider settings",
    )

    def check(self, problems: Problems) -> None:
        """Each table is checked when it is built (``Settings``), as a provider of its own."""
