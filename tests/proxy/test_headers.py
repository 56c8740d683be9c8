"""Header hygiene of the proxy as a table, without a socket."""

from __future__ import annotations

import pytest

from cqrs_sso_middleware.core.claim_headers import ClaimHeaders
from cqrs_sso_middleware.core.identity import Account, Identity, User
from cqrs_sso_middleware.core.security.cookies import CookieNames
from cqrs_sso_middleware.core.security.headers import IdentityHeaders
from cqrs_sso_middleware.proxy.headers import (
    URL_REWRITING_HEADERS,
    TrustedProxies,
    UpstreamHeaders,
    downstream_headers,
    rewrite_location,
)

USER = User(Identity(email="gp.user@nhs.net", subject="s", issuer="i"), Account("CQRS-1"))
IDENTITY_NAMES = frozenset(
    {b"x-forwarded-user", b"x-forwarded-email", b"x-cqrs-account", b"x-custom-identity"}
)
UPSTREAM_HEADERS = UpstreamHeaders(
    b"legacy.internal:9000", IDENTITY_NAMES, CookieNames("cqrs_sso", secure=True).is_ours
)


def upstream(
    incoming: list[tuple[bytes, bytes]], trusted: bool = False, user: User | None = USER
) -> dict[bytes, bytes]:
    headers = UPSTREAM_HEADERS(
        incoming,
        client="192.0.2.10",
        scheme="https",
        trusted=trusted,
        identity=IdentityHeaders("X-Forwarded-User", "X-Forwarded-Email", "X-CQRS-Account").for_user(user),
    )
    names = [name for name, _ in headers]
    assert len(names) == len(set(names)), f"duplicated header names: {names}"
    return dict(headers)


@pytest.mark.parametrize(
    "incoming,absent",
    [
        pytest.param([(b"connection", b"keep-alive")], b"connection", id="connection"),
        pytest.param([(b"keep-alive", b"timeout=5")], b"keep-alive", id="keep-alive"),
        pytest.param([(b"te", b"trailers")], b"te", id="te"),
        pytest.param([(b"transfer-encoding", b"chunked")], b"transfer-encoding", id="transfer-encoding"),
        pytest.param([(b"upgrade", b"h2c")], b"upgrade", id="upgrade"),
        pytest.param(
            [(b"proxy-authorization", b"Basic x")], b"proxy-authorization", id="proxy-authorization"
        ),
        pytest.param([(b"proxy-connection", b"keep-alive")], b"proxy-connection", id="proxy-connection"),
        pytest.param([(b"connection", b"X-Hop"), (b"x-hop", b"1")], b"x-hop", id="named-by-connection"),
        pytest.param(
            [(b"x-custom-identity", b"attacker")], b"x-custom-identity", id="custom-identity-header"
        ),
        pytest.param(
            [(b"x_custom_identity", b"attacker")], b"x_custom_identity", id="underscore-identity-header"
        ),
    ],
)
def test_hop_by_hop_and_identity_headers_never_go_upstream(
    incoming: list[tuple[bytes, bytes]], absent: bytes
) -> None:
    assert absent not in upstream([(b"host", b"cqrs.example.nhs.uk"), *incoming])


def test_identity_headers_are_the_signed_in_users_only() -> None:
    sent = upstream([(b"x-forwarded-user", b"attacker@nhs.net")])
    assert sent[b"x-forwarded-user"] == b"gp.user@nhs.net"
    assert sent[b"x-cqrs-account"] == b"CQRS-1"
    anonymous = upstream([(b"x-forwarded-user", b"attacker@nhs.net")], user=None)
    assert b"x-forwarded-user" not in anonymous


@pytest.mark.parametrize(
    "name",
    [
        b"x-real-ip",
        b"true-client-ip",
        b"x-client-ip",
        b"cf-connecting-ip",
        b"x-cluster-client-ip",
        b"fastly-client-ip",
        b"x-originating-ip",
        b"client-ip",
        b"x_real_ip",
        b"True_Client_IP",
    ],
)
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted-client", "trusted-proxy"])
def test_client_address_headers_pass_only_from_trusted_proxies(name: bytes, trusted: bool) -> None:
    sent = upstream([(b"host", b"cqrs.example.nhs.uk"), (name, b"6.6.6.6")], trusted=trusted)
    spoofed = [k for k, v in sent.items() if v == b"6.6.6.6"]
    if trusted and b"_" not in name:
        assert spoofed, "a trusted proxy's client-address header is kept"
    else:  # an underscore spelling is nobody's honest header: never passed
        assert spoofed == [], f"client-sent {name!r} reached the upstream"
        assert sent[b"x-real-ip"] == b"192.0.2.10"  # the address the proxy saw


def test_x_real_ip_is_the_peer_when_nobody_sent_one() -> None:
    assert upstream([(b"host", b"h")], trusted=True)[b"x-real-ip"] == b"192.0.2.10"


@pytest.mark.parametrize(
    "cookie,expected",
    [
        pytest.param(b"__Host-cqrs_sso=s; theme=dark", b"theme=dark", id="session-removed"),
        pytest.param(
            b"__Host-cqrs_sso_csrf=c; a=1; __Host-cqrs_sso-attempt-xyz=v", b"a=1", id="csrf-and-attempt"
        ),
        pytest.param(b"__Host-cqrs_sso=s", None, id="only-ours-drops-the-header"),
        pytest.param(b"__Host-cqrs_sso_notice=idle; a=1", b"a=1", id="notice"),
        pytest.param(b"__Host-cqrs_sso_added_later=x; a=1", b"a=1", id="any-name-with-our-prefix"),
        pytest.param(b"cqrs_sso=s; __Secure-cqrs_sso=t; a=1", b"a=1", id="other-prefix-spellings"),
        pytest.param(b"xcqrs_sso=1; theme_cqrs_sso=2", b"xcqrs_sso=1; theme_cqrs_sso=2", id="others-kept"),
    ],
)
def test_our_cookies_are_removed(cookie: bytes, expected: bytes | None) -> None:
    assert upstream([(b"cookie", cookie)]).get(b"cookie") == expected


@pytest.mark.parametrize(
    "trusted,expected_for,expected_proto,expected_host",
    [
        pytest.param(False, b"192.0.2.10", b"https", b"cqrs.example.nhs.uk", id="untrusted-client"),
        pytest.param(True, b"203.0.113.5, 192.0.2.10", b"http", b"public.example", id="trusted-proxy"),
    ],
)
def test_forwarded_headers(
    trusted: bool, expected_for: bytes, expected_proto: bytes, expected_host: bytes
) -> None:
    sent = upstream(
        [
            (b"host", b"cqrs.example.nhs.uk"),
            (b"x-forwarded-for", b"203.0.113.5"),
            (b"x-forwarded-proto", b"http"),
            (b"x-forwarded-host", b"public.example"),
        ],
        trusted=trusted,
    )
    assert sent[b"x-forwarded-for"] == expected_for
    assert sent[b"x-forwarded-proto"] == expected_proto
    assert sent[b"x-forwarded-host"] == expected_host
    assert sent[b"host"] == b"legacy.internal:9000"


@pytest.mark.parametrize(
    "address,trusted",
    [
        ("10.1.2.3", True),
        ("10.255.0.1", True),
        ("11.0.0.1", False),
        ("::1", True),
        ("not-an-ip", False),
        (None, False),
    ],
)
def test_trusted_proxies_by_cidr(address: str | None, trusted: bool) -> None:
    assert TrustedProxies.parse(["10.0.0.0/8", "::1"]).trusts(address) is trusted


def test_default_trusts_nobody() -> None:
    assert not TrustedProxies.parse([]).trusts("127.0.0.1")


@pytest.mark.parametrize(
    "location,expected",
    [
        pytest.param(
            b"http://legacy.internal:9000/a?b=1", b"https://cqrs.example.nhs.uk/a?b=1", id="own-origin"
        ),
        pytest.param(
            b"HTTP://LEGACY.INTERNAL:9000/a", b"https://cqrs.example.nhs.uk/a", id="case-insensitive"
        ),
        pytest.param(b"/relative", b"/relative", id="relative-untouched"),
        pytest.param(b"https://other.example/x", b"https://other.example/x", id="other-origin-untouched"),
        pytest.param(
            b"http://legacy.internal:90001/x", b"http://legacy.internal:90001/x", id="port-prefix-trick"
        ),
    ],
)
def test_location_rewrite(location: bytes, expected: bytes) -> None:
    assert (
        rewrite_location(location, "http://legacy.internal:9000", "https://cqrs.example.nhs.uk") == expected
    )


def test_downstream_drops_hop_by_hop_and_connection_named_headers() -> None:
    headers = downstream_headers(
        [
            (b"Connection", b"X-Legacy-Hop"),
            (b"X-Legacy-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Type", b"text/html"),
            (b"Date", b"x"),
        ],
        "http://legacy.internal:9000",
        "https://cqrs.example.nhs.uk",
    )
    assert headers == [(b"content-type", b"text/html")]  # lower-cased, as ASGI wants


def test_end_to_end_headers_come_back_unchanged() -> None:
    kept = [(b"accept", b"*/*"), (b"authorization", b"Bearer x"), (b"cache-control", b"no-cache")]
    assert downstream_headers(kept, "http://legacy.internal:9000", "https://cqrs.example.nhs.uk") == kept


@pytest.mark.parametrize(
    "name", [b"X_Forwarded_For", b"x_forwarded_host", b"X_Forwarded_Proto", b"Forwarded"]
)
def test_forwarding_headers_in_another_spelling_never_pass_from_a_client(name: bytes) -> None:
    """WSGI servers map X_Forwarded_For and X-Forwarded-For to the same HTTP_X_FORWARDED_FOR."""
    sent = upstream([(b"host", b"cqrs.example.nhs.uk"), (name, b"6.6.6.6")])
    assert b"6.6.6.6" not in sent.values()
    assert sent[b"x-forwarded-for"] == b"192.0.2.10"


def test_headers_named_in_connection_are_dropped_wherever_they_stand() -> None:
    sent = upstream(
        [
            (b"x-legacy-hop", b"1"),
            (b"host", b"h"),
            (b"connection", b"X-Legacy-Hop, close"),
            (b"accept", b"*/*"),
        ]
    )
    assert b"x-legacy-hop" not in sent and sent[b"accept"] == b"*/*"
    assert sent[b"host"] == b"legacy.internal:9000"


REWRITE_SPELLINGS = [
    spelling
    for name in sorted(URL_REWRITING_HEADERS)
    for spelling in (name, name.upper(), name.replace(b"-", b"_"), name.title().replace(b"-", b"_"))
]


@pytest.mark.parametrize("name", REWRITE_SPELLINGS, ids=lambda n: n.decode())
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted-client", "trusted-proxy"])
def test_url_rewriting_headers_never_go_upstream(name: bytes, trusted: bool) -> None:
    """IIS URL Rewrite, old Symfony and Laminas route on X-Original-URL & co.: the access
    check judged the request path, so no copy of these may reach the upstream."""
    sent = upstream([(b"host", b"cqrs.example.nhs.uk"), (name, b"/admin")], trusted=trusted)
    assert b"/admin" not in sent.values()
    assert {k.lower().replace(b"_", b"-") for k in sent} & URL_REWRITING_HEADERS == set()


def test_the_listed_url_rewriting_headers_are_all_there() -> None:
    assert {
        b"x-original-url",
        b"x-rewrite-url",
        b"x-original-uri",
        b"x-forwarded-uri",
        b"x-forwarded-prefix",
        b"x-forwarded-path",
        b"x-forwarded-port",
        b"x-forwarded-server",
    } <= URL_REWRITING_HEADERS


def test_other_underscore_headers_pass() -> None:
    assert upstream([(b"api_key", b"k")])[b"api_key"] == b"k"


CLAIMS = ClaimHeaders(
    {"X-Forwarded-Oid": "oid", "X-Forwarded-Roles": "roles", "X-Forwarded-Org": "account.org"}
)
CLAIMED = IdentityHeaders("X-Forwarded-User", "X-Forwarded-Email", "X-CQRS-Account", CLAIMS)
CLAIMS_UPSTREAM = UpstreamHeaders(
    b"legacy.internal:9000", CLAIMED.raw_names, CookieNames("cqrs_sso", True).is_ours
)
APPROVER = User(
    Identity("a@nhs.net", "s", "i", "oid-7", "t", "A", {"oid": "oid-7", "roles": ["CQRS.Approver"]}),
    Account("CQRS-7", attributes={"org": "Y00001"}),
)


@pytest.mark.parametrize(
    "spoofed",
    [
        b"x-forwarded-oid",
        b"X-Forwarded-Oid",
        b"x_forwarded_oid",
        b"X_FORWARDED_ROLES",
        b"x-forwarded-roles",
        b"x-forwarded_org",
    ],
)
@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "anonymous"])
def test_claim_headers_come_only_from_the_session_in_every_spelling(spoofed: bytes, signed_in: bool) -> None:
    """A configured claim header is an identity header: a client's copy never reaches the
    upstream, whatever its spelling, and the value sent is the session's."""
    user = APPROVER if signed_in else None
    headers = CLAIMS_UPSTREAM(
        [(b"host", b"cqrs.example.nhs.uk"), (spoofed, b"attacker")],
        client="192.0.2.10",
        scheme="https",
        trusted=False,
        identity=CLAIMED.for_user(user),
    )
    assert b"attacker" not in [value for _, value in headers]
    sent = dict(headers)
    if signed_in:
        assert sent[b"x-forwarded-oid"] == b"oid-7"
        assert sent[b"x-forwarded-roles"] == b"CQRS.Approver"
        assert sent[b"x-forwarded-org"] == b"Y00001"
    else:
        assert not {b"x-forwarded-oid", b"x-forwarded-roles", b"x-forwarded-org"} & sent.keys()
