"""Cookie header parsing, Set-Cookie flags, and the CSRF token rules."""

from __future__ import annotations

import secrets

import pytest

from cqrs_sso_middleware.core.security.cookies import CookiePolicy, cookie_values, parse_cookie_header
from cqrs_sso_middleware.core.security.csrf import (
    cross_origin,
    csrf_token,
    csrf_token_valid,
    new_csrf_cookie_value,
)


@pytest.mark.parametrize(
    "header,expected",
    [
        pytest.param("s=1", ["1"], id="only"),
        pytest.param("a=1; s=2; b=3", ["2"], id="middle"),
        pytest.param("a=1;s=2", ["2"], id="no-space"),
        pytest.param('s="quoted"', ["quoted"], id="quoted"),
        pytest.param("xs=1; s_x=2", [], id="longer-names-do-not-match"),
        pytest.param("a=s=3", [], id="inside-another-value"),
        pytest.param("s=1; s=2", ["1", "2"], id="duplicated-names-kept-in-order"),
        pytest.param("", [], id="empty"),
        pytest.param(None, [], id="absent"),
        pytest.param("s=" + "x" * 20000, [], id="absurdly-long-header"),
    ],
)
def test_cookie_values_reads_one_cookie_at_pair_boundaries(header: str | None, expected: list[str]) -> None:
    assert cookie_values(header, "s") == expected


def test_fast_path_agrees_with_the_full_parser() -> None:
    header = "a=1; __Host-s=v1; b=2; __Host-s=v2; c"
    assert cookie_values(header, "__Host-s") == parse_cookie_header(header)["__Host-s"]


def test_set_cookie_flags_on_https_and_http() -> None:
    secure = CookiePolicy(secure=True)
    assert secure.name("cqrs_sso") == "__Host-cqrs_sso"
    header = secure.set_cookie("__Host-cqrs_sso", "v", 60)
    assert header == "__Host-cqrs_sso=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60"
    plain = CookiePolicy(secure=False)
    assert plain.name("cqrs_sso") == "cqrs_sso"
    assert "Secure" not in plain.set_cookie("cqrs_sso", "v")
    assert "Max-Age=0" in plain.delete_cookie("cqrs_sso")


KEYS = (secrets.token_urlsafe(32), secrets.token_urlsafe(32))


def test_csrf_token_is_bound_to_the_cookie_value() -> None:
    cookie = new_csrf_cookie_value()
    token = csrf_token(KEYS, cookie)
    assert csrf_token_valid(KEYS, cookie, token)
    assert not csrf_token_valid(KEYS, new_csrf_cookie_value(), token)
    assert not csrf_token_valid(KEYS, cookie, token[:-1] + "x")
    assert not csrf_token_valid(KEYS, cookie, None)
    assert not csrf_token_valid(KEYS, None, token)
    assert not csrf_token_valid(KEYS, cookie, cookie)  # double-submit of the raw value is not enough


def test_csrf_token_from_before_a_key_rotation_still_works() -> None:
    cookie = new_csrf_cookie_value()
    old_token = csrf_token(KEYS[1:], cookie)
    assert csrf_token_valid(KEYS, cookie, old_token)
    assert not csrf_token_valid(KEYS[:1], cookie, old_token)


@pytest.mark.parametrize(
    "headers,refused",
    [
        pytest.param({}, False, id="no-origin-headers"),
        pytest.param({"origin": "https://cqrs.example.nhs.uk"}, False, id="same-origin"),
        pytest.param({"origin": "https://evil.example"}, True, id="other-origin"),
        pytest.param({"origin": "null"}, True, id="null-origin"),
        pytest.param({"sec-fetch-site": "cross-site"}, True, id="cross-site-fetch"),
        pytest.param({"sec-fetch-site": "same-origin"}, False, id="same-origin-fetch"),
    ],
)
def test_cross_origin_posts_are_recognised(headers: dict[str, str], refused: bool) -> None:
    assert cross_origin(headers, "https://cqrs.example.nhs.uk") is refused  # type: ignore[arg-type]
