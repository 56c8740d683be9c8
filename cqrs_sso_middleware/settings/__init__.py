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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError
from .access import AccessSettings
from .loading import ENV_PREFIX, SETTINGS, load_values, phrased, typed, unknown_variables
from .schema import (
    SECTIONS,
    LookupSettings,
    PagesSettings,
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

    provider: ProviderSettings
    site: SiteSettings
    session: SessionSettings
    lookup: LookupSettings
    access: AccessSettings
    pages: PagesSettings
    proxy: ProxySettings

    def __init__(self, **values: Any) -> None:
        problems: list[str] = []
        self._build(*typed(values, problems, {}), problems)
        if problems:
            raise ConfigError(problems)

    def _build(self, values: Mapping[str, object], failed: set[str], problems: list[str]) -> None:
        by_section: dict[str, dict[str, object]] = {}
        for name, value in values.items():
            by_section.setdefault(SETTINGS[name].section, {})[name] = value
        for name, section in SECTIONS.items():
            built = section(**by_section.get(name, {}))
            found: list[str] = []
            built.check(found)
            # A value that could not be read was reported already: not again as "required".
            problems.extend(p for p in found if p.partition(":")[0] not in failed)
            object.__setattr__(self, name, built)

    @classmethod
    def load(
        cls,
        config_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
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
        cls,
        config_file: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
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
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        return cls.load(None, environ, **overrides)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> Settings:
        return cls.load(path, {}, **overrides)

    @staticmethod
    def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
        """Warnings for ``CQRS_SSO_*`` variables that name no setting."""
        return unknown_variables(os.environ if environ is None else environ)
