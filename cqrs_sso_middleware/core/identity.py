"""Who signed in (``Identity``), what CQRS knows of them (``Account``), and the injected ``User``.

Which claims give the email CQRS matches accounts on, the stable id and the roles is the
provider profile's business (``profiles``): an email address can change, so the identity
also carries the provider's stable id (Entra's ``oid`` + ``tid``, CIS2's ``sub``) for
lookups that bind an account to its first owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Identity:
    """The person the provider vouched for, taken from a validated ID token."""

    email: str
    subject: str
    issuer: str
    object_id: str = ""
    tenant_id: str = ""
    name: str = ""
    claims: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))

    def __str__(self) -> str:
        return self.email


@dataclass(frozen=True, slots=True)
class Account:
    """A CQRS account, as the deployer's ``account_lookup`` found it. ``roles`` are the
    roles CQRS itself gives this account (practice user, approver…), joined with those
    NHSmail sends (``User.roles``)."""

    account_id: str
    email: str = ""
    attributes: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _frozen(self.attributes))
        object.__setattr__(self, "roles", clean_roles(self.roles))


@dataclass(frozen=True, slots=True)
class User:
    """The signed-in user handed to the app.

    Duck-compatible with Starlette's ``BaseUser`` (``is_authenticated``, ``display_name``,
    ``identity``), so ``request.user`` works in Starlette and FastAPI apps. ``identity`` is
    the full :class:`Identity`; its ``str()`` is the email.
    """

    identity: Identity
    account: Account

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.identity.name or self.identity.email

    @property
    def email(self) -> str:
        return self.identity.email

    @property
    def roles(self) -> frozenset[str]:
        """Every role this person has: the ID token's ``roles`` (Entra app roles), its
        ``groups`` (group object ids) and the account's own ``roles``."""
        return frozenset((*token_roles(self.identity.claims), *self.account.roles))


def clean_roles(roles: object) -> tuple[str, ...]:
    """Roles as given by a lookup or a claim: strings, trimmed, without duplicates; a
    string is one role (or several, ``;``-separated, as a CSV cell holds them)."""
    if isinstance(roles, str):
        roles = roles.split(";")
    if not isinstance(roles, list | tuple | set | frozenset):
        return ()
    seen = dict.fromkeys(r.strip() for r in roles if isinstance(r, str) and r.strip())
    return tuple(seen)


def token_roles(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The ID token's ``roles`` and ``groups`` claims (OIDC leaves both to the provider;
    Entra sends app roles and group object ids as arrays of strings)."""
    return (*clean_roles(claims.get("roles", ())), *clean_roles(claims.get("groups", ())))


def has_control_characters(text: str) -> bool:
    """C0 controls (CR, LF, NUL among them), DEL and C1 controls: never part of a name, an
    address or an account id, and in a header value they split the header (RFC 9110 §5.5)."""
    return any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in text)


def email_domain_allowed(email: str, allowed_domains: tuple[str, ...]) -> bool:
    """True when ``allowed_domains`` is empty or the address is exactly in one of them.

    Exact match on the part after the last ``@``: ``nhs.net`` does not admit
    ``evil-nhs.net`` nor ``nhs.net.example``.
    """
    if not allowed_domains:
        return True
    local, at, domain = email.rpartition("@")
    return bool(local) and bool(at) and domain in allowed_domains


def session_ref(session_id: str) -> str:
    """A short, non-reversible reference to a session id, safe to log and correlate."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]
