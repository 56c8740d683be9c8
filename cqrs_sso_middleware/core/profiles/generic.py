"""``generic``: any OpenID provider, by OIDC Core alone (``profiles.base``)."""

from __future__ import annotations

from .base import ProviderProfile

PROFILE = ProviderProfile
