"""What a request through a proxy in front can carry, and how each part is believed: the
original URI (one header), numbers, identity values as headers, path spellings, role names
in a query, claim header names. Core only: the router and the shipped interpreter, no socket
(the real nginx and Caddy runs are in tests/proxy)."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

import pytest

from cqrs_sso_middleware import Account, Runtime, Settings
from cqrs_sso_middleware.core.claim_headers import ClaimHeaders
from cqrs_sso_middleware.core.errors import ConfigError
from cqrs_sso_middleware.core.protocol import LookupReturned, PassThrough, Respond
from cqrs_sso_middleware.core.security.header_values import decode_header_value, header_value
from cqrs_sso_middleware.core.security.original_uri import AmbiguousOriginalUri, OriginalUri
from cqrs_sso_middleware.core.security.paths import PathRefused, normalise_path, path_readings
from cqrs_sso_middleware.core.security.request_numbers import auth_age, whole_number

from .test_flow import BASE, CLIENT_ID, ISSUER, Browser, Clock, Headers, ScriptedProvider

RULES = (
    {"paths": ["/admin/**", "/admin"], "roles": ["CQRS.Admin"]},
    {"paths": ["/declarations/**"], "max_auth_age_seconds": 900},
)


def respond(reply: PassThrough | Respond) -> Respond:
    assert isinstance(reply, Respond), reply
    return reply


# -- the original URI: one header believed ----------------------------------------------------


@pytest.mark.parametrize(
    "believed,headers,expected",
    [
        ("X-Original-URI", {"x-original-uri": "/a"}, "/a"),
        ("X-Original-URI", {}, None),
        # Caddy and Traefik pass the client's copy of the other header through.
        ("X-Original-URI", {"x-original-uri": "/public/x", "x-forwarded-uri": "/admin/x"}, "ambiguous"),
        # A front proxy that sets the other header than the one configured: never guessed.
        ("X-Original-URI", {"x-forwarded-uri": "/admin/x"}, "ambiguous"),
        ("X-Original-URI", {"x-original-uri": "/a", "x-forwarded-uri": "/a"}, "/a"),
        ("X-Forwarded-Uri", {"x-forwarded-uri": "/admin/x"}, "/admin/x"),
        ("X-Forwarded-Uri", {"x-forwarded-uri": "/admin/x", "x-original-uri": "/messages"}, "ambiguous"),
    ],
    ids=["set", "absent", "two-differ", "only-the-other", "two-agree", "caddy", "caddy-spoofed"],
)
def test_the_original_uri_is_believed_from_one_header_only(
    believed: str, headers: dict[str, str], expected: str | None
) -> None:
    found = OriginalUri(believed).raw(Headers(headers))
    if expected == "ambiguous":
        assert found == AmbiguousOriginalUri(believed.lower())
    else:
        assert found == expected


def signed_in(make_flow: Callable[..., Runtime], provider: ScriptedProvider, **settings: object) -> Browser:
    browser = Browser(make_flow(access_rules=list(RULES), public_paths=("/public/**",), **settings), provider)
    assert browser.sign_in().status == 303
    return browser


@pytest.mark.parametrize("uri_header", ["X-Original-URI", "X-Forwarded-Uri"])
def test_forward_auth_refuses_a_request_naming_two_original_uris(
    make_flow: Callable[..., Runtime],
    provider: ScriptedProvider,
    caplog: pytest.LogCaptureFixture,
    uri_header: str,
) -> None:
    browser = signed_in(make_flow, provider, forward_auth_uri_header=uri_header)
    other = "X-Forwarded-Uri" if uri_header == "X-Original-URI" else "X-Original-URI"
    # The spoofs of the review: a public path to skip the session, and an open path to skip
    # the role rule, each in the header the front proxy passes through.
    for real, spoof in (("/admin/x", "/public/x"), ("/admin/x", "/messages")):
        reply = respond(browser.request("GET", "/oauth2/auth", {uri_header: real, other: spoof}))
        assert reply.status == 400 and json.loads(reply.body) == {"error": "ambiguous_original_uri"}
    assert '"event": "ambiguous_original_uri"' in caplog.text
    # The configured header alone is judged as it should be: no role, 403.
    assert respond(browser.request("GET", "/oauth2/auth", {uri_header: "/admin/x"})).status == 403
    assert respond(browser.request("GET", "/oauth2/auth", {uri_header: "/messages"})).status == 202


def test_the_sign_in_page_ignores_an_ambiguous_original_uri(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(), provider)
    page = respond(
        browser.request("GET", "/oauth2/sign_in", {"x-original-uri": "/a", "x-forwarded-uri": "/b"})
    )
    assert page.status == 200 and 'name="rd" value="/"' in page.body.decode()


# -- numbers from a request --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("900", 900),
        ("60", 60),
        ("59", None),
        ("0", None),
        ("²", None),  # str.isdigit() says yes
        ("٣٠٠", None),  # int() reads Arabic-Indic digits
        ("9" * 5000, None),  # int() refuses more than 4,300 digits with a ValueError
        ("1e3", None),
        (" 900", None),
        ("+900", None),
        ("", None),
        ("10000001", None),
    ],
)
def test_a_max_auth_age_from_a_request_is_ascii_digits_within_bounds(text: str, expected: int | None) -> None:
    assert auth_age(text) == expected


def test_whole_number_takes_nine_ascii_digits_at_most() -> None:
    assert whole_number("123456789") == 123456789
    assert whole_number("1234567890") is None
    assert whole_number("12", 0, 10) is None


@pytest.mark.parametrize("value", ["%C2%B2", "9" * 5000, "0", "59", "abc", "%D9%A3%D9%A0%D9%A0"])
@pytest.mark.parametrize("where", ["/oauth2/auth?max_auth_age=", "/oauth2/sign_in?max_auth_age="])
def test_an_unreadable_max_auth_age_is_400_never_500(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, value: str, where: str
) -> None:
    browser = signed_in(make_flow, provider)
    reply = respond(browser.request("GET", where + value, {"x-original-uri": "/payments/1"}))
    assert reply.status == 400


def test_a_max_auth_age_form_field_that_is_not_a_number_is_400(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(), provider)
    page = respond(browser.request("GET", "/oauth2/sign_in"))
    token = page.body.decode().split('name="csrf_token" value="')[1].split('"')[0]
    provider.form = {"csrf_token": token, "rd": "/", "max_auth_age": "²"}
    assert respond(browser.request("POST", "/oauth2/start", {"origin": BASE})).status == 400


# -- the step-up a proxy in front did not pass on ----------------------------------------------


def test_a_signed_in_person_sent_back_by_the_proxy_in_front_is_asked_to_sign_in_again(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider, clock: Clock
) -> None:
    """nginx's `error_page 401 = /oauth2/sign_in` without the location's max_auth_age: the
    original URI names the page forward-auth refused. Going back there would loop."""
    provider.claims = {"auth_time": int(clock())}
    browser = signed_in(make_flow, provider)
    check = "/oauth2/auth?max_auth_age=900"
    assert respond(browser.request("GET", check, {"x-original-uri": "/payments/1"})).status == 202
    clock.offset += 1000  # the sign-in is too old for the location's own rule now
    assert respond(browser.request("GET", check, {"x-original-uri": "/payments/1"})).status == 401
    page = respond(browser.request("GET", "/oauth2/sign_in", {"x-original-uri": "/payments/1"}))
    assert page.status == 401 and b"Sign in again to continue" in page.body  # not a 303 to /payments/1
    # The page asked for itself (the original URI is the sign-in page's own) just goes on.
    direct = respond(
        browser.request("GET", "/oauth2/sign_in?rd=/payments/1", {"x-original-uri": "/oauth2/sign_in"})
    )
    assert direct.status == 303


# -- identity values as headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,sent",
    [
        ("gp.user@nhs.net", "gp.user@nhs.net"),
        ("Aoife O'Neill", "Aoife O'Neill"),  # printable ASCII: as it is, apostrophe included
        ("Łukasz Żółć", "UTF-8''%C5%81ukasz%20%C5%BB%C3%B3%C5%82%C4%87"),
        ("Siân Llŷr", "UTF-8''Si%C3%A2n%20Ll%C5%B7r"),
        ("Siobhán O'Brien", "UTF-8''Siobh%C3%A1n%20O%27Brien"),
        ("UTF-8''Hacker", "UTF-8''UTF-8%27%27Hacker"),  # looks encoded: encoded, so it reads back
        ("100%", "100%"),
    ],
)
def test_identity_values_are_printable_ascii_or_rfc_8187_ext_values(text: str, sent: str) -> None:
    assert header_value(text) == sent
    assert sent.isascii() and sent.isprintable()
    assert decode_header_value(sent) == text


def test_forward_auth_sends_a_non_latin_1_name_it_could_not_send_before(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    provider.claims = {"name": "Łukasz Żółć", "preferred_username": "lukasz.zolc@nhs.net"}
    browser = Browser(make_flow(claim_headers={"X-Forwarded-Name": "name"}), provider)
    browser.sign_in()
    allowed = respond(browser.request("GET", "/oauth2/auth", {"x-original-uri": "/messages"}))
    headers = dict(allowed.headers)
    assert allowed.status == 202
    for name, value in allowed.headers:
        value.encode("latin-1")  # what every server writes; "Ł" was a UnicodeEncodeError (500)
        assert value.isascii(), (name, value)
    assert decode_header_value(headers["X-Auth-Request-Preferred-Username"]) == "Łukasz Żółć"
    assert decode_header_value(headers["X-Forwarded-Name"]) == "Łukasz Żółć"


# -- path spellings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/admin./x", "trailing_dot_or_space"),
        ("/admin%20/x", "trailing_dot_or_space"),
        ("/admin.%20/x", "trailing_dot_or_space"),
        ("/admin.;x/y", "trailing_dot_or_space"),
        ("/admin%E3%80%80/x", "trailing_dot_or_space"),  # an ideographic space: " " after NFKC
        ("/admin/x.", "trailing_dot_or_space"),
    ],
)
def test_a_segment_ending_in_a_dot_or_a_space_is_refused(path: str, reason: str) -> None:
    assert normalise_path(path) == PathRefused(reason)


@pytest.mark.parametrize("path", ["/v1.2/report", "/files/report.csv", "/.well-known/x", "/a/b.c/d"])
def test_dots_inside_a_segment_are_ordinary(path: str) -> None:
    assert normalise_path(path) == path


def test_rules_and_public_paths_read_a_path_the_same_way() -> None:
    assert path_readings("/admin/x") == ("/admin/x",)
    assert path_readings("/admin;v=1/x") == ("/admin;v=1/x", "/admin/x")
    assert path_readings("/admin%3Bx/y") == ("/admin%3Bx/y", "/admin/y")


@pytest.mark.parametrize(
    "path,case_insensitive,status",
    [
        ("/admin/x", False, 403),
        ("/admin%3Bx/y", False, 403),  # %3B read as a parameter by rules too, as by public paths
        ("/ADMIN/x", True, 403),
        ("/Admin", True, 403),
        ("/ADMIN/x", False, None),  # a case-sensitive upstream serves another page for it
        ("/admin./x", False, 400),
        ("/admin%20/x", False, 400),
    ],
)
def test_no_spelling_steps_around_a_rule(
    make_flow: Callable[..., Runtime],
    provider: ScriptedProvider,
    path: str,
    case_insensitive: bool,
    status: int | None,
) -> None:
    browser = signed_in(make_flow, provider, case_insensitive_paths=case_insensitive)
    reply = browser.request("GET", path)
    if status is None:
        assert isinstance(reply, PassThrough)
    else:
        assert respond(reply).status == status
    through_auth = respond(browser.request("GET", "/oauth2/auth", {"x-original-uri": path}))
    assert through_auth.status == (status or 202)


def test_case_insensitive_public_paths_open_any_spelling(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(make_flow(public_paths=("/public/**",), case_insensitive_paths=True), provider)
    assert isinstance(browser.request("GET", "/PUBLIC/site.css"), PassThrough)
    assert not isinstance(browser.request("GET", "/public;x/site.css"), PassThrough)


# -- role names in a query -----------------------------------------------------------------------


def test_the_403_page_names_only_roles_the_deployment_knows(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    browser = Browser(
        make_flow(access_rules=list(RULES), role_labels={"CQRS.Approver": "approver"}), provider
    )
    browser.sign_in()
    injected = "Call 0800 000 000 and read out your password"
    page = respond(browser.request("GET", "/oauth2/forbidden?roles=" + quote(f"{injected},CQRS.Approver")))
    body = page.body.decode()
    assert page.status == 403
    assert "approver role" in body  # known (role_labels), in the site's words
    assert "0800 000 000" not in body and "password" not in body  # neither page nor email
    plain = respond(browser.request("GET", "/oauth2/forbidden?roles=" + quote(injected)))
    assert "0800 000 000" not in plain.body.decode()
    ruled = respond(browser.request("GET", "/oauth2/forbidden", {"x-original-uri": "/admin/x"}))
    assert "CQRS.Admin role" in ruled.body.decode()  # a rule names it


# -- claim header names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "Cookie",
        "Connection",
        "Authorization",
        "X-Forwarded-For",
        "traceparent",
        "X-Original-URI",
        "Sec-Fetch-Site",
        "Proxy-Authorization",
        "content-length",
    ],
)
def test_a_claim_can_never_be_sent_under_a_framing_routing_or_credential_header(name: str) -> None:
    assert ClaimHeaders.problems({name: "oid"}) != []
    with pytest.raises(ConfigError, match="cannot carry a claim"):
        Settings(
            issuer=ISSUER,
            client_id=CLIENT_ID,
            client_secret="s",
            secret_keys=("k" * 40,),
            base_url=BASE,
            account_lookup=lambda identity: Account("A", identity.email),
            claim_headers={name: "oid"},
        )
    assert ClaimHeaders.problems({"X-Forwarded-Oid": "oid"}) == []


def test_a_missing_claim_is_sent_as_an_empty_value_not_left_out(
    make_flow: Callable[..., Runtime], provider: ScriptedProvider
) -> None:
    """Caddy's copy_headers (2.6) sends its literal placeholder upstream for a header the
    forward-auth answer lacks: every configured claim header is in every 202."""
    browser = Browser(make_flow(claim_headers={"X-Forwarded-Org": "companyName"}), provider)
    provider.lookup = lambda identity: LookupReturned(Account("A-1", identity.email))
    browser.sign_in()
    allowed = respond(browser.request("GET", "/oauth2/auth", {"x-original-uri": "/messages"}))
    assert ("X-Forwarded-Org", "") in allowed.headers
