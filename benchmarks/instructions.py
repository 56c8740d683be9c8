"""CPU instructions per signed-in request through the middleware, counted by callgrind.

    .venv/bin/python benchmarks/instructions.py [--stores cookie,memory] [--tree PATH ...]
    .venv/bin/python benchmarks/instructions.py --proxy [--stores cookie,redis] [--tree PATH ...]

Timings on a shared 2-core machine swing by 10 % or more between runs, which hides a 5 %
change; instruction counts do not (valgrind counts the same total for the same program
and input, whatever else the machine is doing). For each driver and store, the script runs
``benchmarks/overhead.py``'s signed-in request under ``valgrind --tool=callgrind`` twice,
with a few and with many more requests, and prints the difference per request: set-up,
imports and the interpreter's start cancel out. ``--tree`` compares other checkouts of the
package (``git worktree add /tmp/old <rev>``), each measured with its own code, side by
side with this one (last); each is shown against the first.

``--proxy`` counts the same for ``cqrs-sso proxy`` (one worker, under callgrind) in front of
a small upstream: after a warm-up, callgrind's counters are zeroed, a thousand signed-in
GETs go through on one keep-alive connection, and the counters are dumped
(``callgrind_control``); the upstream and the client run in this process, not counted.

Needs valgrind (Debian package). Not a wall-clock figure: instructions, not cache misses or
I/O, so use ``overhead.py`` for microseconds and this for "did it get slower".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FEW, MANY = 200, 1200
REDIS_URL = "redis://127.0.0.1:6379/15"


def run_requests(driver: str, store: str, count: int) -> None:
    """``count`` signed-in requests through one driver (the measured program)."""
    sys.path.insert(0, str(Path.cwd() / "benchmarks"))
    import overhead  # the tree's own helpers: its settings, cookie and request

    from cqrs_sso_middleware import ASGISSOMiddleware, SSOMiddleware
    from cqrs_sso_middleware.runtime import Runtime

    # "redis": overhead.py's own database and key prefix on the local server.
    runtime = Runtime.from_settings(overhead.settings(REDIS_URL if store == "redis" else store))
    if driver == "WSGI":
        app: Any = SSOMiddleware(overhead.bare_wsgi, runtime=runtime)
        environ = dict(overhead.ENVIRON, HTTP_COOKIE=overhead.session_cookie(app))
        overhead.time_wsgi(app, environ, count)
    else:
        app = ASGISSOMiddleware(overhead.bare_asgi, runtime=runtime)
        asyncio.run(overhead.time_asgi(app, overhead.scope_with(overhead.session_cookie(app)), count))


def instructions(tree: Path, driver: str, store: str, count: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--run",
            f"{driver},{store},{count}",
        ]
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
        finished = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
        if finished.returncode != 0:
            raise SystemExit(f"{tree}: {finished.stderr[-2000:]}")
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        assert found, "no summary line in the callgrind output"
        return int(found.group(1))


MINT_COOKIE = """
import sys
sys.path.insert(0, "benchmarks")
import overhead
from cqrs_sso_middleware import Settings, SSOMiddleware
from cqrs_sso_middleware.runtime import Runtime

settings = Settings(
    issuer=overhead.settings("cookie").provider.issuer, client_id="bench", client_secret="bench-secret",
    secret_keys=(sys.argv[1],), base_url=sys.argv[2], account_lookup=lambda identity: None,
    session_store=sys.argv[3], session_key_prefix="cqrs_sso_bench:",
)
print(overhead.session_cookie(SSOMiddleware(overhead.bare_wsgi, runtime=Runtime.from_settings(settings))))
"""


def proxy_per_request(tree: Path, store: str, warm: int = 200, count: int = 1000) -> float:
    """Instructions per signed-in GET in a ``cqrs-sso proxy`` worker of ``tree``."""
    import glob
    import secrets
    import time

    import httpx

    from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket

    async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    upstream = BackgroundASGIServer(upstream_app, bind_socket()).start()
    probe = bind_socket()
    port = probe.getsockname()[1]
    probe.close()
    base_url, secret = f"http://127.0.0.1:{port}", secrets.token_urlsafe(32)
    store_url = REDIS_URL if store == "redis" else store
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bench_lookup.py").write_text("def lookup(identity):\n    return None\n")
        env = dict(os.environ, PYTHONPATH=f"{tree}:{folder}", PYTHONHASHSEED="0")
        minted = subprocess.run(
            [sys.executable, "-c", MINT_COOKIE, secret, base_url, store_url],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        env |= {
            "CQRS_SSO_ISSUER": "https://login.microsoftonline.com/5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4/v2.0",
            "CQRS_SSO_CLIENT_ID": "bench",
            "CQRS_SSO_CLIENT_SECRET": "bench-secret",
            "CQRS_SSO_SECRET_KEYS": secret,
            "CQRS_SSO_BASE_URL": base_url,
            "CQRS_SSO_SESSION_STORE": store_url,
            "CQRS_SSO_SESSION_KEY_PREFIX": "cqrs_sso_bench:",
            "CQRS_SSO_ACCOUNT_LOOKUP": "bench_lookup:lookup",
            "CQRS_SSO_UPSTREAM": upstream.url,
        }
        out = f"{folder}/callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        command += [
            "-m",
            "cqrs_sso_middleware.cli",
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ]
        proxy = subprocess.Popen(
            command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            headers = {"Cookie": minted.stdout.strip(), "Accept": "text/html"}
            with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
                deadline = time.monotonic() + 180
                while True:
                    try:
                        client.get("/healthz")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or proxy.poll() is not None:
                            raise SystemExit(f"{tree}: the proxy did not start under valgrind") from None
                        time.sleep(1)
                for _ in range(warm):
                    assert client.get("/messages").status_code == 200, "not signed in"
                subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True, capture_output=True)
                for _ in range(count):
                    client.get("/messages")
                subprocess.run(["callgrind_control", "-d", str(proxy.pid)], check=True, capture_output=True)
            dumps = sorted(glob.glob(out + "*"), key=os.path.getmtime)
            found = re.search(r"^(?:summary|totals):\s+(\d+)", Path(dumps[-1]).read_text(), re.MULTILINE)
            assert found, "no totals in the callgrind dump"
            return int(found.group(1)) / count
        finally:
            proxy.terminate()
            proxy.wait(timeout=60)
            upstream.stop()


def per_request(tree: Path, driver: str, store: str) -> float:
    return (instructions(tree, driver, store, MANY) - instructions(tree, driver, store, FEW)) / (MANY - FEW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="cookie,memory")
    parser.add_argument("--tree", action="append", default=[], help="another checkout to compare")
    parser.add_argument("--proxy", action="store_true", help="count a cqrs-sso proxy worker's instructions")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        driver, store, count = args.run.split(",")
        run_requests(driver, store, int(count))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    trees = [*(Path(t).resolve() for t in args.tree), ROOT]
    if args.proxy:
        print("instructions per signed-in GET in a cqrs-sso proxy worker (1000 requests under callgrind)")
    else:
        print(f"instructions per signed-in request ({MANY} - {FEW} requests under callgrind)")
    for store in args.stores.split(","):
        for driver in ("proxy",) if args.proxy else ("WSGI", "ASGI"):
            counts = [
                proxy_per_request(tree, store) if args.proxy else per_request(tree, driver, store)
                for tree in trees
            ]
            cells = "   ".join(
                f"{tree.name}: {count:9,.0f}" + ("" if n == 0 else f" ({count / counts[0] - 1:+.1%})")
                for n, (tree, count) in enumerate(zip(trees, counts, strict=True))
            )
            print(f"{driver} {store:>6}: {cells}")


if __name__ == "__main__":
    main()
