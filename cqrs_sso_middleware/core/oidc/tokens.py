"""ID token validation (OIDC Core §3.1.3.7) and the JWKS cache with its refresh rule.

Signature checking is joserfc's; everything around it — which algorithms, which key, which
claims — is decided here, explicitly, because that is where ID token bugs live.

JWKS refresh (Entra key roll-over): keys are cached; a token naming an unknown
``kid`` triggers a refresh unless another *unknown-kid* refresh happened in the last
``UNKNOWN_KID_REFRESH_SECONDS``; after that the token is rejected. Routine fetches (the
first one, and the daily one) do not count against that budget, so a roll-over right
after a fetch still works (OpenID RP certification ``rp-key-rotation-op-sign-key``), while
a flood of random ``kid``s costs the provider at most one request per window. A failed
refresh keeps the last good keys and may be retried after ``FAILED_REFRESH_RETRY_SECONDS``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..errors import ProviderError, TokenRejected, UnknownSigningKey
from .metadata import SUPPORTED_SIGNING_ALGORITHMS

UNKNOWN_KID_REFRESH_SECONDS = 300
FAILED_REFRESH_RETRY_SECONDS = 10
JWKS_MAX_AGE_SECONDS = 24 * 3600
MAX_ID_TOKEN_BYTES = 16 * 1024


@dataclass(slots=True)
class SigningKeys:
    """The provider's public keys, as last fetched, and the two refresh budgets."""

    keys: KeySet | None = None
    fetched_at: float = 0.0
    # Earliest moments the next routine / unknown-kid refresh may be made.
    routine_due_at: float = field(default=float("-inf"))
    unknown_kid_due_at: float = field(default=float("-inf"))

    def should_fetch(self, now: float, unknown_kid: bool = False) -> bool:
        """Whether to (re)fetch the JWKS now; a ``True`` answer reserves the attempt.

        Routine: no keys yet, or keys older than a day. Unknown ``kid``: at most one per
        ``UNKNOWN_KID_REFRESH_SECONDS``, whatever routine fetches happened meanwhile.
        """
        if unknown_kid:
            if self.keys is not None and now < self.unknown_kid_due_at:
                return False  # rate limit: a flood of bad kids cannot hammer the provider
            self.unknown_kid_due_at = now + UNKNOWN_KID_REFRESH_SECONDS
            return True
        if self.keys is not None and now - self.fetched_at < JWKS_MAX_AGE_SECONDS:
            return False
        if self.keys is not None and now < self.routine_due_at:
            return False  # a stale-key refresh failed a moment ago: keep the last good keys
        self.routine_due_at = now + FAILED_REFRESH_RETRY_SECONDS
        return True

    def fetch_failed(self, now: float) -> None:
        """A reserved refresh failed: allow the next try soon, not a whole window later, so
        sign-in recovers once the provider is back (a flood still costs ≤ 1 request / 10 s)."""
        self.unknown_kid_due_at = min(self.unknown_kid_due_at, now + FAILED_REFRESH_RETRY_SECONDS)

    def accept(self, body: bytes, now: float) -> None:
        """Install a fetched JWKS document; raises ProviderError and keeps the old keys."""
        try:
            document = json.loads(body)
            keys = [k for k in document["keys"] if k.get("use", "sig") == "sig"]
            key_set = KeySet.import_key_set({"keys": keys})
        except (ValueError, KeyError, TypeError, AttributeError, JoseError) as error:
            raise ProviderError(f"JWKS is not a usable key set: {type(error).__name__}") from error
        if not list(key_set):
            raise ProviderError("JWKS holds no signing keys")
        self.keys = key_set
        self.fetched_at = now


@dataclass(frozen=True, slots=True)
class TokenExpectations:
    """What this client expects of every ID token, plus the attempt's nonce."""

    issuer: str
    client_id: str
    nonce: str
    algorithms: Collection[str] = SUPPORTED_SIGNING_ALGORITHMS
    leeway_seconds: int = 180


def read_header(id_token: str) -> Mapping[str, Any]:
    """The JOSE header, unverified: used only to choose the key and algorithm."""
    if len(id_token) > MAX_ID_TOKEN_BYTES:
        raise TokenRejected("malformed", "token too large")
    if id_token.count(".") != 2:
        # Five parts would be a JWE; OIDC clients that registered no encryption get JWS.
        raise TokenRejected("malformed", "not a compact JWS")
    try:
        return jws.extract_compact(id_token.encode("ascii")).headers()
    except (JoseError, ValueError, UnicodeError) as error:
        raise TokenRejected("malformed", type(error).__name__) from error


def unverified_issuer(token: str) -> str:
    """The ``iss`` of a JWS, unverified: only to choose which provider verifies it (a
    logout token names its provider no other way). ``""`` when it cannot be read."""
    read_header(token)
    try:
        claims = json.loads(jws.extract_compact(token.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError):
        return ""
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else ""


def verify_signature(id_token: str, keys: KeySet, allowed: Collection[str]) -> dict[str, Any]:
    header = read_header(id_token)
    alg = header.get("alg")
    # OIDC Core §3.1.3.7 point 7 and RFC 8725 §3.1: the algorithm comes from our allow-list,
    # never from the token. This refuses "none" and HS256-signed-with-the-public-key.
    if alg not in allowed:
        raise TokenRejected("algorithm_not_allowed", f"alg={alg!r}")
    kid = header.get("kid")
    if kid is not None:
        candidates = [k for k in keys if k.kid == kid]
        if not candidates:
            raise UnknownSigningKey(kid if isinstance(kid, str) else None)
    else:
        # OIDC Core §10.1: without a kid the key must be unambiguous. Only keys that can
        # verify this alg count (RP certification rp-id_token-kid-absent-*-jwks).
        candidates = [k for k in keys if _fits(k, str(alg))]
        if len(candidates) != 1:
            raise TokenRejected("missing_kid", f"{len(candidates)} keys fit {alg} and the token names none")
    try:
        compact = jws.extract_compact(id_token.encode("ascii"))
        valid = jws.validate_compact(compact, candidates[0], algorithms=[str(alg)])
    except JoseError as error:
        raise TokenRejected("bad_signature", type(error).__name__) from error
    if not valid:
        raise TokenRejected("bad_signature")
    try:
        claims = json.loads(compact.payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise TokenRejected("malformed", "payload is not JSON") from error
    if not isinstance(claims, dict):
        raise TokenRejected("malformed", "payload is not a JSON object")
    return claims


_KEY_TYPE_OF_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC"}


def _fits(key: Any, alg: str) -> bool:
    """Whether ``key`` can verify ``alg``: right key type, and its own ``alg`` if it names one."""
    key_alg = key.get("alg") if hasattr(key, "get") else None
    return key.key_type == _KEY_TYPE_OF_ALG.get(alg[:2]) and key_alg in (None, alg)


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenRejected(f"missing_{name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected(f"invalid_{name}", f"{name} is not a number")
    return float(value)


def check_issuer_and_audience(claims: Mapping[str, Any], expect: TokenExpectations) -> list[Any]:
    """OIDC Core §3.1.3.7 points 2 and 3 (and Back-Channel Logout 1.0 §2.6 point 3): ``iss``
    exactly ours, ``aud`` naming our client id. Returns the audiences."""
    if claims.get("iss") != expect.issuer:  # point 2: exact match
        raise TokenRejected("wrong_issuer", f"iss={claims.get('iss')!r}")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or expect.client_id not in audiences:  # point 3
        raise TokenRejected("wrong_audience", f"aud={audience!r}")
    return audiences


def _check_id_token_times(claims: Mapping[str, Any], leeway: int, now: float) -> None:
    """Points 9 and 10: not expired, not issued in the future; ``nbf`` when present."""
    expires = _number(claims, "exp", required=True)
    if expires is not None and now - leeway >= expires:
        raise TokenRejected("expired", f"exp={expires}")
    issued = _number(claims, "iat", required=True)
    if issued is not None and issued > now + leeway:
        raise TokenRejected("issued_in_future", f"iat={issued}")
    not_before = _number(claims, "nbf", required=False)
    if not_before is not None and not_before > now + leeway:
        raise TokenRejected("not_yet_valid", f"nbf={not_before}")


def check_claims(claims: Mapping[str, Any], expect: TokenExpectations, now: float) -> None:
    """OIDC Core §3.1.3.7 points 2–5, 9–11 on claims whose signature is already verified."""
    audiences = check_issuer_and_audience(claims, expect)
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:  # point 4
        raise TokenRejected("missing_azp", "several audiences and no azp")
    if azp is not None and azp != expect.client_id:  # point 5
        raise TokenRejected("wrong_azp", f"azp={azp!r}")
    _check_id_token_times(claims, expect.leeway_seconds, now)
    nonce = claims.get("nonce")  # point 11, compared in constant time
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode("utf-8"), expect.nonce.encode("utf-8")
    ):
        raise TokenRejected("wrong_nonce")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenRejected("missing_sub")


def auth_time_of(claims: Mapping[str, Any], max_age: int, fresh_since: int, leeway: int, now: float) -> int:
    """When the person last proved who they are at the provider, from the ID token's
    ``auth_time`` (0: not known). Only the token proves a sign-in is fresh: ``prompt=login``
    and ``max_age`` sit in a URL the browser can edit, so asking for them proves nothing.

    * ``max_age`` (a step-up): OIDC Core §3.1.3.7 point 13, ``auth_time`` no older than
      that (with the clock leeway);
    * ``fresh_since`` (the attempt's start, for a step-up or ``shared_devices``): the
      password was typed during this attempt, not before it;
    * either asked for and no ``auth_time`` in the token: refused (``missing_auth_time``).
      Entra sends it only as an optional claim of the app registration (docs/nhsmail.md);
    * an ``auth_time`` in the future is a provider clock ahead of ours: taken as now (a
      sign-in cannot be later than the moment its token arrives)."""
    auth_time = _number(claims, "auth_time", required=False)
    if auth_time is None:
        if max_age or fresh_since:
            raise TokenRejected("missing_auth_time", "a fresh sign-in was needed")
        return 0
    moment = min(int(auth_time), int(now))
    if max_age and now - moment > max_age + leeway:
        raise TokenRejected("auth_time_too_old", f"auth_time={moment}, max_age={max_age}")
    if fresh_since and moment < fresh_since - leeway:
        raise TokenRejected("auth_time_too_old", f"auth_time={moment}, attempt started {fresh_since}")
    return moment


def validate_id_token(id_token: str, keys: KeySet, expect: TokenExpectations, now: float) -> dict[str, Any]:
    """Verify signature and claims; return the claims or raise :class:`TokenRejected`."""
    claims = verify_signature(id_token, keys, expect.algorithms)
    check_claims(claims, expect, now)
    return claims


BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_ALGORITHMS = ("RS256",)
# A logout token is a notification sent the moment a person signs out (providers give them
# one to two minutes: oidc-provider 120 s). One issued longer ago than this, or valid for
# longer than the lifetime below, is refused: a captured token must not stay usable, and
# each spent jti is kept until its token expires, so a bounded lifetime bounds that memory.
LOGOUT_TOKEN_MAX_AGE_SECONDS = 600
LOGOUT_TOKEN_MAX_LIFETIME_SECONDS = 3600
# Back-Channel Logout 1.0 §2.4 (errata set 1): "logout+jwt" is the explicit type; a token
# without typ is accepted (older providers), any other typ is not a logout token. An ID
# token's "JWT" is refused: cross-JWT confusion (RFC 8725 §3.11, §2.8).
LOGOUT_TOKEN_TYPES = frozenset({"logout+jwt", "application/logout+jwt"})


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    """A validated logout token: whose sessions to end. ``jti`` must still be spent once,
    and kept spent until ``keep_jti_until`` (the token's ``exp`` plus the leeway)."""

    issuer: str
    subject: str | None
    sid: str | None
    jti: str
    keep_jti_until: float


def check_logout_header(header: Mapping[str, Any]) -> None:
    """Back-Channel Logout 1.0 §2.6 point 3 with the errata's explicit type (§2.4)."""
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in LOGOUT_TOKEN_TYPES):
        raise TokenRejected("wrong_typ", f"typ={typ!r}")


def _check_logout_times(claims: Mapping[str, Any], leeway: int, now: float) -> float:
    """``iat`` and ``exp`` (both REQUIRED, BCL 1.0 §2.4 errata set 1) within the limits;
    returns ``exp``."""
    issued = _number(claims, "iat", required=True)
    expires = _number(claims, "exp", required=True)
    assert issued is not None and expires is not None
    if issued > now + leeway:
        raise TokenRejected("issued_in_future", f"iat={issued}")
    if issued < now - leeway - LOGOUT_TOKEN_MAX_AGE_SECONDS:
        raise TokenRejected("issued_too_long_ago", f"iat={issued}")
    if now - leeway >= expires:
        raise TokenRejected("expired", f"exp={expires}")
    if not issued < expires <= issued + LOGOUT_TOKEN_MAX_LIFETIME_SECONDS:
        raise TokenRejected("absurd_lifetime", f"iat={issued} exp={expires}")
    return expires


def _check_logout_event(claims: Mapping[str, Any]) -> None:
    """§2.4: the back-channel logout event as a JSON object, and no nonce — which is also
    what stops an ID token from being replayed as a logout token."""
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise TokenRejected("not_a_logout_token", "events has no back-channel logout event")
    if "nonce" in claims:
        raise TokenRejected("nonce_present", "a logout token must not carry a nonce (§2.4)")


def check_logout_claims(claims: Mapping[str, Any], expect: TokenExpectations, now: float) -> LogoutRequest:
    """OpenID Connect Back-Channel Logout 1.0 §2.4 and §2.6 on verified claims.

    ``iss`` exact, ``aud`` has our client id, ``iat`` and ``exp`` present and sane (see
    ``_check_logout_times``), ``events`` holds the back-channel logout event as a JSON
    object, ``sid`` and/or ``sub``, a ``jti``, and **no** ``nonce`` — which is also what
    stops an ID token from being replayed as a logout token.
    """
    check_issuer_and_audience(claims, expect)
    expires = _check_logout_times(claims, expect.leeway_seconds, now)
    _check_logout_event(claims)
    subject, sid, jti = claims.get("sub"), claims.get("sid"), claims.get("jti")
    subject = subject if isinstance(subject, str) and subject else None
    sid = sid if isinstance(sid, str) and sid else None
    if subject is None and sid is None:
        raise TokenRejected("no_sub_or_sid")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise TokenRejected("missing_jti")
    # Kept while the token could still be accepted: until exp, plus the leeway we allow.
    return LogoutRequest(expect.issuer, subject, sid, jti, expires + expect.leeway_seconds)
