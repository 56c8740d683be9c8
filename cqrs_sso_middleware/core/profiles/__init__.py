"""Provider profiles: what is specific to one identity service (``profiles.base``).

``profile_kinds()`` lists the kinds (one module each: ``entra``, ``cis2``, ``generic``);
``profile_for(kind, options)`` builds one. Adding a kind is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from .base import ProfileOptions, ProfileRefusal, ProviderProfile, RefusalKind

__all__ = [
    "ProfileOptions",
    "ProfileRefusal",
    "ProviderProfile",
    "RefusalKind",
    "profile_class",
    "profile_for",
    "profile_kinds",
]


@cache
def profile_kinds() -> tuple[str, ...]:
    return tuple(
        sorted(
            m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "base"
        )
    )


def profile_class(kind: str) -> type[ProviderProfile]:
    if kind not in profile_kinds():
        raise KeyError(kind)
    profile: type[ProviderProfile] = importlib.import_module(f"{__name__}.{kind}").PROFILE
    return profile


_NO_OPTIONS = ProfileOptions()


def profile_for(kind: str, options: ProfileOptions = _NO_OPTIONS) -> ProviderProfile:
    return profile_class(kind)(options)
