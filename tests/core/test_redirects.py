"""safe_return_path: the return-to value may only ever be a same-origin path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cqrs_sso_middleware.core.security.redirects import MAX_RETURN_PATH_LENGTH, safe_return_path

from ..helpers import lands_on_our_origin

ORIGIN = "https://cqrs.example.nhs.uk"
OWN_COPY = Path(__file__).parent.parent / "data" / "openredirects.txt"
SHARED_COPY = Path(__file__).parents[3] / "shared" / "testdata" / "openredirects.txt"


def payloads() -> list[str]:
    source = SHARED_COPY if SHARED_COPY.exists() else OWN_COPY
    return [line.rstrip("\n") for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/", id="root"),
        pytest.param("/messages", id="plain"),
        pytest.param("/messages?tab=inbox&page=2", id="query"),
        pytest.param("/a/b#section", id="fragment"),
        pytest.param("/@user", id="at-sign-in-path"),
    ],
)
def test_same_origin_paths_are_kept(path: str) -> None:
    assert safe_return_path(path, reserved_prefix="/oauth2") == path


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
        pytest.param("messages", id="relative"),
        pytest.param("//evil.example", id="scheme-relative"),
        pytest.param("/\\evil.example", id="backslash-twin"),
        pytest.param("\\\\evil.example", id="double-backslash"),
        pytest.param("https://evil.example/", id="absolute"),
        pytest.param("javascript:alert(1)", id="javascript-scheme"),
        pytest.param("/%2F%2Fevil.example", id="encoded-double-slash"),
        pytest.param("/%5Cevil.example", id="encoded-backslash"),
        pytest.param("/%252F%252Fevil.example", id="double-encoded"),
        pytest.param("/%25252F%25252Fevil.example", id="triple-encoded"),
        pytest.param("/\t/evil.example", id="tab"),
        pytest.param("/%09/evil.example", id="encoded-tab"),
        pytest.param("/ok\r\nSet-Cookie: x=1", id="crlf-injection"),
        pytest.param("/ok%0d%0aSet-Cookie:x=1", id="encoded-crlf"),
        pytest.param("/caf\u00e9", id="non-ascii"),
        pytest.param("/%ff%fe", id="invalid-utf8"),
        pytest.param('/"><script>', id="markup"),
        pytest.param("/reports/2024%2F25", id="encoded-slash-inside"),  # core.paths refuses %2F
        pytest.param("/public/../oauth2/start", id="own-endpoint-behind-dot-segments"),
        pytest.param("/oauth2/start", id="own-start-endpoint"),
        pytest.param("/oauth2/sign_out?x=1", id="own-sign-out"),
        pytest.param("/" + "a" * MAX_RETURN_PATH_LENGTH, id="too-long"),
    ],
)
def test_anything_else_is_refused(path: str | None) -> None:
    assert safe_return_path(path, reserved_prefix="/oauth2") is None


@pytest.mark.parametrize(
    ("path", "normalised"),
    [
        pytest.param("/a/./b/../c?x=/../y", "/a/c?x=/../y", id="dot-segments-query-untouched"),
        pytest.param("/%7Euser/%61", "/~user/a", id="unreserved-decoded"),
        pytest.param("/messages//inbox", "/messages/inbox", id="slashes-merged"),
    ],
)
def test_return_path_is_normalised_like_a_request_path(path: str, normalised: str) -> None:
    assert safe_return_path(path, reserved_prefix="/oauth2") == normalised


def test_every_shared_open_redirect_payload_is_refused_or_same_origin() -> None:
    cases = payloads()
    assert len(cases) >= 500
    kept = []
    for payload in cases:
        result = safe_return_path(payload, reserved_prefix="/oauth2")
        if result is not None:
            assert lands_on_our_origin(result), payload
            kept.append(result)
    # Almost every payload is an attack; the few kept are harmless same-origin paths.
    assert len(kept) < len(cases) // 10


def test_project_carries_its_own_copy_of_the_payloads() -> None:
    assert len(OWN_COPY.read_text(encoding="utf-8").splitlines()) == 559
