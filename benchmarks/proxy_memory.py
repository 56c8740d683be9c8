"""Memory of `cqrs-sso proxy` over many requests, and many idle keep-alive connections.

    .venv/bin/python benchmarks/proxy_memory.py [--requests 1000000] [--idle 5000] [--workers 2]

1. Signs in for real against the built-in provider, then sends ``--requests`` authenticated
   GETs through the proxy with wrk (in rounds of about 100,000), printing each worker's
   resident memory (VmRSS) after every round: the curve, and the growth after the first
   100,000 requests (target: at most 5 MiB per worker).
2. Opens ``--idle`` connections, sends one authenticated request on each (keep-alive),
   holds them all idle for a few seconds (less than the server's keep-alive time-out),
   then sends a second request on every one and counts the answers that are not 200.

Everything binds to 127.0.0.1; the upstream is tests/proxy/legacy_app.py under gunicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import proxy as bench  # benchmarks/proxy.py: the shared set-up helpers

from cqrs_sso_middleware.provider import DemoClient

MIB = 1024 * 1024


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.extend(int(child) for child in (task / "children").read_text().split())
    return [c for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def rss_bytes(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def wrk_requests(url: str, cookie: str, seconds: int) -> int:
    """Run wrk; return how many requests it completed."""
    out = bench.subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Cookie: {cookie}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses")
    return int(match.group(1)) if match else 0


async def idle_connections(
    host: str, port: int, path: str, cookie: str, count: int, hold: float
) -> tuple[int, int]:
    """Open ``count`` keep-alive connections, one request each, hold, one more each."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\nAccept: text/html\r\n\r\n"
    ).encode()

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: (\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        return status

    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    failures = 0
    for start in range(0, count, 250):
        opened = await asyncio.gather(
            *(asyncio.open_connection(host, port) for _ in range(min(250, count - start))),
            return_exceptions=True,
        )
        for item in opened:
            if isinstance(item, BaseException):
                failures += 1
            else:
                connections.append(item)
        statuses = await asyncio.gather(
            *(exchange(r, w) for r, w in connections[start:]), return_exceptions=True
        )
        failures += sum(1 for s in statuses if s != 200)
    await asyncio.sleep(hold)
    statuses = await asyncio.gather(*(exchange(r, w) for r, w in connections), return_exceptions=True)
    second_failures = sum(1 for s in statuses if s != 200)
    for _, writer in connections:
        writer.close()
    return failures, second_failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as temp:
        tmp = Path(temp)
        provider, accounts, _ = bench.start_provider(stack, tmp)
        app_port = bench.free_port()
        bench.start_legacy_app(stack, app_port, 2)
        bench.wait_for(f"http://127.0.0.1:{app_port}/")
        port = bench.free_port()
        url = f"http://127.0.0.1:{port}"
        provider.clients["memory-bench"] = DemoClient(
            "memory-bench", bench.SECRET, (f"{url}/oauth2/callback",)
        )
        env = bench.proxy_env(
            provider, url, "memory-bench", accounts, CQRS_SSO_UPSTREAM=f"http://127.0.0.1:{app_port}"
        )
        master = bench.run_proxy(stack, port, args.workers, env, tmp / "proxy.log")
        bench.wait_for(url + "/healthz")
        cookie = bench.sign_in(url + bench.PAGE, provider)
        workers = workers_of(master.pid)
        print(f"proxy workers {workers}; {args.requests:,} authenticated requests in rounds of ~100,000")
        print(f"{'requests':>10}  " + "  ".join(f"worker {w} RSS MiB" for w in workers))
        baseline: list[int] = []
        done = 0
        while done < args.requests:
            started = time.monotonic()
            done += wrk_requests(url + bench.PAGE, cookie, 30)
            sizes = [rss_bytes(w) for w in workers]
            if not baseline:
                baseline = sizes  # after the first round (~100,000): the curve's reference
            print(f"{done:>10,}  " + "  ".join(f"{s / MIB:>18.1f}" for s in sizes), flush=True)
            if time.monotonic() - started < 1:
                break
        if baseline:
            final = [rss_bytes(w) for w in workers]
            growth = [(f - b) / MIB for f, b in zip(final, baseline, strict=True)]
            print(
                "growth after the first 100,000: "
                + ", ".join(f"{g:+.1f} MiB" for g in growth)
                + f"  (target ≤ 5 MiB per worker: {'met' if max(growth) <= 5 else 'MISSED'})"
            )
        first, second = asyncio.run(idle_connections("127.0.0.1", port, bench.PAGE, cookie, args.idle, 3.0))
        print(
            f"{args.idle:,} keep-alive connections: {first} failed on the first request, "
            f"{second} failed after 3 s idle  ({'met' if first == second == 0 else 'MISSED'})"
        )
        sizes = ", ".join(f"{rss_bytes(w) / MIB:.1f} MiB" for w in workers)
        print(f"worker RSS after the idle connections: {sizes}")


if __name__ == "__main__":
    main()
