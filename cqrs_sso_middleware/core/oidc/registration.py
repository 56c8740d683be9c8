"""What one provider registered for this service, as the client uses it.

The composition root makes one ``ClientRegistration`` per configured provider; the core's
client (``oidc.client.RelyingParty``) and the handlers read it and nothing of the settings,
so the core never imports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..profiles import ProviderProfile


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRegistration:
    """One provider's client: who it is (``name``, ``label``, ``profile``), where
    (``issuer``, ``redirect_uri``), how the client authenticates (RFC 6749 §2.3.1, or
    ``private_key_jwt`` per RFC 7523 with ``assertion_algorithm``), and what it asks for."""

    name: str
    label: str
    profile: ProviderProfile
    issuer: str
    redirect_uri: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    token_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name
    assertion_algorithm: str = "PS256"
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    extra_authorize_params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    clock_leeway_seconds: int = 180
    # Every sign-in asks for the password (``prompt=login``): PCs shared between staff.
    shared_devices: bool = False
    # Sign-out also ends the provider's session (RP-initiated logout) when it offers one.
    sign_out_at_provider: bool = True

    @property
    def service(self) -> str:
        """The service's name in the pages' sentences ("Sign in to NHSmail failed")."""
        return self.profile.service or self.label
