"""The path table through both drivers, called with the raw request a server would hand
them (test clients normalise dot segments themselves, so they cannot send these)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import anyio
import pytest

from cqrs_sso_middleware import ASGISSOMiddleware, Settings, SSOMiddleware
from cqrs_sso_middleware.core.security.paths import PathRefused, normalise_path

from ..path_cases import PUBLIC_PATTERN, VARIANTS, served_from_public

CASES = [pytest.param(raw, id=case_id) for case_id, raw in VARIANTS]


def recording_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    seen = {"path_info": environ["PATH_INFO"], "raw_uri": environ.get("RAW_URI")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


async def recording_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    seen = {"path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1")}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


def call_wsgi(
    settings: Settings, raw: str, with_raw_uri: bool, script_name: str = ""
) -> tuple[int, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": script_name,
        # PEP 3333: the server decodes the path and hands it on as latin-1 "bytes as str".
        "PATH_INFO": unquote_to_bytes(raw).decode("latin-1"),
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "HTTP_ACCEPT": "text/html",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    if with_raw_uri:
        environ["RAW_URI"] = script_name + raw  # gunicorn's name for the request target as sent
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = {name.lower(): value for name, value in headers}

    middleware = SSOMiddleware(recording_wsgi, settings)
    try:
        body = b"".join(middleware(environ, start_response))
    finally:
        middleware.close()
    return answer["status"], answer["headers"], body


def call_asgi(settings: Settings, raw: str) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw, errors="replace"),
        "raw_path": raw.encode("latin-1"),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"accept", b"text/html")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        middleware = ASGISSOMiddleware(recording_asgi, settings)
        await middleware(scope, receive, send)
        await middleware.aclose()

    anyio.run(run)
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def check_outcome(raw: str, status: int, headers: dict[str, str], app_path: str | None) -> str:
    """Refused, sent to sign-in, or the app was given a path served from the public prefix."""
    if status == 400:
        return "refused"
    if status == 303:
        assert headers["location"].startswith("/oauth2/sign_in?rd="), headers
        return "sign_in"
    assert status == 200, status
    assert app_path is not None
    assert served_from_public(app_path), f"{raw!r} reached the app as {app_path!r}"
    return "public"


@pytest.fixture
def public_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(public_paths=(PUBLIC_PATTERN,))


def expected_outcome(raw: str) -> str:
    normal = normalise_path(raw)
    if isinstance(normal, PathRefused):
        return "refused"
    # A ";" path parameter never counts as public (Tomcat and Spring serve "/a;.css" as "/a").
    public = normal.startswith("/public/") and ";" not in normal and "%3B" not in normal
    return "public" if public else "sign_in"


@pytest.mark.parametrize("raw", CASES)
def test_wsgi_with_the_raw_uri_decides_like_the_core(public_settings: Settings, raw: str) -> None:
    status, headers, body = call_wsgi(public_settings, raw, with_raw_uri=True)
    seen = json.loads(body) if status == 200 else {}
    outcome = check_outcome(raw, status, headers, seen.get("raw_uri"))
    assert outcome == expected_outcome(raw)
    if outcome == "public":
        # The app is handed exactly the path that was checked, decoded and raw.
        assert seen["raw_uri"] == normalise_path(raw)
        assert seen["path_info"] == unquote_to_bytes(seen["raw_uri"]).decode("latin-1")


@pytest.mark.parametrize("raw", CASES)
def test_wsgi_with_only_the_decoded_path_never_opens_a_protected_page(
    public_settings: Settings, raw: str
) -> None:
    status, headers, body = call_wsgi(public_settings, raw, with_raw_uri=False)
    seen = json.loads(body) if status == 200 else {}
    path_info = seen.get("path_info")
    check_outcome(raw, status, headers, path_info.encode("latin-1").decode() if path_info else None)


@pytest.mark.parametrize("raw", CASES)
def test_asgi_decides_like_the_core(public_settings: Settings, raw: str) -> None:
    status, headers, body = call_asgi(public_settings, raw)
    seen = json.loads(body) if status == 200 else {}
    outcome = check_outcome(raw, status, headers, seen.get("raw_path"))
    assert outcome == expected_outcome(raw)
    if outcome == "public":
        assert seen["raw_path"] == normalise_path(raw)
        assert seen["path"] == unquote(seen["raw_path"])


def test_refused_path_gets_the_400_page_with_the_help_desk(public_settings: Settings) -> None:
    status, headers, body = call_wsgi(public_settings, "/public/..%2fsecret", with_raw_uri=True)
    assert status == 400
    assert headers["cache-control"] == "no-store"
    assert b"This address is not valid" in body
    assert b"support@cqrs.co.uk" in body


@pytest.mark.parametrize("with_raw_uri", [True, False], ids=["raw-uri", "decoded-only"])
def test_a_path_normalised_out_of_the_mount_point_is_refused(
    public_settings: Settings, with_raw_uri: bool
) -> None:
    status, _, _ = call_wsgi(public_settings, "/../other", with_raw_uri, script_name="/app")
    assert status == 400
    status, _, _ = call_wsgi(public_settings, "/public/x/../y", with_raw_uri, script_name="/app")
    assert status == 303  # /app/public/y is not public: patterns match the whole path


def test_a_mounted_app_is_given_its_path_info_without_the_mount(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(public_paths=("/app/public/**",))
    status, _, body = call_wsgi(settings, "/public/x/../y", True, script_name="/app")
    assert status == 200
    assert json.loads(body) == {"path_info": "/public/y", "raw_uri": "/app/public/y"}
