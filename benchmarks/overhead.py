"""Time of an authenticated request through the middleware vs. the bare app, in one process.

    .venv/bin/python benchmarks/overhead.py [--requests N] [--repeats R] [--stores cookie,memory,redis]
    .venv/bin/python benchmarks/overhead.py --rules      # the cost of three access rules
    .venv/bin/python benchmarks/overhead.py --tracing    # tracing off (the default) and on

Both drivers are called directly (no server, no sockets), with a valid session cookie, so
the difference is exactly what the middleware adds per signed-in request: parse the
cookie, find and check the session (decrypt it — cached — for the cookie store; one store
read for memory and Redis, the Redis round trip on loopback included), check time-outs,
inject the user. Prints one row per driver and store: µs/request for the bare app and the
wrapped app, the added cost and the ratio; the best of R runs is reported (the least
disturbed by the rest of the machine), the median alongside. Redis runs use a tenth of
the requests and the key prefix ``cqrs_sso_bench:`` (``--redis-url``, default db 15).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import timeit
from collections.abc import Callable, Iterable
from typing import Any

from cqrs_sso_middleware import Account, ASGISSOMiddleware, Identity, Settings, SSOMiddleware, User
from cqrs_sso_middleware.core.authorisation import AccessRules, rules_from_value
from cqrs_sso_middleware.core.interpreter import StoreOnly, run_sync
from cqrs_sso_middleware.core.sessions.session import Session
from cqrs_sso_middleware.runtime import Runtime

TARGETS_US = {("WSGI", "cookie"): 10.0, ("ASGI", "cookie"): 15.0}
SERVER_SIDE_TARGET_US = 150.0


THREE_RULES = (
    {"paths": ["/approvals", "/approvals/**"], "roles": ["CQRS.Approver"]},
    {"paths": ["/admin/**"], "roles": ["CQRS.Admin"]},
    {"paths": ["re:/declarations(/.*)?"], "max_auth_age_seconds": 900},
)
RULES_TARGET = 1.10  # the overhead with three rules, against none


def settings(store: str, **more: Any) -> Settings:
    return Settings(
        issuer="https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
        client_id="bench",
        client_secret="bench-secret",
        secret_keys=(secrets.token_urlsafe(32),),
        base_url="https://cqrs.example.nhs.uk",
        account_lookup=lambda identity: None,
        session_store=store,
        session_key_prefix="cqrs_sso_bench:",
        **more,
    )


def session_cookie(middleware: Any) -> str:
    """A signed-in session: in the cookie (cookie store) or saved in the store."""
    runtime = middleware.runtime
    keeper = runtime.router.keeper
    identity = Identity(
        email="gp.user@nhs.net",
        subject="pairwise-subject",
        issuer=runtime.settings.provider.issuer,
        object_id="0f4b3c1e-6d7a-4b8c-9e2f-1a3b5c7d9e0f",
        tenant_id="5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
        name="Dr Gita Patel",
        claims={"email": "gp.user@nhs.net", "name": "Dr Gita Patel", "ver": "2.0"},
    )
    user = User(identity, Account("CQRS-0001", "gp.user@nhs.net", {"organisation": "Demo Surgery"}))
    session = Session.start(user, time.time(), keeper.deployment)
    if keeper.stateless:
        value = keeper.codec.encode(session)
    else:
        run_sync(keeper.save(session, time.time()), StoreOnly(runtime.store.perform))
        value = session.session_id
    return f"{runtime.cookie_names.session}={value}; _ga=GA1.2.3; theme=dark"


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


def report(name: str, store: str, bare: list[float], wrapped: list[float]) -> bool:
    best_bare, best_wrapped = min(bare), min(wrapped)
    added = best_wrapped - best_bare
    target = TARGETS_US.get((name, store), SERVER_SIDE_TARGET_US)
    ok = added <= target
    print(
        f"{name} {store:>6}: bare {best_bare:6.2f} µs/req (median {statistics.median(bare):6.2f})   "
        f"wrapped {best_wrapped:7.2f} µs/req (median {statistics.median(wrapped):7.2f})   "
        f"added {added:6.2f} µs   ratio {best_wrapped / best_bare:5.2f}x   "
        f"target ≤ {target:.0f} µs: {'met' if ok else 'MISSED'}"
    )
    return ok


ENVIRON = {
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
}


def scope_with(cookie: str) -> dict[str, Any]:
    return {
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
            (b"cookie", cookie.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 443),
    }


def measure(store: str, requests: int, repeats: int) -> None:
    wsgi = SSOMiddleware(bare_wsgi, settings(store))
    environ = {**ENVIRON, "HTTP_COOKIE": session_cookie(wsgi)}
    # Bare and wrapped runs alternate, so a noisy moment on the machine hits both alike.
    bare_w, wrapped_w = [], []
    for _ in range(repeats):
        bare_w.append(time_wsgi(bare_wsgi, environ, requests))
        wrapped_w.append(time_wsgi(wsgi, environ, requests))
    wsgi.close()

    asgi = ASGISSOMiddleware(bare_asgi, settings(store))
    scope = scope_with(session_cookie(asgi))

    async def run_asgi() -> tuple[list[float], list[float]]:
        bare, wrapped = [], []
        for _ in range(repeats):
            bare.append(await time_asgi(bare_asgi, scope, requests))
            wrapped.append(await time_asgi(asgi, scope, requests))
        await asgi.aclose()
        return bare, wrapped

    bare_a, wrapped_a = asyncio.run(run_asgi())
    label = "redis" if store.startswith(("redis://", "rediss://")) else store
    report("WSGI", label, bare_w, wrapped_w)
    report("ASGI", label, bare_a, wrapped_a)


def best_added(name: str, runtimes: dict[str, Runtime], requests: int, repeats: int) -> dict[str, float]:
    """For each runtime, the best (least) time one driver adds to a signed-in request
    (cookie store), the runtimes' runs interleaved so that the machine's drift hits all."""
    added: dict[str, list[float]] = {label: [] for label in runtimes}
    apps = {}
    for label, runtime in runtimes.items():
        wrapped: Any = (
            SSOMiddleware(bare_wsgi, runtime=runtime)
            if name == "WSGI"
            else ASGISSOMiddleware(bare_asgi, runtime=runtime)
        )
        apps[label] = (wrapped, session_cookie(wrapped))
    for _ in range(repeats):
        for label, (wrapped, cookie) in apps.items():
            if name == "WSGI":
                environ = {**ENVIRON, "HTTP_COOKIE": cookie}
                bare = time_wsgi(bare_wsgi, environ, requests)
                added[label].append(time_wsgi(wrapped, environ, requests) - bare)
            else:
                scope = scope_with(cookie)

                async def both(app: Any = wrapped, scope: dict[str, Any] = scope) -> float:
                    bare = await time_asgi(bare_asgi, scope, requests)
                    return await time_asgi(app, scope, requests) - bare

                added[label].append(asyncio.run(both()))
    return {label: min(times) for label, times in added.items()}


def measure_rules(requests: int, repeats: int) -> None:
    """The added cost per signed-in request (cookie store, a path no rule names, so every
    rule is tried), without rules and with three, interleaved."""
    print(f"access rules: {requests} requests x {repeats} runs, cookie store, GET /messages, best run shown")
    for name in ("WSGI", "ASGI"):
        runtimes = {
            "none": Runtime.from_settings(settings("cookie")),
            "three": Runtime.from_settings(settings("cookie", access_rules=THREE_RULES)),
        }
        best = best_added(name, runtimes, requests, repeats)
        ratio = best["three"] / best["none"]
        print(
            f"{name} cookie: added {best['none']:5.2f} µs without rules, {best['three']:5.2f} µs with three "
            f"({ratio:.2f}x; target ≤ {RULES_TARGET:.2f}x: {'met' if ratio <= RULES_TARGET else 'MISSED'})"
        )
    # rule_for remembers its answer per path; a path never seen before pays the matching.
    rules = AccessRules(rules_from_value(list(THREE_RULES)))
    paths = [f"/messages/{number}" for number in range(requests)]
    best_new = min(timeit.repeat(lambda: [rules._first_match(p) for p in paths], number=1, repeat=repeats))
    print(f"a path not seen before: +{best_new / requests * 1e6:.2f} µs to find that no rule matches it")


def measure_tracing(requests: int, repeats: int) -> None:
    """The added cost per signed-in request (cookie store) with tracing off (no ``OTEL_*``
    variables: the default), and on (the SDK, a server span per request, sent in batches to
    an exporter that drops them), interleaved."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from cqrs_sso_middleware.tracing import Tracing

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=1 << 16))
    print(f"tracing: {requests} requests x {repeats} runs, cookie store, GET /messages, best run shown")
    for name in ("WSGI", "ASGI"):
        runtimes = {
            "off": Runtime.from_settings(settings("cookie"), tracing=None),
            "on": Runtime.from_settings(settings("cookie"), tracing=Tracing(provider)),
        }
        assert runtimes["off"].tracing is None
        best = best_added(name, runtimes, requests, repeats)
        off, on = best["off"], best["on"]
        print(f"{name} cookie: added {off:5.2f} µs with tracing off, {on:5.2f} µs with tracing on")
    provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stores", default="cookie,memory,redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--rules", action="store_true", help="measure three access rules against none")
    parser.add_argument("--tracing", action="store_true", help="measure tracing off against on (otel extra)")
    args = parser.parse_args()
    if args.tracing:
        measure_tracing(args.requests, args.repeats)
        return
    if args.rules:
        measure_rules(args.requests, args.repeats)
        return
    print(
        f"authenticated GET, {args.requests} requests (Redis: a tenth) x {args.repeats} runs, best run shown"
    )
    for store in args.stores.split(","):
        if store == "redis":
            measure(args.redis_url, max(1000, args.requests // 10), args.repeats)
        else:
            measure(store, args.requests, args.repeats)


if __name__ == "__main__":
    main()
