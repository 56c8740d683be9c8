"""Login attempts: one per sign-in started, kept apart from the session, keyed by ``state``.

Each attempt lives in its own signed cookie named after its ``state``, so several tabs can
sign in at once and finishing one does not disturb another. An attempt holds what the
callback must check and must never come from the URL:

* ``state`` — RFC 6749 §10.12 CSRF protection of the redirect: 192 random bits, compared in
  constant time, single use, 10-minute life.
* ``nonce`` — OIDC Core §3.1.2.1 / §3.1.3.7 point 11: binds the ID token to this attempt.
* ``code_verifier`` — RFC 7636 PKCE, always S256 (§4.2), so a stolen code is useless.

Cookies are the only client-side store, so a bound keeps them from piling up: at most
``MAX_OPEN_ATTEMPTS`` and ``MAX_ATTEMPT_COOKIE_BYTES`` in all, oldest dropped first — well
under nginx's default 8 KiB request-header line.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer

ATTEMPT_LIFETIME_SECONDS = 600
MAX_OPEN_ATTEMPTS = 20
MAX_ATTEMPT_COOKIE_BYTES = 4000  # + a maximal 3,800-byte session cookie < 8 KiB
STATE_BYTES = 24  # 192 bits; RFC 9700 §2.1.1 wants state unguessable, 128 bits at the least


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_s256_challenge(code_verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return _b64(hashlib.sha256(code_verifier.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One sign-in in flight, from the Sign In click to the callback."""

    state: str
    nonce: str
    code_verifier: str
    return_path: str
    expires_at: int
    # A step-up (an access rule's max_auth_age_seconds): the callback checks the new sign-in
    # is at most this old (OIDC Core §3.1.3.7 point 13), and keeps the session's id. 0: none.
    max_age: int = 0
    # Whether this attempt needs a sign-in at the provider that happens *now* (a step-up, or
    # shared_devices): the callback then needs the token's auth_time to show it, never the
    # prompt=login this attempt asked for, which sits in a URL the browser can edit.
    fresh_sign_in: bool = False
    # The provider this attempt was sent to (its name): the callback redeems the code there
    # and validates the ID token against it only. "": the first provider.
    provider: str = ""

    @classmethod
    def start(
        cls,
        return_path: str,
        now: float,
        max_age: int = 0,
        fresh_sign_in: bool = False,
        provider: str = "",
    ) -> LoginAttempt:
        return cls(
            state=secrets.token_urlsafe(STATE_BYTES),
            nonce=secrets.token_urlsafe(16),
            # RFC 7636 §4.1: 43–128 characters; 32 random octets give 43.
            code_verifier=secrets.token_urlsafe(32),
            return_path=return_path,
            expires_at=int(now) + ATTEMPT_LIFETIME_SECONDS,
            max_age=max_age,
            fresh_sign_in=fresh_sign_in,
            provider=provider,
        )

    @property
    def started_at(self) -> int:
        return self.expires_at - ATTEMPT_LIFETIME_SECONDS

    @property
    def code_challenge(self) -> str:
        return pkce_s256_challenge(self.code_verifier)

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


class AttemptCookies:
    """Encodes attempts into signed cookies and finds them again by ``state``."""

    def __init__(self, secret_keys: Sequence[str], cookie_prefix: str) -> None:
        # itsdangerous signs with the *last* key and accepts all; our settings list the
        # signing key first, hence the reversal.
        self._signer = Signer(
            list(reversed(secret_keys)),
            salt="cqrs-sso.login-attempt",
            digest_method=hashlib.sha256,
        )
        self.prefix = cookie_prefix

    def cookie_name(self, state: str) -> str:
        return self.prefix + state

    def encode(self, attempt: LoginAttempt) -> str:
        """The cookie value. The state is signed but not stored: it is in the cookie name."""
        body = ".".join(
            (
                attempt.nonce,
                attempt.code_verifier,
                str(attempt.expires_at),
                _b64(attempt.return_path.encode("utf-8")),
                f"{attempt.max_age}-{int(attempt.fresh_sign_in)}",
                attempt.provider,
            )
        )
        signed = self._signer.sign(f"{attempt.state}.{body}").decode("ascii")
        return signed[len(attempt.state) + 1 :]

    def decode(self, state: str, value: str) -> LoginAttempt | None:
        """The attempt for ``state`` if ``value`` was signed by us for exactly that state."""
        try:
            # itsdangerous compares signatures in constant time (hmac.compare_digest).
            body = self._signer.unsign(f"{state}.{value}").decode("ascii")
            nonce, verifier, expires, path, step, provider = body[len(state) + 1 :].split(".")
            max_age, _, asked = step.partition("-")
            return LoginAttempt(
                state,
                nonce,
                verifier,
                _unb64(path).decode(),
                int(expires),
                int(max_age),
                asked == "1",
                provider,
            )
        except (BadSignature, ValueError, UnicodeError):
            return None

    def find(self, cookies: Mapping[str, list[str]], state: str) -> LoginAttempt | None:
        """The attempt for ``state`` from this browser's cookies, if one is there and genuine."""
        for value in cookies.get(self.cookie_name(state), ()):
            attempt = self.decode(state, value)
            if attempt is not None:
                return attempt
        return None

    def to_drop_before_adding(
        self, cookies: Mapping[str, list[str]], new_cookie_bytes: int, now: float
    ) -> list[str]:
        """Names of attempt cookies to delete so that one more fits within the bounds.

        Expired and unreadable ones always go; then the oldest, until at most
        ``MAX_OPEN_ATTEMPTS - 1`` remain and the bytes budget has room for the new one.
        """
        drop: list[str] = []
        live: list[tuple[int, str, int]] = []
        for name, values in cookies.items():
            if not name.startswith(self.prefix):
                continue
            attempt = self.decode(name[len(self.prefix) :], values[0]) if values else None
            if attempt is None or attempt.expired(now):
                drop.append(name)
            else:
                live.append((attempt.expires_at, name, len(name) + len(values[0]) + 3))
        live.sort()
        total = sum(size for _, _, size in live)
        while live and (
            len(live) >= MAX_OPEN_ATTEMPTS or total + new_cookie_bytes > MAX_ATTEMPT_COOKIE_BYTES
        ):
            _, name, size = live.pop(0)
            drop.append(name)
            total -= size
        return drop
