"""The path table through `cqrs-sso proxy` (a real process) and through nginx forward-auth,
each in front of an upstream that records the raw request target it received."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cqrs_sso_middleware.core.security.paths import PathRefused, normalise_path

from ..path_cases import PUBLIC_PATTERN, VARIANTS, served_from_public
from .conftest import ProxyProcess, RecordingUpstream, free_port, raw_get, start_nginx
from .test_nginx_forward_auth import example_site

pytestmark = pytest.mark.integration


def classify(raw: str, status: int, headers: dict[str, str], body: bytes) -> str:
    if status == 400:
        return "refused"
    if status in (302, 303) and "/oauth2/sign_in" in headers.get("location", ""):
        return "sign_in"
    if status == 200 and b"Welcome to the Calculating Quality Reporting Service" in body:
        return "sign_in"  # nginx: error_page 401 serves the sign-in page in place
    if status == 500 and b"nginx" in body:
        return "refused"  # nginx: the auth subrequest answered 400 for an ambiguous path
    assert status == 200, (raw, status, body[:200])
    return "public"


def test_every_path_variant_through_the_proxy(
    start_proxy: Callable[..., ProxyProcess], recorder: RecordingUpstream
) -> None:
    proxy = start_proxy(CQRS_SSO_UPSTREAM=recorder.url, CQRS_SSO_PUBLIC_PATHS=PUBLIC_PATTERN)
    outcomes: dict[str, str] = {}
    for case_id, raw in VARIANTS:
        before = len(recorder.targets)
        status, headers, body = raw_get(proxy.url, raw)
        outcome = outcomes[case_id] = classify(raw, status, headers, body)
        received = recorder.targets[before:]
        if outcome != "public":
            assert received == [], f"{case_id}: reached the upstream without a session: {received}"
            continue
        # The upstream got exactly the normalised path that was checked, byte for byte.
        checked = normalise_path(raw)
        assert not isinstance(checked, PathRefused)
        assert received == [checked.encode("ascii")], (case_id, received, checked)
        assert served_from_public(checked), (case_id, checked)
    assert set(outcomes.values()) == {"refused", "sign_in", "public"}, outcomes
    refused_by_core = {case_id for case_id, raw in VARIANTS if isinstance(normalise_path(raw), PathRefused)}
    assert {k for k, v in outcomes.items() if v == "refused"} >= refused_by_core - {"raw-backslash"}


def test_query_string_reaches_the_upstream_untouched(
    start_proxy: Callable[..., ProxyProcess], recorder: RecordingUpstream
) -> None:
    proxy = start_proxy(CQRS_SSO_UPSTREAM=recorder.url, CQRS_SSO_PUBLIC_PATHS=PUBLIC_PATTERN)
    status, _, _ = raw_get(proxy.url, "/public/x/../a.css?q=/../%2f&b=%41")
    assert status == 200
    assert recorder.targets[-1] == b"/public/a.css?q=/../%2f&b=%41"


@pytest.fixture
def nginx_in_front_of_recorder(
    start_proxy: Callable[..., ProxyProcess], recorder: RecordingUpstream, tmp_path: Path
) -> Iterator[str]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    sso = start_proxy(
        CQRS_SSO_UPSTREAM="",
        CQRS_SSO_BASE_URL=origin,
        CQRS_SSO_PUBLIC_PATHS=PUBLIC_PATTERN,
        redirect_origin=origin,
    )
    process = start_nginx(tmp_path / "nginx", port, example_site(port, sso.url, recorder.url))
    yield origin
    process.terminate()
    process.wait(timeout=10)


def test_every_path_variant_through_nginx_forward_auth(
    nginx_in_front_of_recorder: str, recorder: RecordingUpstream
) -> None:
    outcomes: dict[str, str] = {}
    for case_id, raw in VARIANTS:
        before = len(recorder.targets)
        status, headers, body = raw_get(nginx_in_front_of_recorder, raw)
        outcome = outcomes[case_id] = classify(raw, status, headers, body)
        received = recorder.targets[before:]
        if outcome != "public":
            assert received == [], f"{case_id}: reached the upstream without a session: {received}"
            continue
        # nginx passes $request_uri on, and X-Original-URI ($request_uri) is what was checked.
        assert received == [raw.encode("latin-1")], (case_id, received)
        assert served_from_public(raw), (case_id, raw)
    assert "public" in outcomes.values() and "sign_in" in outcomes.values(), outcomes
