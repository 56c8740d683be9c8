"""CPU instructions per signed-in request through the middleware, counted by callgrind.

    .venv/bin/python benchmarks/instructions.py [--stores cookie,memory] [--tree PATH ...]

Timings on a shared 2-core machine swing by 10 % or more between runs, which hides a 5 %
change; instruction counts do not (valgrind counts the same total for the same program
and input, whatever else the machine is doing). For each driver and store, the script runs
``benchmarks/overhead.py``'s signed-in request under ``valgrind --tool=callgrind`` twice,
with a few and with many more requests, and prints the difference per request: set-up,
imports and the interpreter's start cancel out. ``--tree`` compares other checkouts of the
package (``git worktree add /tmp/old <rev>``), each measured with its own code, side by
side with this one (last); each is shown against the first.

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
        finished = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if finished.returncode != 0:
            raise SystemExit(f"{tree}: {finished.stderr[-2000:]}")
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        assert found, "no summary line in the callgrind output"
        return int(found.group(1))


def per_request(tree: Path, driver: str, store: str) -> float:
    return (instructions(tree, driver, store, MANY) - instructions(tree, driver, store, FEW)) / (MANY - FEW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="cookie,memory")
    parser.add_argument("--tree", action="append", default=[], help="another checkout to compare")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        driver, store, count = args.run.split(",")
        run_requests(driver, store, int(count))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    trees = [*(Path(t).resolve() for t in args.tree), ROOT]
    print(f"instructions per signed-in request ({MANY} - {FEW} requests under callgrind)")
    for store in args.stores.split(","):
        for driver in ("WSGI", "ASGI"):
            counts = [per_request(tree, driver, store) for tree in trees]
            cells = "   ".join(
                f"{tree.name}: {count:9,.0f}" + ("" if n == 0 else f" ({count / counts[0] - 1:+.1%})")
                for n, (tree, count) in enumerate(zip(trees, counts, strict=True))
            )
            print(f"{driver} {store:>6}: {cells}")


if __name__ == "__main__":
    main()
