"""Who signed in (``Identity``), what CQRS knows of them (``Account``), and the injected ``User``.

The email CQRS matches accounts on comes from the first present of ``email``,
``preferred_username`` and ``upn``. Entra ID warns that these are mutable and not for
authorization on their own, so the identity also carries ``oid`` + ``tid`` (the stable
identity) for lookups that bind an account to its first owner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

EMAIL_CLAIMS = ("email", "preferred_username", "upn")

# Headers that carry an identity between a proxy and an app. A client must never be able
# to send them: drivers delete every one of them from each request before anything else.
# (WSGI folds "X_Forwarded_User" and "X-Forwarded-User" into one HTTP_ key, so deleting by
# the normalised name removes both spellings.)
IDENTITY_HEADERS = (
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-cqrs-account",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "remote-user",
    "x-remote-user",
)


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

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Account:
    """A CQRS account, as the deployer's ``account_lookup`` found it."""

    account_id: str
    email: str = ""
    attributes: Mapping[str, str] = field(default_factory=lambda: _frozen(None))

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", _frozen(self.attributes))


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


def email_from_claims(claims: Mapping[str, Any]) -> str:
    """The first present of email → preferred_username → upn, trimmed and lower-cased."""
    for name in EMAIL_CLAIMS:
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Build an :class:`Identity` from already-validated ID token claims."""

    def text(name: str) -> str:
        value = claims.get(name)
        return value if isinstance(value, str) else ""

    return Identity(
        email=email_from_claims(claims),
        subject=text("sub"),
        issuer=text("iss"),
        object_id=text("oid"),
        tenant_id=text("tid"),
        name=text("name"),
        claims=_frozen(claims),
    )


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


class AccountCache:
    """Answers of ``account_lookup`` kept for ``ttl_seconds`` (design §3), per process.

    Only real answers are kept — an account, or "no account". A lookup that raised or timed
    out is never cached. Keyed by email *and* Entra object id, so a re-assigned address is
    asked about afresh. Bounded: the oldest entries go first.
    """

    def __init__(self, ttl_seconds: float, capacity: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.capacity = capacity
        self._entries: dict[tuple[str, str], tuple[float, Account | None]] = {}

    def get(self, identity: Identity, now: float) -> tuple[bool, Account | None]:
        """``(True, answer)`` when a fresh answer is cached, else ``(False, None)``."""
        if self.ttl <= 0:
            return False, None
        entry = self._entries.get((identity.email, identity.object_id))
        if entry is None or now >= entry[0]:
            return False, None
        return True, entry[1]

    def put(self, identity: Identity, answer: Account | None, now: float) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.capacity:
            del self._entries[next(iter(self._entries))]
        self._entries[(identity.email, identity.object_id)] = (now + self.ttl, answer)


AccountLookup = Callable[[Identity], "Account | Awaitable[Account | None] | None"]


def runs_inline(lookup: object) -> bool:
    """A lookup that says ``nonblocking = True`` (an in-memory table, like the built-in
    csv:/json: lookups) is called directly; any other plain function runs in a worker
    thread under the time-out, since it may wait on a database or a network."""
    return getattr(lookup, "nonblocking", False) is True


"""The deployer's account check (design §3): a plain or ``async`` callable; ``None`` means
"no CQRS account" (seed step 5); an exception or a time-out is *not* "no account"."""
