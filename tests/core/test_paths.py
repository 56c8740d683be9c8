"""core.paths: one normalised reading of every request path, or a refusal."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_sso_middleware.core.security.paths import (
    PathRefused,
    compile_path_pattern,
    normalise_path,
    normalise_target,
    too_broad,
)

from ..path_cases import PUBLIC_PATTERN, VARIANTS, served_from_public

is_public = compile_path_pattern(PUBLIC_PATTERN)

EXPECTED: dict[str, str | None] = {
    # None: refused. Otherwise the normalised path.
    "dot-dot": "/secret",
    "encoded-dots": "/secret",
    "encoded-dots-upper": "/secret",
    "half-encoded-dots-1": "/secret",
    "half-encoded-dots-2": "/secret",
    "encoded-slash-after-dots": None,
    "encoded-slash-everywhere": None,
    "encoded-backslash": None,
    "raw-backslash": None,
    "nul-then-climb": None,
    "encoded-dot-slash-chain": None,
    "double-encoded-dots": None,
    "double-encoded-slash": None,
    "tomcat-path-parameter": None,
    "tomcat-path-parameter-value": None,
    "parameter-on-public": "/secret",
    "double-slash-then-dots": "/secret",
    "leading-double-slash": "/secret",
    "dot-then-dots": "/secret",
    "three-dots": None,
    "dots-and-space": None,
    "dots-and-tab": None,
    "fullwidth-full-stops": None,
    "two-dot-leader": None,
    "fullwidth-solidus": None,
    "fullwidth-reverse-solidus": None,
    "overlong-dots-2-byte": None,
    "overlong-dots-3-byte": None,
    "overlong-slash": None,
    "invalid-utf8": None,
    "dots-nul": None,
    "crlf": None,
    "climb-above-root": None,
    "climb-far": None,
    "trailing-dots": "/",
    "mixed-case-prefix": "/secret",
    "encoded-slash-chain": None,
    "iis-unicode-escape": None,
    "nested-escape": None,
    "dot-nul-dot": None,
    "encoded-dot-then-climb": None,
    "dot-segment-plus-encoded-dot": None,
    "encoded-question-mark": "/secret",
    "del-character": None,
    "ideographic-full-stops": "/public/%E3%80%82%E3%80%82/secret",
    "trailing-dot-segment-name": None,  # Windows would serve it as /public/secret/x
    "semicolon-in-public": "/public/a;b",
    "plain-public": "/public/app.css",
    "public-nested": "/public/css/site.css",
    "unreserved-escape": "/public/~user",
    "dots-staying-public": "/public/y",
    "plain-secret": "/secret",
}


def test_the_table_has_at_least_forty_variants_and_every_one_has_an_expectation() -> None:
    assert len(VARIANTS) >= 40
    assert {case_id for case_id, _ in VARIANTS} == set(EXPECTED)


@pytest.mark.parametrize(("raw"), [pytest.param(raw, id=case_id) for case_id, raw in VARIANTS])
def test_path_variant_is_normalised_or_refused(raw: str, request: pytest.FixtureRequest) -> None:
    case_id = request.node.callspec.id
    result = normalise_path(raw)
    expected = EXPECTED[case_id]
    if expected is None:
        assert isinstance(result, PathRefused), f"{raw!r} -> {result!r}"
    else:
        assert result == expected
        assert normalise_path(result) == result  # idempotent: the upstream reads it the same
        if is_public(result):
            assert served_from_public(result), f"{raw!r} looks public but a server serves {result!r}"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("/", "/", id="root"),
        pytest.param("/messages", "/messages", id="plain"),
        pytest.param("/a/b/", "/a/b/", id="trailing-slash-kept"),
        pytest.param("/a/b/.", "/a/b/", id="trailing-dot-becomes-slash"),
        pytest.param("/caf%c3%a9", "/caf%C3%A9", id="escape-hex-upper-case"),
        pytest.param(b"/caf\xc3\xa9", "/caf%C3%A9", id="raw-utf8-encoded"),
        pytest.param("/a%20b", "/a%20b", id="space-stays-encoded"),
        pytest.param("/.well-known/x", "/.well-known/x", id="dot-file-kept"),
        pytest.param("/a/%3B", "/a/%3B", id="reserved-escape-kept"),
    ],
)
def test_normal_form(raw: str | bytes, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("secret", id="relative"),
        pytest.param("/" + "a" * 9000, id="too-long"),
        pytest.param("/a%2", id="truncated-escape"),
    ],
)
def test_unusable_paths_are_refused(raw: str) -> None:
    assert isinstance(normalise_path(raw), PathRefused)


def test_target_query_and_fragment_are_untouched() -> None:
    assert normalise_target("/a/../b?x=/../%2f#/../y") == "/b?x=/../%2f#/../y"
    assert isinstance(normalise_target("/a/..%2fb?x=1"), PathRefused)


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        pytest.param("/static/*", "/static/app.css", True, id="star-one-segment"),
        pytest.param("/static/*", "/static/css/app.css", False, id="star-never-crosses-slash"),
        pytest.param("/static/**", "/static/css/app.css", True, id="double-star-crosses"),
        pytest.param("/static/*.css", "/static/app.css", True, id="star-with-suffix"),
        pytest.param("/static/*.css", "/static/app.css/x", False, id="anchored-at-the-end"),
        pytest.param("/static/*", "/x/static/a", False, id="anchored-at-the-start"),
        pytest.param("/healthz", "/healthz/", False, id="exact"),
        pytest.param("/file?.txt", "/file1.txt", True, id="question-mark-one-character"),
        pytest.param("/file?.txt", "/file/.txt", False, id="question-mark-not-slash"),
        pytest.param("/a.b", "/aXb", False, id="dot-is-literal"),
        pytest.param("re:/status(z|check)", "/statusz", True, id="regex-fullmatch"),
        pytest.param("re:/status", "/status/x", False, id="regex-is-anchored"),
    ],
)
def test_public_path_patterns(pattern: str, path: str, matches: bool) -> None:
    assert compile_path_pattern(pattern)(path) is matches


@pytest.mark.parametrize(
    ("pattern", "broad"),
    [("/**", True), ("/*", True), ("**", True), ("re:.*", True), ("/static/**", False), ("/healthz", False)],
)
def test_too_broad_patterns_are_recognised(pattern: str, broad: bool) -> None:
    assert too_broad(pattern) is broad


_SEGMENTS = st.sampled_from(
    [
        "..", ".", "%2e%2e", "%2E.", "...", "..;", "..;x", ".. ", "..%20", "..%09", "%252e%252e",
        "%c0%ae%c0%ae", "%EF%BC%8E%EF%BC%8E", "%E2%80%A5", "x", "secret", "PUBLIC", "public", "a.b",
        "~", "%7e", "%00", "%", "",
    ]
)  # fmt: skip
_SEPARATORS = st.sampled_from(["/", "/", "/", "//", "%2f", "%2F", "%5c", "\\", "%EF%BC%8F", "%252f", ";/"])
_PREFIXES = st.sampled_from(["/public/", "/public", "//public/", "/", "/PUBLIC/"])
_PATHS = st.builds(
    lambda prefix, pairs: prefix + "".join(segment + separator for segment, separator in pairs),
    _PREFIXES,
    st.lists(st.tuples(_SEGMENTS, _SEPARATORS), min_size=1, max_size=6),
)


@settings(max_examples=2000, deadline=None)
@given(_PATHS)
def test_anything_let_through_as_public_is_served_from_the_public_prefix(raw: str) -> None:
    """Property: if the rule lets a path through as public, the normalised path the app or
    upstream receives is under the public prefix for every lenient server reading, and
    normalising it again changes nothing."""
    result = normalise_path(raw)
    if isinstance(result, PathRefused):
        return
    assert normalise_path(result) == result
    if is_public(result):
        assert result.startswith("/public/")
        assert served_from_public(result), (raw, result)
