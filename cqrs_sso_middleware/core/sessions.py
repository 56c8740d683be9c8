"""Sessions in a signed cookie (itsdangerous): the identity and account, never a token.

The cookie store is stateless, so any number of processes sharing ``secret_keys`` accept
each other's sessions. Keys rotate by listing a new key first: it signs, the others are
still accepted until removed. Time-outs are checked on every request from times inside the
signed payload: ``idle`` since the session was last renewed and ``max`` since sign-in. The
cookie is re-issued (sliding renewal) only when a quarter of the idle time-out (at most
five minutes) has passed, not on every response.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from itsdangerous import BadData, URLSafeSerializer

from .identity import Account, Identity, User

MAX_SESSION_COOKIE_BYTES = 3800  # RFC 6265 §6.1 asks browsers for at least 4096 per cookie
_DECODE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    user: User
    created_at: int
    renewed_at: int
    account_checked_at: int

    @classmethod
    def start(cls, user: User, now: float) -> Session:
        moment = int(now)
        # A fresh id at every sign-in: a session fixed before sign-in is never reused.
        return cls(secrets.token_urlsafe(16), user, moment, moment, moment)


@dataclass(frozen=True, slots=True)
class SessionTimeouts:
    idle_seconds: int
    max_seconds: int
    renew_after_seconds: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "renew_after_seconds", max(1, min(300, self.idle_seconds // 4)))

    def expired(self, session: Session, now: float) -> str | None:
        """``"idle"`` or ``"max"`` when the session has timed out, else ``None``."""
        if now - session.created_at >= self.max_seconds:
            return "max"
        if now - session.renewed_at >= self.idle_seconds:
            return "idle"
        return None

    def needs_renewal(self, session: Session, now: float) -> bool:
        return now - session.renewed_at >= self.renew_after_seconds

    def renewed(self, session: Session, now: float) -> Session:
        return replace(session, renewed_at=int(now))

    def cookie_max_age(self, session: Session, now: float) -> int:
        return max(0, session.created_at + self.max_seconds - int(now))


_PROTOCOL_CLAIMS = frozenset(
    {"nonce", "aud", "exp", "iat", "nbf", "auth_time", "at_hash", "c_hash", "aio", "uti", "rh"}
)


class SessionCookieCodec:
    """Session ↔ signed cookie value. Decoding is cached by cookie value: the signature of
    a given string never changes, and this keeps the per-request cost to a dict look-up."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._serializer = URLSafeSerializer(
            list(reversed(secret_keys)),  # itsdangerous signs with the last key
            salt="cqrs-sso.session",
            signer_kwargs={"digest_method": hashlib.sha256},
        )
        self._cache: OrderedDict[str, Session] = OrderedDict()

    def encode(self, session: Session) -> str:
        payload = self._payload(session, with_claims=True)
        value = self._serializer.dumps(payload)
        if len(value) > MAX_SESSION_COOKIE_BYTES:
            value = self._serializer.dumps(self._payload(session, with_claims=False))
        return value

    def decode(self, value: str) -> Session | None:
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        if len(value) > MAX_SESSION_COOKIE_BYTES * 2:
            return None
        try:
            session = self._session(self._serializer.loads(value))
        except (BadData, KeyError, TypeError, ValueError):
            return None
        self._cache[value] = session
        if len(self._cache) > _DECODE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return session

    @staticmethod
    def _payload(session: Session, with_claims: bool) -> dict[str, Any]:
        identity, account = session.user.identity, session.user.account
        claims = {k: v for k, v in identity.claims.items() if k not in _PROTOCOL_CLAIMS}
        return {
            "v": 1,
            "sid": session.session_id,
            "em": identity.email,
            "sub": identity.subject,
            "iss": identity.issuer,
            "oid": identity.object_id,
            "tid": identity.tenant_id,
            "nm": identity.name,
            "cl": claims if with_claims else {},
            "aid": account.account_id,
            "aem": account.email,
            "aat": dict(account.attributes),
            "c": session.created_at,
            "r": session.renewed_at,
            "k": session.account_checked_at,
        }

    @staticmethod
    def _session(data: Mapping[str, Any]) -> Session:
        if data["v"] != 1:
            raise ValueError("unknown session version")
        identity = Identity(
            email=str(data["em"]),
            subject=str(data["sub"]),
            issuer=str(data["iss"]),
            object_id=str(data["oid"]),
            tenant_id=str(data["tid"]),
            name=str(data["nm"]),
            claims=dict(data["cl"]),
        )
        account = Account(str(data["aid"]), str(data["aem"]), dict(data["aat"]))
        return Session(
            session_id=str(data["sid"]),
            user=User(identity, account),
            created_at=int(data["c"]),
            renewed_at=int(data["r"]),
            account_checked_at=int(data["k"]),
        )
