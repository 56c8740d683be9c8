"""The signed session cookie: integrity, key rotation, time-outs, renewal, size."""

from __future__ import annotations

import base64
import secrets

import pytest

from cqrs_sso_middleware.core.identity import Account, Identity, User
from cqrs_sso_middleware.core.sessions.keeper import SessionKeeper
from cqrs_sso_middleware.core.sessions.session import (
    MAX_SESSION_COOKIE_BYTES,
    Deployment,
    KeyRing,
    Session,
    SessionCookieCodec,
    SessionRecordCipher,
    SessionTimeouts,
)

NOW = 1_800_000_000.0
OLD_KEY, NEW_KEY = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
DEPLOYMENT = Deployment("https://login.microsoftonline.com/t/v2.0", "app-a")


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
    codec = SessionCookieCodec([NEW_KEY], DEPLOYMENT)
    session = Session.start(user(), NOW, DEPLOYMENT)
    decoded = codec.decode(codec.encode(session))
    assert decoded is not None
    assert decoded.user.email == "gp.user@nhs.net"
    assert decoded.user.account.attributes == {"organisation": "Surgery"}
    assert "nonce" not in decoded.user.identity.claims
    assert decoded.session_id == session.session_id


def test_every_sign_in_gets_a_new_session_id() -> None:
    assert (
        Session.start(user(), NOW, DEPLOYMENT).session_id != Session.start(user(), NOW, DEPLOYMENT).session_id
    )


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
    codec = SessionCookieCodec([NEW_KEY], DEPLOYMENT)
    value = codec.encode(Session.start(user(), NOW, DEPLOYMENT))
    assert codec.decode(tamper(value)) is None  # type: ignore[operator]


def test_key_rotation_old_key_accepted_new_key_signs() -> None:
    before = SessionCookieCodec([OLD_KEY], DEPLOYMENT)
    during = SessionCookieCodec([NEW_KEY, OLD_KEY], DEPLOYMENT)
    after = SessionCookieCodec([NEW_KEY], DEPLOYMENT)
    old_cookie = before.encode(Session.start(user(), NOW, DEPLOYMENT))
    assert during.decode(old_cookie) is not None
    new_cookie = during.encode(Session.start(user(), NOW, DEPLOYMENT))
    assert after.decode(new_cookie) is not None
    assert after.decode(old_cookie) is None  # retired key: refused


def test_session_from_another_deployment_is_refused() -> None:
    theirs = SessionCookieCodec([secrets.token_urlsafe(32)], DEPLOYMENT)
    assert (
        SessionCookieCodec([NEW_KEY], DEPLOYMENT).decode(
            theirs.encode(Session.start(user(), NOW, DEPLOYMENT))
        )
        is None
    )


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(Deployment(DEPLOYMENT.issuer, "app-b"), id="another-client-id"),
        pytest.param(Deployment("https://login.microsoftonline.com/u/v2.0", "app-a"), id="another-issuer"),
    ],
)
def test_cookie_of_another_deployment_sharing_secret_keys_does_not_decrypt(other: Deployment) -> None:
    """Issuer and client id are in the key derivation and the associated data: a deployment
    that shares ``secret_keys`` cannot open (or forge) another's cookies or records."""
    ours, theirs = SessionCookieCodec([NEW_KEY], DEPLOYMENT), SessionCookieCodec([NEW_KEY], other)
    assert theirs.decode(ours.encode(Session.start(user(), NOW, DEPLOYMENT))) is None
    records = SessionRecordCipher([NEW_KEY], DEPLOYMENT)
    sealed = records.seal(Session.start(user(), NOW, DEPLOYMENT), "p:s:k1")
    assert records.open(sealed, "p:s:k1") is not None
    assert SessionRecordCipher([NEW_KEY], other).open(sealed, "p:s:k1") is None


def test_keys_are_derived_per_deployment_and_the_associated_data_names_it() -> None:
    """Each layer of the binding on its own: keys derived for another deployment do not
    open a message even with the same associated data; and the cookie's associated data
    names the deployment, so the right key with another deployment's data fails too."""
    other = Deployment(DEPLOYMENT.issuer, "app-b")
    aad = b"the same associated data"
    sealed = KeyRing([NEW_KEY], b"p", DEPLOYMENT).seal(b"record", aad)
    assert KeyRing([NEW_KEY], b"p", DEPLOYMENT).open(sealed, aad) == b"record"
    assert KeyRing([NEW_KEY], b"p", other).open(sealed, aad) is None
    cookie = SessionCookieCodec([NEW_KEY], DEPLOYMENT).encode(Session.start(user(), NOW, DEPLOYMENT))
    blob = base64.urlsafe_b64decode(cookie.removeprefix("v3.") + "==")
    ring = KeyRing([NEW_KEY], b"session-cookie v3", DEPLOYMENT)
    assert ring.open(blob, b"cqrs-sso.session-cookie.v3\x00" + DEPLOYMENT.binding) is not None
    assert ring.open(blob, b"cqrs-sso.session-cookie.v3\x00" + other.binding) is None


def test_store_record_moved_under_another_key_does_not_open() -> None:
    """The store key is in the associated data: a record copied over another person's
    session key (someone with write access to Redis) is not that person's session."""
    records = SessionRecordCipher([NEW_KEY], DEPLOYMENT)
    sealed = records.seal(Session.start(user(), NOW, DEPLOYMENT), "p:s:mine")
    assert records.open(sealed, "p:s:theirs") is None


def test_decrypted_session_naming_another_deployment_is_refused() -> None:
    """Defence in depth behind the key binding: a session whose record names another issuer
    or client id is refused on load, with the reason for the audit line."""
    keeper = SessionKeeper("cookie", [NEW_KEY], SessionTimeouts(3600, 43200), DEPLOYMENT)
    foreign = Session.start(user(), NOW, Deployment(DEPLOYMENT.issuer, "app-b"))
    loaded = keeper.from_cookie([keeper.codec.encode(foreign)], NOW)
    assert loaded.session is None and loaded.refused == "other_deployment"
    own = keeper.from_cookie([keeper.codec.encode(Session.start(user(), NOW, DEPLOYMENT))], NOW)
    assert own.session is not None and own.refused is None


def test_idle_and_absolute_timeouts() -> None:
    timeouts = SessionTimeouts(idle_seconds=3600, max_seconds=43200)
    session = Session.start(user(), NOW, DEPLOYMENT)
    assert timeouts.expired(session, NOW + 3599) is None
    assert timeouts.expired(session, NOW + 3600) == "idle"
    renewed = timeouts.renewed(session, NOW + 3000)
    assert timeouts.expired(renewed, NOW + 6000) is None
    very_active = timeouts.renewed(session, NOW + 43199)
    assert timeouts.expired(very_active, NOW + 43200) == "max"


def test_sliding_renewal_is_not_on_every_request() -> None:
    timeouts = SessionTimeouts(idle_seconds=3600, max_seconds=43200)
    session = Session.start(user(), NOW, DEPLOYMENT)
    assert not timeouts.needs_renewal(session, NOW + 10)
    assert not timeouts.needs_renewal(session, NOW + 299)
    assert timeouts.needs_renewal(session, NOW + 300)


def test_huge_claims_are_dropped_to_keep_the_cookie_under_4k() -> None:
    codec = SessionCookieCodec([NEW_KEY], DEPLOYMENT)
    big = {f"claim{i}": secrets.token_urlsafe(48) for i in range(100)}
    value = codec.encode(Session.start(user(**big), NOW, DEPLOYMENT))
    assert len(value) <= MAX_SESSION_COOKIE_BYTES
    decoded = codec.decode(value)
    assert decoded is not None
    assert decoded.user.email == "gp.user@nhs.net"


def keeper_of(*providers: str) -> SessionKeeper:
    timeouts = SessionTimeouts(3600, 12 * 3600)
    return SessionKeeper("cookie", (NEW_KEY,), timeouts, DEPLOYMENT, providers=frozenset(providers))


def test_a_session_records_its_provider_and_one_from_a_provider_no_longer_configured_is_refused() -> None:
    """Sessions are bound to (deployment, provider): removing a provider from the settings
    ends its sessions, though the cookie still opens under the deployment's keys."""
    both = keeper_of("nhsmail", "cis2")
    cookie = both.codec.encode(Session.start(user(), NOW, both.deployment, provider="cis2"))
    loaded = both.from_cookie([cookie], NOW + 1)
    assert loaded.session is not None and loaded.session.provider == "cis2"
    assert keeper_of("nhsmail").from_cookie([cookie], NOW + 1).refused == "other_provider"


def test_a_session_from_before_providers_were_named_belongs_to_the_first() -> None:
    keeper = keeper_of("nhsmail", "cis2")
    cookie = keeper.codec.encode(Session.start(user(), NOW, keeper.deployment))
    assert keeper.from_cookie([cookie], NOW + 1).session is not None
