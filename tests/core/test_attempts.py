"""Login attempts: state, nonce and PKCE per attempt, signed cookies, bounds, single use."""

from __future__ import annotations

import math
import secrets

import pytest

from cqrs_sso_middleware.core.interpreter import StoreOnly, run_sync
from cqrs_sso_middleware.core.sessions.attempts import (
    ATTEMPT_LIFETIME_SECONDS,
    MAX_ATTEMPT_COOKIE_BYTES,
    MAX_OPEN_ATTEMPTS,
    AttemptCookies,
    LoginAttempt,
    pkce_s256_challenge,
)
from cqrs_sso_middleware.core.sessions.keeper import SessionKeeper
from cqrs_sso_middleware.core.sessions.session import Deployment, SessionTimeouts
from cqrs_sso_middleware.stores import MemoryStore

KEYS = (secrets.token_urlsafe(32),)
NOW = 1_800_000_000.0


def jar(codec: AttemptCookies, attempts: list[LoginAttempt]) -> dict[str, list[str]]:
    return {codec.cookie_name(a.state): [codec.encode(a)] for a in attempts}


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_state_has_at_least_128_bits_and_every_value_is_fresh() -> None:
    attempts = [LoginAttempt.start("/", NOW) for _ in range(200)]
    assert all(len(a.state) * 6 >= 128 for a in attempts)
    assert len({a.state for a in attempts}) == 200
    assert len({a.nonce for a in attempts}) == 200
    assert len({a.code_verifier for a in attempts}) == 200
    assert all(43 <= len(a.code_verifier) <= 128 for a in attempts)


def test_attempt_expires_after_ten_minutes() -> None:
    attempt = LoginAttempt.start("/", NOW)
    assert not attempt.expired(NOW + ATTEMPT_LIFETIME_SECONDS - 1)
    assert attempt.expired(NOW + ATTEMPT_LIFETIME_SECONDS)


def test_attempt_cookie_round_trips_and_is_found_by_state() -> None:
    codec = AttemptCookies(KEYS, "cqrs_sso-attempt-")
    attempt = LoginAttempt.start("/messages?tab=a;b", NOW)
    assert codec.find(jar(codec, [attempt]), attempt.state) == attempt


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda v: v[:-5] + ("A" if v[-5] != "A" else "B") + v[-4:], id="signature-changed"),
        pytest.param(lambda v: v.replace(".", "x", 1), id="body-changed"),
        pytest.param(lambda v: v[: len(v) // 2], id="truncated"),
        pytest.param(lambda v: "", id="empty"),
    ],
)
def test_tampered_attempt_cookie_is_ignored(tamper: object) -> None:
    codec = AttemptCookies(KEYS, "cqrs_sso-attempt-")
    attempt = LoginAttempt.start("/", NOW)
    value = tamper(codec.encode(attempt))  # type: ignore[operator]
    assert codec.find({codec.cookie_name(attempt.state): [value]}, attempt.state) is None


def test_attempt_cookie_of_another_state_does_not_match() -> None:
    codec = AttemptCookies(KEYS, "cqrs_sso-attempt-")
    mine, other = LoginAttempt.start("/", NOW), LoginAttempt.start("/", NOW)
    cookies = {codec.cookie_name(mine.state): [codec.encode(other)]}
    assert codec.find(cookies, mine.state) is None


def test_attempt_signed_by_another_deployment_is_ignored() -> None:
    ours, theirs = (
        AttemptCookies(KEYS, "cqrs_sso-attempt-"),
        AttemptCookies((secrets.token_urlsafe(32),), "cqrs_sso-attempt-"),
    )
    attempt = LoginAttempt.start("/", NOW)
    assert ours.find(jar(theirs, [attempt]), attempt.state) is None


def test_open_attempts_are_bounded_oldest_dropped_first() -> None:
    codec = AttemptCookies(KEYS, "cqrs_sso-attempt-")
    attempts = [LoginAttempt.start("/", NOW + i) for i in range(MAX_OPEN_ATTEMPTS)]
    drop = codec.to_drop_before_adding(jar(codec, attempts), 200, NOW + 100)
    assert drop == [codec.cookie_name(attempts[0].state)]


def test_attempt_cookies_stay_under_nginx_header_limits_with_long_return_paths() -> None:
    codec = AttemptCookies(KEYS, "cqrs_sso-attempt-")
    attempts = [LoginAttempt.start("/" + "p" * 1500, NOW + i) for i in range(MAX_OPEN_ATTEMPTS)]
    cookies = jar(codec, attempts)
    drop = set(codec.to_drop_before_adding(cookies, 2000, NOW + 100))
    kept = sum(len(n) + len(v[0]) + 3 for n, v in cookies.items() if n not in drop)
    assert kept + 2000 <= MAX_ATTEMPT_COOKIE_BYTES
    assert MAX_ATTEMPT_COOKIE_BYTES + 4000 < 8192  # room for the session cookie in one 8 KiB line


def test_twenty_short_attempts_fit_without_dropping() -> None:
    codec = AttemptCookies(KEYS, "__Host-cqrs_sso-attempt-")
    attempts = [LoginAttempt.start("/messages", NOW + i) for i in range(MAX_OPEN_ATTEMPTS - 1)]
    cookies = jar(codec, attempts)
    new = codec.encode(LoginAttempt.start("/messages", NOW))
    size = len(codec.cookie_name("x" * 32)) + len(new) + 3
    assert codec.to_drop_before_adding(cookies, size, NOW + 50) == []
    assert (
        math.ceil(sum(len(n) + len(v[0]) + 3 for n, v in cookies.items()) + size) < MAX_ATTEMPT_COOKIE_BYTES
    )


def test_expired_attempt_cookies_are_dropped() -> None:
    codec = AttemptCookies(KEYS, "cqrs_sso-attempt-")
    old = LoginAttempt.start("/", NOW)
    drop = codec.to_drop_before_adding(jar(codec, [old]), 200, NOW + ATTEMPT_LIFETIME_SECONDS + 1)
    assert drop == [codec.cookie_name(old.state)]


def keeper() -> SessionKeeper:
    return SessionKeeper("cookie", KEYS, SessionTimeouts(3600, 43200), Deployment("https://i.example", "c"))


def test_state_is_single_use() -> None:
    """RFC 6749 §10.12: a state is claimed once, with the same effect for every store (a
    process-local store for the cookie store)."""
    store, sessions = MemoryStore(lambda: NOW), keeper()
    performer = StoreOnly(store.perform)
    assert run_sync(sessions.claim(sessions.state_key("state-1"), 600), performer)
    assert not run_sync(sessions.claim(sessions.state_key("state-1"), 600), performer)
    assert run_sync(sessions.claim(sessions.state_key("state-2"), 600), performer)


def test_spent_states_are_forgotten_once_their_attempt_would_have_expired() -> None:
    moment = [NOW]
    store, sessions = MemoryStore(lambda: moment[0]), keeper()
    performer = StoreOnly(store.perform)
    for i in range(2000):
        run_sync(sessions.claim(sessions.state_key(f"s{i}"), 600), performer)
    moment[0] += 601
    assert len(store) == 0  # nothing left to grow without bound
    assert run_sync(sessions.claim(sessions.state_key("s1"), 600), performer)
