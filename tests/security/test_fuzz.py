"""Fuzzing: hypothesis properties of the parsers, and random requests at both drivers.

The request fuzzer's size and seed come from ``FUZZ_REQUESTS`` (default 10,000 per driver)
and ``FUZZ_SEED`` (default fixed, so ``make test`` is repeatable); ``make fuzz`` runs a long
one with a fresh seed. Every request must end below 500, raise nothing out of the driver,
and reach the app only on a public path or with the genuine session it carried.
"""

from __future__ import annotations

import asyncio
import os
import random
import string
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_sso_middleware import Account, ASGISSOMiddleware, Identity, Runtime, Settings, SSOMiddleware, User
from cqrs_sso_middleware.core.protocol import OUTCOME_TYPES, IncomingRequest, Respond
from cqrs_sso_middleware.core.security.cookies import cookie_values, parse_cookie_header
from cqrs_sso_middleware.core.security.paths import normalise_target
from cqrs_sso_middleware.core.security.redirects import safe_return_path
from cqrs_sso_middleware.core.sessions.attempts import AttemptCookies
from cqrs_sso_middleware.core.sessions.session import Deployment, Session, SessionCookieCodec

from ..helpers import lands_on_our_origin

FUZZ_REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "10000"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261124"))
KEYS = ("k" * 40,)
PUBLIC = ("/static/*",)

# -- properties of the parsers -----------------------------------------------------------------


@given(st.text(max_size=5000))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_session_cookie_decoding_never_raises_and_never_accepts_junk(value: str) -> None:
    assert SessionCookieCodec(KEYS, Deployment("https://i.example", "c")).decode(value) is None


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=300), st.text(max_size=40))
@settings(max_examples=400)
def test_attempt_cookie_decoding_never_raises_and_never_accepts_junk(value: str, state: str) -> None:
    assert AttemptCookies(KEYS, "c-attempt-").decode(state, value) is None


@given(st.text(max_size=3000))
@settings(max_examples=400)
def test_cookie_header_parsing_never_raises(header: str) -> None:
    parsed = parse_cookie_header(header)
    for name in list(parsed)[:3]:
        assert isinstance(cookie_values(header, name), list)


_TRICKY = st.sampled_from(
    ["/", "//", "\\", "%2f", "%5c", "%09", "%0d%0a", "@", ":", "http:", "evil.example", ".."]
)


@given(st.lists(st.one_of(_TRICKY, st.text(max_size=8)), max_size=12).map("".join))
@settings(max_examples=1500)
def test_return_path_validation_never_lets_a_path_leave_the_origin(candidate: str) -> None:
    result = safe_return_path(candidate, reserved_prefix="/oauth2")
    # Kept paths come back normalised (core.paths), and still on our origin.
    assert result is None or (result == normalise_target(candidate) and lands_on_our_origin(result))


class _Headers(dict[str, str]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


def _offline_runtime() -> Runtime:
    settings_ = Settings(
        issuer="https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        client_id="c",
        client_secret="s",
        secret_keys=KEYS,
        base_url="https://cqrs.example.nhs.uk",
        account_lookup=lambda identity: None,
    )
    return Runtime.from_settings(settings_)


_RUNTIME = _offline_runtime()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["state", "code", "error", "error_description", "session_state", "x"]),
            st.text(max_size=30),
        ),
        max_size=6,
    )
)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_callback_parsing_answers_every_query_with_a_page_never_a_fault(pairs: list[tuple[str, str]]) -> None:
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    decision = _RUNTIME.router.handle(
        IncomingRequest("GET", "/oauth2/callback", query, _Headers({"accept": "text/html"}))
    )
    if not isinstance(decision, OUTCOME_TYPES):
        with pytest.raises(StopIteration) as done:
            next(decision)  # no attempt cookie: decided without asking for any I/O
        decision = done.value.value
    decision = _RUNTIME.finish(decision)
    assert isinstance(decision, Respond)
    errors = [v for k, v in pairs if k == "error"]
    outage = len(errors) == 1 and errors[0] in ("server_error", "temporarily_unavailable")
    assert decision.status in ((503,) if outage else (400, 401))


# -- random requests at both drivers -------------------------------------------------------------

_METHODS = [
    "GET",
    "GET",
    "GET",
    "HEAD",
    "POST",
    "POST",
    "PUT",
    "DELETE",
    "OPTIONS",
    "PATCH",
    "PROPFIND",
    "G E T",
]
_PATHS = [
    "/",
    "/messages",
    "/api/data",
    "/static/app.css",
    "/static/../messages",
    "/oauth2",
    "/oauth2/",
    "/oauth2/sign_in",
    "/oauth2/start",
    "/oauth2/callback",
    "/oauth2/sign_out",
    "/oauth2/userinfo",
    "/oauth2/static/cqrs.css",
    "/oauth2/static/../../etc/passwd",
    "/oauth2/nope",
    "/healthz",
    "/readyz",
    "//evil.example",
    "/\u00e9\u00e8",
    "/%00",
    "/a%2fb",
    "/oauth2/callback/x",
]
_QUERY_KEYS = ["rd", "state", "code", "error", "error_description", "csrf_token", "x", "rd[]"]
_JUNK = [
    "",
    "%",
    "%%",
    "%zz",
    "%00",
    "%0d%0a",
    "//evil.example",
    "/\\evil",
    "javascript:alert(1)",
    "<script>",
    "'\"",
    "\u2603",
    "a" * 3000,
    "=",
    "&",
    ";",
    "\x00",
    "..",
]


def _junk(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_JUNK)
    return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40)))


def _request(
    rng: random.Random, valid_session: str
) -> tuple[str, str, str, list[tuple[str, str]], bytes, bool]:
    method = rng.choice(_METHODS)
    path = rng.choice(_PATHS) if rng.random() < 0.8 else "/" + _junk(rng)
    query = "&".join(
        f"{rng.choice(_QUERY_KEYS)}={quote(_junk(rng), safe=rng.choice(['', '/%&=']))}"
        for _ in range(rng.randint(0, 4))
    )
    headers: list[tuple[str, str]] = []
    for name, values in (
        ("Accept", ["text/html", "application/json", "*/*", _junk(rng)]),
        ("X-Requested-With", ["XMLHttpRequest", _junk(rng)]),
        ("Sec-Fetch-Mode", ["navigate", "cors", _junk(rng)]),
        ("Sec-Fetch-Site", ["cross-site", "same-origin"]),
        ("Origin", ["https://cqrs.example.nhs.uk", "https://evil.example", "null", _junk(rng)]),
        (
            "Content-Type",
            ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", _junk(rng)],
        ),
        ("X-Forwarded-User", ["attacker@nhs.net"]),
        ("X-Request-ID", ["abc-123", _junk(rng)]),
    ):
        if rng.random() < 0.3:
            headers.append((name, rng.choice(values)))
    carries_session = rng.random() < 0.15
    cookies = [f"__Host-cqrs_sso={valid_session}"] if carries_session else []
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(
            ["__Host-cqrs_sso", "__Host-cqrs_sso_csrf", "__Host-cqrs_sso-attempt-" + _junk(rng)[:10], "x"]
        )
        cookies.append(f"{name}={_junk(rng)[:200]}")
    rng.shuffle(cookies)
    if cookies:
        headers.append(("Cookie", "; ".join(cookies)))
    body = rng.choice(
        [b"", b"csrf_token=x&rd=/", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))]
    )
    return method, path, query, headers, body, carries_session


def _check_our_answer(status: int, headers: dict[str, str], body: bytes) -> None:
    """Pages the middleware answers itself: never cached, never reflecting markup."""
    assert headers.get("cache-control") in ("no-store", "public, max-age=3600"), headers
    assert b"<script>" not in body
    assert b"Traceback" not in body


def _is_public(path: str) -> bool:
    return path.startswith("/static/")


def _fuzz_settings() -> dict[str, Any]:
    return {
        "issuer": "https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        "client_id": "fuzz",
        "client_secret": "fuzz-secret",
        "secret_keys": ("f" * 40,),
        "base_url": "https://cqrs.example.nhs.uk",
        "account_lookup": lambda identity: None,
        "public_paths": PUBLIC,
        "ready_path": "",  # readiness fetches metadata; the fuzzer stays off the network
        "account_recheck_seconds": 0,
    }


def _session_for(runtime: Runtime) -> str:
    keeper = runtime.router.keeper
    identity = Identity(email="gp.user@nhs.net", subject="s", issuer=runtime.settings.provider.issuer)
    return keeper.codec.encode(
        Session.start(User(identity, Account("CQRS-1")), time.time(), keeper.deployment)
    )


def _seen_by_app(seen: list[tuple[str, str | None]], path: str, carries_session: bool) -> None:
    for seen_path, user in seen:
        if user is None:
            assert _is_public(seen_path), f"app reached without a session: {seen_path!r}"
        else:
            assert carries_session, f"user injected without a genuine session: {seen_path!r}"


def test_fuzz_wsgi_driver(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str | None]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        user = environ.get("cqrs_sso.user")
        seen.append((environ["PATH_INFO"], user.email if user else None))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    middleware = SSOMiddleware(app, Settings(**_fuzz_settings()))
    session = _session_for(middleware.runtime)
    rng = random.Random(FUZZ_SEED)
    statuses: dict[int, int] = {}
    for _ in range(FUZZ_REQUESTS):
        method, path, query, headers, body, carries_session = _request(rng, session)
        import io

        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": path.encode("utf-8", "surrogatepass").decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": "cqrs.example.nhs.uk",
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in headers:
            key = name.upper().replace("-", "_")
            environ[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = value
        captured: list[tuple[str, list[tuple[str, str]]]] = []
        seen.clear()
        body = b"".join(middleware(environ, lambda status, h, exc=None: captured.append((status, h))))
        status = int(captured[0][0].split()[0])
        if not seen:
            _check_our_answer(status, {k.lower(): v for k, v in captured[0][1]}, body)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (method, path, query, headers)
        _seen_by_app(seen, path, carries_session)
    middleware.close()
    assert "internal error" not in caplog.text
    assert len(statuses) >= 5  # the fuzzer reached many different answers
    print(f"WSGI fuzz: {FUZZ_REQUESTS} requests, seed {FUZZ_SEED}, statuses {sorted(statuses.items())}")


def test_fuzz_asgi_driver(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str | None]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        user = scope.get("cqrs_sso.user")
        seen.append((scope["path"], user.email if user else None))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    middleware = ASGISSOMiddleware(app, Settings(**_fuzz_settings()))
    session = _session_for(middleware.runtime)
    rng = random.Random(FUZZ_SEED + 1)
    statuses: dict[int, int] = {}

    async def fire() -> None:
        for _ in range(FUZZ_REQUESTS):
            method, path, query, headers, body, carries_session = _request(rng, session)
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": method,
                "scheme": "https",
                "path": path,
                "raw_path": path.encode("utf-8", "surrogatepass"),
                "query_string": query.encode("latin-1", "replace"),
                "headers": [(k.lower().encode(), v.encode("latin-1", "replace")) for k, v in headers],
            }
            sent: list[dict[str, Any]] = []
            chunks = [body[:10], body[10:]]

            async def receive() -> dict[str, Any]:
                chunk = chunks.pop(0) if chunks else b""
                return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            seen.clear()
            await middleware(scope, receive, send)
            status = sent[0]["status"]
            if not seen:
                headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
                _check_our_answer(status, headers, b"".join(m.get("body", b"") for m in sent[1:]))
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (method, path, query, headers)
            _seen_by_app(seen, path, carries_session)
        await middleware.aclose()

    asyncio.run(fire())
    assert "internal error" not in caplog.text
    assert len(statuses) >= 5
    print(f"ASGI fuzz: {FUZZ_REQUESTS} requests, seed {FUZZ_SEED + 1}, statuses {sorted(statuses.items())}")
