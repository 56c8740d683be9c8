"""What every provider profile answers, and the plain OpenID Connect answer to each.

A profile is what is specific to one identity service, so that the protocol core stays
the protocol: which claim is the stable id, the email, the name, the organisation and the
roles; what its error codes mean; what an ID token must carry beyond OIDC Core §3.1.3.7
(an assurance level, a groups claim that fits); what the authorization request adds; and
whether the claims are completed from the UserInfo endpoint (OIDC Core §5.3).

A new kind of provider is one module in this package that defines ``PROFILE``, a subclass
of :class:`ProviderProfile`; ``profile_kinds()`` finds it by its module name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from ..identity import Identity, clean_roles
from ..oidc.provider_errors import STANDARD_ANSWERS, AnswerRules

# What a profile can refuse a validated ID token for: each has a page (sign_in_result).
RefusalKind = Literal["too_many_groups", "assurance_too_low"]
MAX_ROLES = 64  # a person's roles travel in the session: bounded like every other claim


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    """What a deployer configures that a profile reads (``[[providers]]`` settings)."""

    acr_values: str = ""
    role_mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ProfileRefusal:
    """A validated ID token this service's rules do not accept: ``reason`` for the audit
    log, ``kind`` for the page the person is shown."""

    reason: str
    kind: RefusalKind


def text_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


class ProviderProfile:
    """Plain OpenID Connect: the answers a provider gets when nothing more is known of it."""

    kind: ClassVar[str] = "generic"
    label: ClassVar[str] = "your organisation's account"  # the sign-in button's default words
    # The service's name in the pages' sentences ("Sign in to NHSmail failed"); "": the label.
    service: ClassVar[str] = ""
    scopes: ClassVar[tuple[str, ...]] = ("openid", "profile", "email")
    answers: ClassVar[AnswerRules] = STANDARD_ANSWERS
    # OIDC Core §5.3: complete the ID token's claims from the UserInfo endpoint.
    uses_userinfo: ClassVar[bool] = False
    # Claims tried in order for the email address CQRS accounts are matched on.
    email_claims: ClassVar[tuple[str, ...]] = ("email",)

    def __init__(self, options: ProfileOptions | None = None) -> None:
        self.options = options or ProfileOptions()

    def option_problems(self) -> list[str]:
        """What is wrong with the configured options for this service (start-up lines)."""
        return []

    def authorization_params(self) -> dict[str, str]:
        """What the authorization request adds for this service (OIDC Core §3.1.2.1)."""
        return {}

    def issuer_alias(self, configured: str, announced: str) -> bool:
        """Whether metadata may announce ``announced`` for the ``configured`` issuer; OIDC
        Discovery §4.3 wants them identical, and only a profile may know an exception."""
        return False

    def tenant_of(self, issuer: str) -> str:
        """The tenant an access token's ``tid`` must name, for a provider with tenants."""
        return ""

    def refusal(self, claims: Mapping[str, Any]) -> ProfileRefusal | None:
        """Why validated claims must not sign anybody in under this service's rules."""
        return None

    def identity(self, claims: Mapping[str, Any], userinfo: Mapping[str, Any] | None = None) -> Identity:
        """The person, from validated ID token claims (and UserInfo claims, when asked)."""
        merged = {**(userinfo or {}), **claims}
        roles = self.mapped_roles(self.roles(merged), clean_roles(merged.get("groups", ())))
        if roles or "roles" in merged:
            merged["roles"] = list(roles)
        return Identity(
            email=self.email(merged),
            subject=text_claim(merged, "sub"),
            issuer=text_claim(merged, "iss"),
            object_id=self.stable_id(merged),
            tenant_id=text_claim(merged, "tid"),
            name=self.name(merged),
            claims=MappingProxyType(merged),
        )

    def email(self, claims: Mapping[str, Any]) -> str:
        for name in self.email_claims:
            value = claims.get(name)
            if isinstance(value, str) and value.strip():
                return value.strip().lower()
        return ""

    def name(self, claims: Mapping[str, Any]) -> str:
        name = text_claim(claims, "name")
        if name:
            return name
        return " ".join(p for p in (text_claim(claims, "given_name"), text_claim(claims, "family_name")) if p)

    def stable_id(self, claims: Mapping[str, Any]) -> str:
        """The id that never changes for this person at this provider ("" : ``sub`` is it)."""
        return ""

    def roles(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        """The roles the provider vouches for, as ``access_rules`` name them."""
        return clean_roles(claims.get("roles", ()))

    def mapped_roles(self, roles: tuple[str, ...], groups: tuple[str, ...] = ()) -> tuple[str, ...]:
        """``roles`` and, for each role or group the ``role_mapping`` names, the CQRS role
        it stands for (so a rule can say ``practice_user`` whichever service vouched)."""
        mapping = self.options.role_mapping
        mapped = [mapping[role] for role in (*roles, *groups) if role in mapping]
        return tuple(dict.fromkeys((*roles, *mapped)))[:MAX_ROLES]
