"""The signed session cookie: integrity, key rotation, time-outs, renewal, size."""

from __future__ import annotations

import secrets

import pytest

from cqrs_sso_middleware.core.identity import Account, Identity, User
from cqrs_sso_middleware.core.sessions import (
    MAX_SESSION_COOKIE_BYTES,
    Session,
    SessionCookieCodec,
    SessionTimeouts,
)

NOW = 1_800_000_000.0
OLD_KEY, NEW_KEY = secrets.token_urlsafe(32), secrets.token_urlsafe(32)


def user(**claims: object) -> User:
    identity = Identity(
        email="gp.user@nhs.net",
        subject="sub",
        issuer="https://login.microsoftonline.com/t/v2.0",
        object_id="oid",
        tenant_id="tid",
        name="Dr Gita Patel",
        claims={"email": "gp.user@nhs.net", "nonce": "n", **claims},
    )
    return User(identity, Account("CQRS-1", "gp.user@nhs.net", {"organisation": "Surgery"}))


def test_session_round_trips_without_protocol_claims() -> None:
    codec = SessionCookieCodec([NEW_KEY])
    session = Session.start(user(), NOW)
    decoded = codec.decode(codec.encode(session))
    assert decoded is not None
    assert decoded.user.email == "gp.user@nhs.net"
    assert decoded.user.account.attributes == {"organisation": "Surgery"}
    assert "nonce" not in decoded.user.identity.claims
    assert decoded.session_id == session.session_id


def test_every_sign_in_gets_a_new_session_id() -> None:
    assert Session.start(user(), NOW).session_id != Session.start(user(), NOW).session_id


@pytest.mark.parametrize(
    "tamper",
    [
        # The 5th-last character carries signature bits; the last one partly carries base64
        # padding bits, whose change decodes to the same signature (not a forgery).
        pytest.param(lambda v: v[:-5] + ("A" if v[-5] != "A" else "B") + v[-4:], id="signature-char"),
        pytest.param(lambda v: v[:10] + ("A" if v[10] != "A" else "B") + v[11:], id="payload-char"),
        pytest.param(lambda v: v[:20], id="truncated"),
        pytest.param(lambda v: "x" + v, id="prefixed"),
        pytest.param(lambda v: v + "." + v, id="doubled"),
        pytest.param(lambda v: "A" * 9000, id="oversized"),
        pytest.param(lambda v: "", id="empty"),
    ],
)
def test_tampered_session_cookie_is_refused(tamper: object) -> None:
    codec = SessionCookieCodec([NEW_KEY])
    value = codec.encode(Session.start(user(), NOW))
    assert codec.decode(tamper(value)) is None  # type: ignore[operator]


def test_key_rotation_old_key_accepted_new_key_signs() -> None:
    before = SessionCookieCodec([OLD_KEY])
    during = SessionCookieCodec([NEW_KEY, OLD_KEY])
    after = SessionCookieCodec([NEW_KEY])
    old_cookie = before.encode(Session.start(user(), NOW))
    assert during.decode(old_cookie) is not None
    new_cookie = during.encode(Session.start(user(), NOW))
    assert after.decode(new_cookie) is not None
    assert after.decode(old_cookie) is None  # retired key: refused


def test_session_from_another_deployment_is_refused() -> None:
    theirs = SessionCookieCodec([secrets.token_urlsafe(32)])
    assert SessionCookieCodec([NEW_KEY]).decode(theirs.encode(Session.start(user(), NOW))) is None


def test_idle_and_absolute_timeouts() -> None:
    timeouts = SessionTimeouts(idle_seconds=3600, max_seconds=43200)
    session = Session.start(user(), NOW)
    assert timeouts.expired(session, NOW + 3599) is None
    assert timeouts.expired(session, NOW + 3600) == "idle"
    renewed = timeouts.renewed(session, NOW + 3000)
    assert timeouts.expired(renewed, NOW + 6000) is None
    very_active = timeouts.renewed(session, NOW + 43199)
    assert timeouts.expired(very_active, NOW + 43200) == "max"


def test_sliding_renewal_is_not_on_every_request() -> None:
    timeouts = SessionTimeouts(idle_seconds=3600, max_seconds=43200)
    session = Session.start(user(), NOW)
    assert not timeouts.needs_renewal(session, NOW + 10)
    assert not timeouts.needs_renewal(session, NOW + 299)
    assert timeouts.needs_renewal(session, NOW + 300)


def test_huge_claims_are_dropped_to_keep_the_cookie_under_4k() -> None:
    codec = SessionCookieCodec([NEW_KEY])
    big = {f"claim{i}": secrets.token_urlsafe(48) for i in range(100)}
    value = codec.encode(Session.start(user(**big), NOW))
    assert len(value) <= MAX_SESSION_COOKIE_BYTES
    decoded = codec.decode(value)
    assert decoded is not None
    assert decoded.user.email == "gp.user@nhs.net"
