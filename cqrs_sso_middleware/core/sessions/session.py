"""Sessions: what one is, when it times out, and how it is written down.

A session is written down as a JSON *record* (identity, account, times — never a token).
Where the record lives is the store's business (``sessions/keeper.py``):

* ``cookie`` store: the record is the cookie, **encrypted and authenticated** with
  AES-256-GCM under a key derived (HKDF-SHA256, RFC 5869) from each of ``secret_keys``, so
  nothing in it can be read or changed by whoever holds the cookie. Keys rotate by listing
  a new key first: it encrypts, the others still decrypt until removed.
* ``memory`` / ``redis`` stores: the cookie holds only a random id; the record is kept
  server-side, so it can be revoked. The record is encrypted too (a store dump or backup
  shows no name, address or token), and bound to the key it is stored under.

Every session belongs to one **deployment**: the (first) provider's issuer and client id. Both go
into the key derivation (HKDF ``info``) and the AEAD associated data of cookies and records,
and the record names its deployment, so a cookie or record made by another deployment that
shares ``secret_keys`` or a Redis is refused, not admitted until some later check. Within
the deployment, the record also names the provider the person signed in with (sealed with
the rest), and a provider no longer configured has no sessions.

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

from ..identity import Account, Identity, User

MAX_SESSION_COOKIE_BYTES = 3800  # RFC 6265 §6.1 asks browsers for at least 4096 per cookie
_DECODE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Deployment:
    """The deployment a session belongs to: the configured issuer and the client id.

    Two services that share ``secret_keys`` or a Redis are two deployments; neither may
    accept the other's sessions (a session says who signed in *to this client*).
    """

    issuer: str
    client_id: str

    @property
    def binding(self) -> bytes:
        """Bytes that name this deployment, for key derivation and associated data."""
        return self.issuer.encode("utf-8") + b"\x00" + self.client_id.encode("utf-8")


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    user: User
    created_at: int
    renewed_at: int
    account_checked_at: int
    deployment: Deployment
    # The raw ID token, kept by server-side stores only: the id_token_hint of RP-initiated
    # logout. Never in the cookie (size) and never shown; encrypted in the store.
    id_token: str = ""
    # When the person last proved who they are at the provider (OIDC Core auth_time, or the
    # time of a prompt=login sign-in); 0: not known. Step-up rules compare it.
    auth_time: int = 0
    # The name of the provider the person signed in with: re-checks, step-ups and logout go
    # to that provider only. "": the first (a record from before providers were named).
    provider: str = ""

    @classmethod
    def start(
        cls,
        user: User,
        now: float,
        deployment: Deployment,
        id_token: str = "",
        auth_time: int = 0,
        provider: str = "",
    ) -> Session:
        moment = int(now)
        # A fresh id at every sign-in: a session fixed before sign-in is never reused. 256
        # random bits: with a server-side store this id is the whole cookie.
        return cls(
            secrets.token_urlsafe(32), user, moment, moment, moment, deployment, id_token, auth_time, provider
        )


# How long a session's cookie (and a store's record) outlives the session: time-outs are
# checked on every load, so the grace opens nothing — it lets the sign-in page say *why*
# the session ended ("not used CQRS for 1 hour", "signed in for 12 hours") to a person
# who comes back within it, instead of a browser that silently dropped the cookie.
NOTICE_GRACE_SECONDS = 3600


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
        return max(0, session.created_at + self.max_seconds - int(now)) + NOTICE_GRACE_SECONDS


_PROTOCOL_CLAIMS = frozenset(
    {"nonce", "aud", "exp", "iat", "nbf", "auth_time", "at_hash", "c_hash", "aio", "uti", "rh"}
)


_RECORD_VERSION = 3
_DECIDING_CLAIMS = frozenset({"roles", "groups"})


def session_record(
    session: Session, with_claims: bool = True, roles_kept: frozenset[str] | None = None
) -> bytes:
    """The session as compact JSON; ``with_claims=False`` drops the raw claims (size) but
    roles and groups; ``roles_kept`` keeps only those of them (the ones rules name)."""
    identity, account = session.user.identity, session.user.account
    claims = {k: v for k, v in identity.claims.items() if k not in _PROTOCOL_CLAIMS}
    if roles_kept is not None:
        for name in _DECIDING_CLAIMS & claims.keys():
            values = claims[name]
            claims[name] = [v for v in values if v in roles_kept] if isinstance(values, list) else []
    payload = {
        "v": _RECORD_VERSION,
        "dep": [session.deployment.issuer, session.deployment.client_id],
        "sid": session.session_id,
        "em": identity.email,
        "sub": identity.subject,
        "iss": identity.issuer,
        "oid": identity.object_id,
        "tid": identity.tenant_id,
        "nm": identity.name,
        # Without the claims (a cookie near its size limit) roles and groups stay: rules
        # decide on them.
        "cl": claims if with_claims else {k: v for k, v in claims.items() if k in _DECIDING_CLAIMS},
        "aid": account.account_id,
        "aem": account.email,
        "aat": dict(account.attributes),
        "arl": list(account.roles),
        "at": session.auth_time,
        "c": session.created_at,
        "r": session.renewed_at,
        "k": session.account_checked_at,
    }
    if session.id_token:
        payload["idt"] = session.id_token
    if session.provider:
        payload["pv"] = session.provider
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def session_from_record(record: bytes) -> Session | None:
    """The session a record describes, or ``None`` for anything that is not one."""
    try:
        data = json.loads(record)
        if not isinstance(data, dict) or data.get("v") != _RECORD_VERSION:
            return None
        issuer, client_id = data["dep"]
        identity = Identity(
            email=str(data["em"]),
            subject=str(data["sub"]),
            issuer=str(data["iss"]),
            object_id=str(data["oid"]),
            tenant_id=str(data["tid"]),
            name=str(data["nm"]),
            claims=dict(data["cl"]),
        )
        account = Account(str(data["aid"]), str(data["aem"]), dict(data["aat"]), tuple(data.get("arl", ())))
        return Session(
            session_id=str(data["sid"]),
            user=User(identity, account),
            created_at=int(data["c"]),
            renewed_at=int(data["r"]),
            account_checked_at=int(data["k"]),
            deployment=Deployment(str(issuer), str(client_id)),
            id_token=str(data.get("idt", "")),
            auth_time=int(data.get("at", 0)),
            provider=str(data.get("pv", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


class KeyRing:
    """AES-256-GCM keys for one purpose and one deployment, one per secret key.

    Each key is derived with HKDF-SHA256 (RFC 5869) from a secret key, with ``info`` naming
    the purpose and the deployment, so the same ``secret_keys`` give unrelated keys to
    cookies and to store records, and to two deployments. The first key seals; every key
    opens (rotation). Nonces are 96 random bits per message (NIST SP 800-38D §8.2.2).
    """

    def __init__(self, secret_keys: Sequence[str], purpose: bytes, deployment: Deployment) -> None:
        info = b"cqrs-sso " + purpose + b" aes-256-gcm\x00" + deployment.binding
        self._keys = [
            AESGCM(
                HKDF(algorithm=hashes.SHA256(), length=32, salt=b"cqrs-sso", info=info).derive(
                    key.encode("utf-8")
                )
            )
            for key in secret_keys
        ]

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._keys[0].encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes | None:
        if len(sealed) < 12 + 16:
            return None
        for key in self._keys:
            try:
                return key.decrypt(sealed[:12], sealed[12:], associated_data)
            except InvalidTag:
                continue
        return None


_COOKIE_VERSION = "v3."
_MAX_RECORD_BYTES = 64 * 1024


def _inflate(data: bytes) -> bytes | None:
    try:
        inflater = zlib.decompressobj()
        record = inflater.decompress(data, _MAX_RECORD_BYTES)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else record


class SessionCookieCodec:
    """Session ↔ encrypted cookie value (the ``cookie`` store).

    The associated data names the deployment, as the key derivation does. Decoding is
    cached by cookie value: a given ciphertext always decrypts to the same session, and
    this keeps the per-request cost to a dict look-up.
    """

    def __init__(
        self, secret_keys: Sequence[str], deployment: Deployment, deciding_roles: frozenset[str] = frozenset()
    ) -> None:
        self.deployment = deployment
        self.deciding_roles = deciding_roles
        self._ring = KeyRing(secret_keys, b"session-cookie v3", deployment)  # the first key encrypts
        self._associated = b"cqrs-sso.session-cookie.v3\x00" + deployment.binding
        self._cache: OrderedDict[str, Session] = OrderedDict()

    def encode(self, session: Session) -> str:
        session = replace(session, id_token="")  # never in the cookie
        value = self._seal(session_record(session, with_claims=True))
        if len(value) > MAX_SESSION_COOKIE_BYTES:
            value = self._seal(session_record(session, with_claims=False))
        if len(value) > MAX_SESSION_COOKIE_BYTES:
            # Hundreds of groups: only those the access rules name can change a decision.
            value = self._seal(session_record(session, with_claims=False, roles_kept=self.deciding_roles))
        return value

    def _seal(self, record: bytes) -> str:
        sealed = self._ring.seal(zlib.compress(record, 6), self._associated)
        return _COOKIE_VERSION + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

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
        opened = self._ring.open(blob, self._associated)
        record = _inflate(opened) if opened is not None else None
        session = session_from_record(record) if record is not None else None
        if session is None:
            return None
        if session.deployment == self.deployment:
            session = replace(session, deployment=self.deployment)
        self._cache[value] = session
        if len(self._cache) > _DECODE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return session


class SessionRecordCipher:
    """Session records as a server-side store keeps them: compressed, then sealed with
    AES-256-GCM under a key of this deployment; the associated data also names the store
    key, so a record copied under another key (another person's session) does not open."""

    def __init__(self, secret_keys: Sequence[str], deployment: Deployment) -> None:
        self.deployment = deployment
        self._ring = KeyRing(secret_keys, b"session-record v3", deployment)
        self._associated = b"cqrs-sso.session-record.v3\x00" + deployment.binding + b"\x00"

    def seal(self, session: Session, store_key: str) -> bytes:
        record = session_record(session, with_claims=True)
        return self._ring.seal(zlib.compress(record, 6), self._associated + store_key.encode("ascii"))

    def open(self, sealed: bytes, store_key: str) -> Session | None:
        opened = self._ring.open(sealed, self._associated + store_key.encode("ascii"))
        record = _inflate(opened) if opened is not None else None
        session = session_from_record(record) if record is not None else None
        if session is not None and session.deployment == self.deployment:
            session = replace(session, deployment=self.deployment)
        return session
