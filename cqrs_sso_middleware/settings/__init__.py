"""The one frozen ``Settings`` object, from code, a TOML file or ``CQRS_SSO_*`` variables.

``Settings(client_id=…, secret_keys=…, …)`` takes every setting by its flat name (as in
``CQRS_SSO_*`` variables and TOML) and files it in its section: ``settings.provider``,
``.site``, ``.session``, ``.lookup``, ``.access``, ``.pages``, ``.proxy`` (``schema.py``). Every problem
is reported at construction, one line each, in one :class:`ConfigError` — never at the
first request. Settings only read and validate; ``runtime.Runtime`` builds what they name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..core.errors import ConfigError
from .access import AccessSettings
from .loading import (
    ENV_PREFIX,
    SETTINGS,
    ConfigFile,
    Environ,
    load_values,
    phrased,
    typed,
    typed_table,
    unknown_variables,
)
from .providers import TABLE_ALIASES
from .schema import (
    SECTIONS,
    LookupSettings,
    PagesSettings,
    ProviderList,
    ProviderSettings,
    ProxySettings,
    SessionSettings,
    SiteSettings,
)

__all__ = ["ENV_PREFIX", "ConfigError", "Settings"]

_log = logging.getLogger("cqrs_sso.settings")


@dataclass(frozen=True, init=False)
class Settings:
    """Everything the middleware, the proxy and the CLI need, validated. Build it once."""

    # The first provider: the only one, unless [[providers]] names several.
    provider: ProviderSettings
    provider_list: ProviderList
    site: SiteSettings
    session: SessionSettings
    lookup: LookupSettings
    access: AccessSettings
    pages: PagesSettings
    proxy: ProxySettings
    # Every provider, the first one first; one sign-in button each.
    providers: tuple[ProviderSettings, ...]

    def __init__(self, **values: Any) -> None:
        problems: list[str] = []
        self._build(*typed(values, problems, {}), problems)
        if problems:
            raise ConfigError(problems)

    def _build(self, values: Mapping[str, object], failed: set[str], problems: list[str]) -> None:
        by_section: dict[str, dict[str, object]] = {}
        for name, value in values.items():
            by_section.setdefault(SETTINGS[name].section, {})[name] = value
        tables = cast(Sequence[Mapping[str, object]], values.get("providers") or ())
        for name, section in SECTIONS.items():
            built = section(**by_section.get(name, {}))
            if name != "provider" or not tables:
                found: list[str] = []
                built.check(found)
                # A value that could not be read was reported already: not again as "required".
                problems.extend(p for p in found if p.partition(":")[0] not in failed)
            object.__setattr__(self, name, built)
        providers: tuple[ProviderSettings, ...] = (self.provider,)
        if tables:
            flat = sorted(n for n in values if SETTINGS[n].section == "provider")
            if flat:
                problems.append(
                    "providers: give either [[providers]] or the flat provider settings, not both "
                    f"(also set: {', '.join(flat)})"
                )
            providers = self._providers(tables, problems) or providers
        object.__setattr__(self, "providers", providers)
        object.__setattr__(self, "provider", providers[0])
        for audience in set(self.access.api_audiences) & {p.client_id for p in providers}:
            # An ID token's aud is the sign-in client: that client as an API audience would
            # make every ID token (OIDC Core §2) a key to the API too.
            problems.append(f"api_audiences: {audience!r} is a sign-in client id; name the API's own")

    @staticmethod
    def _providers(
        tables: Sequence[Mapping[str, object]], problems: list[str]
    ) -> tuple[ProviderSettings, ...]:
        """Each ``[[providers]]`` table as a provider, its problems prefixed with which."""
        built: list[ProviderSettings] = []
        for number, table in enumerate(tables, 1):
            name = table.get("name", table.get("provider_name", "nhsmail"))
            where = f"providers[{number}] ({name})"
            values = typed_table(table, TABLE_ALIASES, "provider", problems, where)
            if values is None:
                continue
            provider = ProviderSettings(**values)  # type: ignore[arg-type]
            found: list[str] = []
            provider.check(found)
            problems.extend(f"{where}: {problem}" for problem in found)
            built.append(provider)
        names = [p.provider_name for p in built]
        for twice in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"providers: two providers are named {twice!r}; each needs its own name")
        return tuple(built)

    @classmethod
    def load(cls, config_file: ConfigFile = None, environ: Environ = None, **overrides: Any) -> Settings:
        """Arguments > environment > TOML file > defaults (see ``loading``). A ``CQRS_SSO_*``
        variable that names no setting is logged as a warning (a typo would otherwise be
        silently ignored)."""
        for warning in unknown_variables(os.environ if environ is None else environ):
            _log.warning("%s", warning)
        settings, problems = cls.read(config_file, environ, **overrides)
        if problems:
            raise ConfigError(problems)
        return settings

    @classmethod
    def read(
        cls, config_file: ConfigFile = None, environ: Environ = None, **overrides: Any
    ) -> tuple[Settings, list[str]]:
        """The settings as far as they go, and every problem (``Runtime.load`` adds those of
        the resources, so that a deployer sees them all in one pass)."""
        environ = os.environ if environ is None else environ
        if config_file is None:
            # CQRS_SSO_CONFIG_FILE names the TOML file when the code does not (a deployer
            # can then move settings to a file without touching the app).
            config_file = environ.get(ENV_PREFIX + "CONFIG_FILE") or None
        sources = load_values(config_file, environ, overrides)
        problems = list(sources.problems)
        settings = object.__new__(cls)
        settings._build(*typed(sources.values, problems, sources.origin), problems)
        return settings, phrased(problems, sources, config_file)

    @classmethod
    def from_env(cls, environ: Environ = None, **overrides: Any) -> Settings:
        return cls.load(None, environ, **overrides)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> Settings:
        return cls.load(path, {}, **overrides)

    @staticmethod
    def unknown_variables(environ: Environ = None) -> list[str]:
        """Warnings for ``CQRS_SSO_*`` variables that name no setting."""
        return unknown_variables(os.environ if environ is None else environ)
