"""Sessions: what one is, when it times out, and how it is written down.

A session is written down as a JSON *record* (identity, account, times — never a token).
Where the record lives is the store's business (``core/session_store.py``):

* ``cookie`` store: the record is the cookie, **encrypted and authenticated** with
  AES-256-GCM under a key derived (HKDF-SHA256, RFC 5869) from each of ``secret_keys``, so
  nothing in it can be read or changed by whoever holds the cookie. Keys rotate by listing
  a new key first: it encrypts, the others still decrypt until removed.
* ``memory`` / ``redis`` stores: the cookie holds only a random id; the record is kept
  server-side, so it can be revoked.

Time-outs are checked on every request: ``idle`` since the session was last renewed and
``max`` since sign-in. Renewal (sliding) happens only when a quarter of the idle time-out
(at most five minutes) has passed, not on every response.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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
    # The raw ID token, kept by server-side stores only: the id_token_hint of RP-initiated
    # logout. Never in the cookie (size) and never shown.
    id_token: str = ""

    @classmethod
    def start(cls, user: User, now: float, id_token: str = "") -> Session:
        moment = int(now)
        # A fresh id at every sign-in: a session fixed before sign-in is never reused. 256
        # random bits: with a server-side store this id is the whole cookie.
        return cls(secrets.token_urlsafe(32), user, moment, moment, moment, id_token)


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


def session_record(session: Session, with_claims: bool = True) -> bytes:
    """The session as compact JSON; ``with_claims=False`` drops the raw claims (size)."""
    identity, account = session.user.identity, session.user.account
    claims = {k: v for k, v in identity.claims.items() if k not in _PROTOCOL_CLAIMS}
    payload = {
        "v": 2,
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
    if session.id_token:
        payload["idt"] = session.id_token
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def session_from_record(record: bytes) -> Session | None:
    """The session a record describes, or ``None`` for anything that is not one."""
    try:
        data = json.loads(record)
        if not isinstance(data, dict) or data.get("v") != 2:
            return None
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
            id_token=str(data.get("idt", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


_COOKIE_VERSION = "v2."
_AAD = b"cqrs-sso.session-cookie.v2"


def _cookie_key(secret_key: str) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"cqrs-sso", info=b"session-cookie aes-256-gcm v2"
    ).derive(secret_key.encode("utf-8"))
    return AESGCM(derived)


class SessionCookieCodec:
    """Session ↔ encrypted cookie value (the ``cookie`` store).

    Decoding is cached by cookie value: a given ciphertext always decrypts to the same
    session, and this keeps the per-request cost to a dict look-up.
    """

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._keys = [_cookie_key(key) for key in secret_keys]  # the first one encrypts
        self._cache: OrderedDict[str, Session] = OrderedDict()

    def encode(self, session: Session) -> str:
        session = replace(session, id_token="")  # never in the cookie
        value = self._seal(session_record(session, with_claims=True))
        if len(value) > MAX_SESSION_COOKIE_BYTES:
            value = self._seal(session_record(session, with_claims=False))
        return value

    def _seal(self, record: bytes) -> str:
        nonce = os.urandom(12)  # 96-bit random nonce per cookie (NIST SP 800-38D §8.2.2)
        sealed = self._keys[0].encrypt(nonce, zlib.compress(record, 6), _AAD)
        return _COOKIE_VERSION + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def decode(self, value: str) -> Session | None:
        cached = self._cache.get(value)
        if cached is not None:
            return cached
        if len(value) > MAX_SESSION_COOKIE_BYTES * 2 or not value.startswith(_COOKIE_VERSION):
            return None
        try:
            blob = base64.urlsafe_b64decode(value[len(_COOKIE_VERSION) :] + "==")
        except (binascii.Error, ValueError):
            return None
        if len(blob) < 12 + 16:
            return None
        for key in self._keys:
            try:
                record = zlib.decompress(key.decrypt(blob[:12], blob[12:], _AAD), bufsize=16384)
            except (InvalidTag, zlib.error):
                continue
            session = session_from_record(record)
            if session is None:
                return None
            self._cache[value] = session
            if len(self._cache) > _DECODE_CACHE_SIZE:
                self._cache.popitem(last=False)
            return session
        return None
