"""Time of an authenticated request through the middleware vs. the bare app, in one process.

    .venv/bin/python benchmarks/overhead.py [--requests N] [--repeats R]

Both drivers are called directly (no server, no sockets), with a valid session cookie, so
the difference is exactly what the middleware adds per signed-in request: parse the
cookie, verify the session, check time-outs, inject the user. Prints µs/request for the
bare app and the wrapped app, the added cost and the ratio; the best of R runs is reported
(the least disturbed by the rest of the machine), the median alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from cqrs_sso_middleware import Account, ASGISSOMiddleware, Identity, Settings, SSOMiddleware, User
from cqrs_sso_middleware.core.sessions import Session

TARGETS_US = {"WSGI": 10.0, "ASGI": 15.0}


def settings() -> Settings:
    return Settings(
        issuer="https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        client_id="bench",
        client_secret="bench-secret",
        secret_keys=(secrets.token_urlsafe(32),),
        base_url="https://cqrs.example.nhs.uk",
        account_lookup=lambda identity: None,
    )


def session_cookie(flow: Any) -> str:
    identity = Identity(
        email="gp.user@nhs.net",
        subject="pairwise-subject",
        issuer=flow.settings.issuer,
        object_id="0f4b3c1e-6d7a-4b8c-9e2f-1a3b5c7d9e0f",
        tenant_id="5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
        name="Dr Gita Patel",
        claims={"email": "gp.user@nhs.net", "name": "Dr Gita Patel", "ver": "2.0"},
    )
    user = User(identity, Account("CQRS-0001", "gp.user@nhs.net", {"organisation": "Demo Surgery"}))
    value = flow.codec.encode(Session.start(user, time.time()))
    return f"{flow.session_cookie}={value}; _ga=GA1.2.3; theme=dark"


def bare_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def time_wsgi(app: Callable[..., Any], environ: dict[str, Any], n: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        app(dict(environ), start_response)
    return (time.perf_counter() - started) / n * 1e6


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def time_asgi(app: Any, scope: dict[str, Any], n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(scope, receive, send)
    return (time.perf_counter() - started) / n * 1e6


def report(name: str, bare: list[float], wrapped: list[float]) -> bool:
    best_bare, best_wrapped = min(bare), min(wrapped)
    added = best_wrapped - best_bare
    ok = added <= TARGETS_US[name]
    print(
        f"{name}: bare {best_bare:6.2f} µs/req (median {statistics.median(bare):6.2f})   "
        f"wrapped {best_wrapped:6.2f} µs/req (median {statistics.median(wrapped):6.2f})   "
        f"added {added:5.2f} µs   ratio {best_wrapped / best_bare:4.2f}x   "
        f"target ≤ {TARGETS_US[name]:.0f} µs: {'met' if ok else 'MISSED'}"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    wsgi = SSOMiddleware(bare_wsgi, settings())
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/messages",
        "QUERY_STRING": "tab=inbox",
        "SERVER_NAME": "cqrs.example.nhs.uk",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "HTTP_HOST": "cqrs.example.nhs.uk",
        "HTTP_ACCEPT": "text/html,application/xhtml+xml",
        "HTTP_USER_AGENT": "Mozilla/5.0 (benchmark)",
        "HTTP_ACCEPT_LANGUAGE": "en-GB",
        "HTTP_COOKIE": session_cookie(wsgi.flow),
    }
    # Bare and wrapped runs alternate, so a noisy moment on the machine hits both alike.
    bare_w, wrapped_w = [], []
    for _ in range(args.repeats):
        bare_w.append(time_wsgi(bare_wsgi, environ, args.requests))
        wrapped_w.append(time_wsgi(wsgi, environ, args.requests))
    wsgi.close()

    asgi = ASGISSOMiddleware(bare_asgi, settings())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/messages",
        "raw_path": b"/messages",
        "query_string": b"tab=inbox",
        "root_path": "",
        "headers": [
            (b"host", b"cqrs.example.nhs.uk"),
            (b"accept", b"text/html,application/xhtml+xml"),
            (b"user-agent", b"Mozilla/5.0 (benchmark)"),
            (b"accept-language", b"en-GB"),
            (b"cookie", session_cookie(asgi.flow).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
    }

    async def run_asgi() -> tuple[list[float], list[float]]:
        bare, wrapped = [], []
        for _ in range(args.repeats):
            bare.append(await time_asgi(bare_asgi, scope, args.requests))
            wrapped.append(await time_asgi(asgi, scope, args.requests))
        await asgi.aclose()
        return bare, wrapped

    bare_a, wrapped_a = asyncio.run(run_asgi())
    print(f"authenticated GET, {args.requests} requests x {args.repeats} runs, best run shown")
    report("WSGI", bare_w, wrapped_w)
    report("ASGI", bare_a, wrapped_a)


if __name__ == "__main__":
    main()
