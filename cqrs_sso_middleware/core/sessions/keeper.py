"""Where sessions live, sans I/O: in the cookie, or in a server-side store through effects.

``session_store = "cookie"`` (default): the encrypted record is the cookie. Stateless, any
number of instances sharing ``secret_keys`` accept it, and it **cannot be revoked**: a
copied cookie works until its idle or absolute time-out, whatever sign-out does.

``memory`` (one process) and ``redis://…`` (any number of instances): the cookie holds a
random 256-bit id and nothing else. The store keeps the record under ``sha256(id)``, so a
store dump holds no usable cookie, encrypted (``SessionRecordCipher``), with a time to live
that follows the idle time-out and never outlives the absolute one. Signing out deletes it:
a copied cookie stops working at once, everywhere. Ending a session also leaves a
revocation mark under a key of its own, read with the record on every load, for as long as
the record could have lived: a copy of the record put back later (a restored backup or
dump, a replica's old data) is still refused. Someone who can write to the store at will
can delete marks too; the marks stop a restore, not an attacker with write access.

Each session is also filed under its user (issuer + ``oid``) so that all of one person's
sessions can be ended together. Login states are claimed in the store too, so a callback
replayed to another process or instance is refused.

Everything here yields effects (``core/protocol.py``); the interpreter performs them. A store
that fails raises :class:`StoreProblem`, which the router turns into "temporarily
unavailable" — never a session, never a pass-through.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from ..context import RequestContext
from ..identity import Identity
from ..protocol import (
    EffectResult,
    StoreClaim,
    StoreDelete,
    StoreEffect,
    StoreFailed,
    StoreGet,
    StoreMembers,
    StorePing,
    StorePut,
    StoreReply,
)
from ..security.cookies import CookieNames, CookiePolicy, cookie_values
from .session import (
    NOTICE_GRACE_SECONDS,
    Deployment,
    Session,
    SessionCookieCodec,
    SessionRecordCipher,
    SessionTimeouts,
)

StoreStep = Generator[StoreEffect, EffectResult, object]
# The most cookie values of our name one request may make us look up (duplicated cookies
# from sibling paths); more are ignored rather than turned into store round trips.
MAX_SESSION_COOKIES_LOOKED_UP = 2
_DECODE_CACHE_SIZE = 4096


class StoreProblem(Exception):
    """The session store could not answer; the request fails closed."""


def store_kind(session_store: str) -> str:
    """``cookie``, ``memory`` or ``redis`` for a ``session_store`` setting."""
    if session_store in ("cookie", "memory"):
        return session_store
    return "redis"


@dataclass(frozen=True, slots=True)
class LoadedSession:
    session: Session | None
    expired: str | None = None  # "idle" / "max" when a session was found but had timed out
    # "other_deployment" when a session was found that another deployment made;
    # "other_provider" when it came from a provider this deployment no longer has.
    refused: str | None = None


class SessionKeeper:
    """Reads, writes and ends sessions for one deployment."""

    def __init__(
        self,
        session_store: str,
        secret_keys: Sequence[str],
        timeouts: SessionTimeouts,
        deployment: Deployment,
        key_prefix: str = "cqrs_sso:",
        deciding_roles: frozenset[str] = frozenset(),
        providers: frozenset[str] = frozenset(),
    ) -> None:
        self.kind = store_kind(session_store)
        self.stateless = self.kind == "cookie"
        self.deployment = deployment
        # The names of the configured providers; "" (a record from before providers were
        # named) is the first. Empty: any (a keeper that only reads, as `cqrs-sso sessions`).
        self.providers = providers | {""} if providers else frozenset()
        self.codec = SessionCookieCodec(secret_keys, deployment, deciding_roles)
        self.records = SessionRecordCipher(secret_keys, deployment)
        self.timeouts = timeouts
        self.prefix = key_prefix
        # Every key digest names the deployment: another deployment sharing this Redis and
        # prefix computes other keys for the same cookie, sid or state, and finds nothing.
        self._digest_prefix = b"cqrs-sso.store-key.v3\x00" + deployment.binding + b"\x00"
        # Decoded records by (cookie value, record bytes): the store is still read on every
        # request — revocation is immediate — but an unchanged record is not parsed again.
        self._decoded: OrderedDict[tuple[str, bytes], Session] = OrderedDict()
        self._session_keys: dict[str, str] = {}

    # -- keys: hashed, so a store dump holds no cookie value or state ------------------------

    def _digest(self, kind: str, value: str) -> str:
        return hashlib.sha256(self._digest_prefix + f"{kind}\x00{value}".encode()).hexdigest()

    def session_key(self, cookie_value: str) -> str:
        # Asked on every request with a server-side store: remembered per cookie value (a
        # bounded table, emptied when full), so a session's requests hash once.
        key = self._session_keys.get(cookie_value)
        if key is None:
            if len(self._session_keys) >= _DECODE_CACHE_SIZE:
                self._session_keys.clear()
            key = self._session_keys[cookie_value] = f"{self.prefix}s:{self._digest('session', cookie_value)}"
        return key

    def user_index(self, identity: Identity) -> str:
        """All sessions of one person: the stable identity is issuer + ``oid`` (Entra), else
        issuer + ``sub``."""
        who = identity.object_id or identity.subject
        return f"{self.prefix}u:{self._digest('user', f'{identity.issuer} {who}')}"

    def subject_index(self, issuer: str, subject: str) -> str:
        """Sessions by the ID token's ``sub`` (back-channel logout may name only ``sub``)."""
        return f"{self.prefix}sub:{self._digest('sub', f'{issuer} {subject}')}"

    def sid_index(self, issuer: str, sid: str) -> str:
        """Sessions by the provider's session id ``sid`` (front- and back-channel logout)."""
        return f"{self.prefix}sid:{self._digest('sid', f'{issuer} {sid}')}"

    def indexes_of(self, identity: Identity) -> tuple[str, ...]:
        indexes = [self.user_index(identity), self.subject_index(identity.issuer, identity.subject)]
        sid = identity.claims.get("sid")
        if isinstance(sid, str) and sid:
            indexes.append(self.sid_index(identity.issuer, sid))
        return tuple(indexes)

    def state_key(self, state: str) -> str:
        return f"{self.prefix}st:{self._digest('state', state)}"

    def revocation_mark(self, session_key: str) -> str:
        """The mark an ended session leaves: named after its record's key (the same digest,
        under ``rv:``), so that ending sessions found by index (their keys, not their
        cookies) can leave one too, and no second hash is spent on every load."""
        return f"{self.prefix}rv:{session_key.removeprefix(self.prefix).removeprefix('s:')}"

    def jti_key(self, issuer: str, jti: str) -> str:
        """A logout token's ``jti``, spent once (Back-Channel Logout 1.0 §2.6 point 10)."""
        return f"{self.prefix}jti:{self._digest('jti', f'{issuer} {jti}')}"

    # -- cookie store (no I/O at all) ------------------------------------------------------

    def from_cookie(self, values: Sequence[str], now: float) -> LoadedSession:
        reason = None
        for value in values:
            session = self.codec.decode(value)
            if session is None:
                continue
            reason = self._unusable(session, now)
            if reason is None:
                return LoadedSession(session)
        return _not_loaded(reason)

    def _unusable(self, session: Session, now: float) -> str | None:
        """Why a genuine session cannot be used — another deployment's, or timed out — or
        ``None``. The codecs give a session of this deployment this very ``Deployment``
        object: one identity test per request, not a comparison of strings."""
        if session.deployment is not self.deployment:
            return "other_deployment"
        if self.providers and session.provider not in self.providers:
            return "other_provider"
        return self.timeouts.expired(session, now)

    # -- server-side stores (effects) ------------------------------------------------------

    def load(self, values: Sequence[str], now: float) -> Generator[StoreEffect, EffectResult, LoadedSession]:
        reason = None
        for value in list(dict.fromkeys(values))[:MAX_SESSION_COOKIES_LOOKED_UP]:
            if not 32 <= len(value) <= 64:
                continue  # not an id we issued: no round trip for it
            key = self.session_key(value)
            record = _reply((yield StoreGet(key, self.revocation_mark(key))))
            session = self._decode(value, key, record) if isinstance(record, bytes) else None
            if session is None:
                continue  # none, or damaged: no session (closed), sign in again
            reason = self._unusable(session, now)
            if reason is None:
                return LoadedSession(session)
        return _not_loaded(reason)

    def open_record(self, key: str, record: bytes) -> Session | None:
        """The session in a stored record (``cqrs-sso sessions`` reads the store with this)."""
        return self.records.open(record, key)

    def _decode(self, value: str, key: str, record: bytes) -> Session | None:
        cached = self._decoded.get((value, record))
        if cached is not None:
            return cached
        session = self.records.open(record, key)
        if session is None:
            return None
        # The record never holds the id (the cookie); its key is the id's hash.
        session = replace(session, session_id=value)
        self._decoded[(value, record)] = session
        if len(self._decoded) > _DECODE_CACHE_SIZE:
            self._decoded.popitem(last=False)
        return session

    def save(self, session: Session, now: float) -> Generator[StoreEffect, EffectResult, None]:
        """Write the record. It lives until the idle time-out (capped by the absolute one)
        plus ``NOTICE_GRACE_SECONDS``: time-outs are checked on every load, so the grace
        opens nothing — it lets the sign-in page say *why* the session ended."""
        absolute_left = session.created_at + self.timeouts.max_seconds - int(now)
        idle_left = session.renewed_at + self.timeouts.idle_seconds - int(now)
        ttl = max(1, min(absolute_left, idle_left) + NOTICE_GRACE_SECONDS)
        key = self.session_key(session.session_id)
        _reply(
            (
                yield StorePut(
                    key,
                    self.records.seal(replace(session, session_id=""), key),
                    ttl,
                    self.indexes_of(session.user.identity),
                    self.timeouts.max_seconds,
                )
            )
        )

    def end(self, session: Session) -> Generator[StoreEffect, EffectResult, None]:
        yield from self.end_stored(self.session_key(session.session_id), session)

    def end_stored(self, key: str, session: Session) -> Generator[StoreEffect, EffectResult, None]:
        """End the session stored under ``key`` (the command line knows keys, not cookies)."""
        _reply((yield self._ending((key,), self.indexes_of(session.user.identity))))

    def end_indexed(self, index: str) -> Generator[StoreEffect, EffectResult, int]:
        """End every session filed under ``index``; returns how many sessions ended."""
        members = _reply((yield StoreMembers(index)))
        keys = tuple(members) if isinstance(members, tuple) else ()
        if not keys:
            return 0
        deleted = _reply((yield self._ending(keys, (index,), also=(index,))))
        return max(0, deleted - 1) if isinstance(deleted, int) else 0

    def _ending(
        self, keys: tuple[str, ...], indexes: tuple[str, ...], also: tuple[str, ...] = ()
    ) -> StoreDelete:
        """Delete the records under ``keys`` (and the keys in ``also``), and mark each as
        ended for as long as a copy of it could still be live (the absolute time-out)."""
        return StoreDelete(
            (*keys, *also),
            indexes,
            tuple(self.revocation_mark(key) for key in keys),
            self.timeouts.max_seconds + NOTICE_GRACE_SECONDS,
        )

    def end_all_of(self, identity: Identity) -> Generator[StoreEffect, EffectResult, int]:
        """End every session of this person (sign out everywhere, revocation)."""
        return (yield from self.end_indexed(self.user_index(identity)))

    def claim(self, key: str, ttl_seconds: int) -> Generator[StoreEffect, EffectResult, bool]:
        """First use of a single-use value (a login state, a logout token's ``jti``)?"""
        return _reply((yield StoreClaim(key, max(1, ttl_seconds)))) is True

    def ping(self) -> Generator[StoreEffect, EffectResult, str]:
        """The store answers; returns what it says it reaches (a topology, a primary)."""
        value = _reply((yield StorePing()))
        return value if isinstance(value, str) else ""


def _not_loaded(reason: str | None) -> LoadedSession:
    if reason in ("other_deployment", "other_provider"):
        return LoadedSession(None, refused=reason)
    return LoadedSession(None, expired=reason)


def _reply(result: EffectResult) -> object:
    if isinstance(result, StoreReply):
        return result.value
    reason = result.reason if isinstance(result, StoreFailed) else "no reply"
    raise StoreProblem(reason)


class SessionCookies:
    """The ``Set-Cookie`` headers that carry a session, end it, and say why it ended."""

    def __init__(self, keeper: SessionKeeper, names: CookieNames, policy: CookiePolicy) -> None:
        self.keeper = keeper
        self.names = names
        self.policy = policy
        self.name = names.session

    def values(self, cookie_header: str | None) -> list[str]:
        """This request's session cookie values (duplicates kept: the keeper tries each)."""
        return cookie_values(cookie_header, self.name)

    def issue(self, session: Session, now: float, new: bool) -> str | None:
        """The cookie for ``session`` once it is kept: the sealed record (cookie store), or
        the id when a server-side store keeps a new session; ``None`` when nothing changes."""
        max_age = self.keeper.timeouts.cookie_max_age(session, now)
        if self.keeper.stateless:
            return self.policy.set_cookie(self.names.session, self.keeper.codec.encode(session), max_age)
        if new:
            return self.policy.set_cookie(self.names.session, session.session_id, max_age)
        return None

    def clear(self) -> str:
        return self.policy.delete_cookie(self.names.session)

    def notice(self, reason: str) -> str:
        """Why the session ended (``idle``, ``max``, ``ended``), read once by the sign-in page."""
        return self.policy.set_cookie(self.names.notice, reason, max_age=600)

    def clear_notice(self) -> str:
        return self.policy.delete_cookie(self.names.notice)


class SessionWriter:
    """Keeps a session where it lives and sets the cookie that names it: the one way a
    session is written (a new sign-in, a re-checked account, a renewal)."""

    def __init__(self, keeper: SessionKeeper, cookies: SessionCookies) -> None:
        self.keeper = keeper
        self.cookies = cookies

    def write(
        self, ctx: RequestContext, session: Session, new: bool = False
    ) -> Generator[StoreEffect, EffectResult, None]:
        if not self.keeper.stateless:
            yield from self.keeper.save(session, ctx.now)
        cookie = self.cookies.issue(session, ctx.now, new)
        if cookie is not None:
            ctx.set_cookies.append(cookie)
        ctx.session, ctx.kept = session, None


class SessionParts(NamedTuple):
    """One deployment's session machinery, as the handlers that end or rewrite sessions
    take it: where sessions live, how one is written, and their cookies."""

    keeper: SessionKeeper
    writer: SessionWriter
    cookies: SessionCookies
