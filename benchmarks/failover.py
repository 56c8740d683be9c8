"""A Redis fail-over under load, through two `cqrs-sso proxy` instances.

    .venv/bin/python benchmarks/failover.py [--mode sentinel|cluster] [--sessions 40] [--after 15]

Sentinel mode starts a primary, one replica and three Sentinels (down-after 1 s); cluster
mode three primaries with a replica each (cluster-node-timeout 1 s). Two proxy processes
share the store, in front of the legacy app under gunicorn. The script signs ``--sessions``
browsers in, signs a quarter of them out again (the revocations), starts steady signed-in
traffic on both proxies, and SIGKILLs the primary (cluster: one of the three, holding
about a third of the sessions). It prints a per-second timeline of answers, then:

* the 503 window (first to last 503 after the kill) and every other answer that was not
  200 or 503 — other 5xx and transport errors must be 0;
* sessions kept: how many of the sessions made before the kill still work, on both
  instances; revocations kept: how many of the sign-outs made before the kill still hold;
* whether a sign-out after the fail-over, on one instance, is honoured by the other.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.proxy import (  # noqa: E402
    PAGE,
    SECRET,
    free_port,
    proxy_env,
    run_proxy,
    sign_in,
    start_legacy_app,
    start_provider,
    wait_for,
)
from cqrs_sso_middleware.provider import DemoClient  # noqa: E402
from tests.redis_servers import RedisClusterSet, SentinelSet, start_cluster, start_sentinel_set  # noqa: E402

HTML = {"Accept": "text/html"}


@dataclass
class Traffic:
    """Signed-in GETs from ``threads`` clients, round robin over proxies and sessions."""

    urls: list[str]
    cookies: list[str]
    threads: int = 8
    answers: list[tuple[float, int | str]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self, n: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = n
            while not self.stopping.is_set():
                url, cookie = self.urls[i % len(self.urls)], self.cookies[i % len(self.cookies)]
                i += self.threads
                try:
                    status: int | str = client.get(url + PAGE, headers={**HTML, "Cookie": cookie}).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                self.answers.append((time.monotonic(), status))

    def start(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in workers:
            worker.start()
        return workers


def answer(url: str, cookie: str) -> int | str:
    try:
        return httpx.get(url + PAGE, headers={**HTML, "Cookie": cookie}, timeout=10).status_code
    except httpx.HTTPError as error:
        return type(error).__name__


def sign_out(url: str, cookie: str, origin: str) -> int:
    headers = {
        **HTML,
        "Cookie": cookie,
        "Origin": origin,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return httpx.post(url + "/oauth2/sign_out", headers=headers, timeout=10).status_code


def main() -> None:
    parser = argparse.ArgumentParser(description="a Redis fail-over under load")
    parser.add_argument("--mode", choices=["sentinel", "cluster"], default="sentinel")
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--after", type=float, default=15, help="seconds of traffic after the kill")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per proxy")
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as temp:
        tmp = Path(temp)
        group: SentinelSet | RedisClusterSet
        group = start_sentinel_set(tmp / "redis") if args.mode == "sentinel" else start_cluster(tmp / "redis")
        stack.callback(group.stop)
        provider, accounts, _ = start_provider(stack, tmp)
        app_port = free_port()
        start_legacy_app(stack, app_port, 2)
        wait_for(f"http://127.0.0.1:{app_port}/")
        first_port, second_port = free_port(), free_port()
        origin = f"http://127.0.0.1:{first_port}"
        provider.clients["failover"] = DemoClient("failover", SECRET, (f"{origin}/oauth2/callback",))
        keys = {"CQRS_SSO_SECRET_KEYS": "failover-benchmark-key-" + "x" * 20}
        urls = []
        for port in (first_port, second_port):
            env = proxy_env(
                provider,
                origin,
                "failover",
                accounts,
                CQRS_SSO_UPSTREAM=f"http://127.0.0.1:{app_port}",
                CQRS_SSO_SESSION_STORE=group.url,
                **keys,
            )
            run_proxy(stack, port, args.workers, env, tmp / f"proxy-{port}.log")
            wait_for(f"http://127.0.0.1:{port}/healthz")
            urls.append(f"http://127.0.0.1:{port}")
        print(f"{args.mode}: {group.url}; proxies {urls[0]} and {urls[1]}", flush=True)

        cookies = [sign_in(origin + PAGE, provider) for _ in range(args.sessions)]
        revoked, kept = cookies[: args.sessions // 4], cookies[args.sessions // 4 :]
        for n, cookie in enumerate(revoked):
            assert sign_out(urls[n % 2], cookie, origin) == 303
        traffic = Traffic(urls, kept)
        workers = traffic.start()
        time.sleep(3)
        killed_at = time.monotonic()
        killing = isinstance(group, SentinelSet)
        victim = group.kill_primary() if killing else group.kill_primary_of("cqrs_sso:s:")  # type: ignore[union-attr]
        print(f"killed the primary on port {victim.port} (SIGKILL)", flush=True)
        time.sleep(args.after)
        traffic.stopping.set()
        for worker in workers:
            worker.join(timeout=20)

        report_timeline(traffic.answers, killed_at)
        kept_ok = sum(all(answer(url, cookie) == 200 for url in urls) for cookie in kept)
        revoked_ok = sum(all(answer(url, cookie) == 303 for url in urls) for cookie in revoked)
        print(
            f"sessions kept:    {kept_ok}/{len(kept)} ({100 * kept_ok / len(kept):.0f} %) on both instances"
        )
        print(
            f"revocations kept: {revoked_ok}/{len(revoked)} ({100 * revoked_ok / len(revoked):.0f} %) on both"
        )
        late = kept[0]
        signed_out = sign_out(urls[0], late, origin)
        honoured = answer(urls[1], late)
        print(
            f"sign-out after the fail-over on instance 1: {signed_out}; "
            f"the same cookie on instance 2: {honoured} ({'honoured' if honoured == 303 else 'NOT honoured'})"
        )


def report_timeline(answers: list[tuple[float, int | str]], killed_at: float) -> None:
    by_second: dict[int, collections.Counter[int | str]] = collections.defaultdict(collections.Counter)
    for moment, status in answers:
        by_second[int(moment - killed_at) if moment >= killed_at else int(moment - killed_at) - 1][
            status
        ] += 1
    print("\nsecond (0 = the kill)   200     503   other")
    for second in sorted(by_second):
        counts = by_second[second]
        other = sum(v for k, v in counts.items() if k not in (200, 503))
        print(f"{second:>6} {counts[200]:>12} {counts[503]:>7} {other:>7}")
    after = [(m, s) for m, s in answers if m >= killed_at]
    unavailable = [m for m, s in after if s == 503]
    others = collections.Counter(s for _, s in answers if s not in (200, 503))
    window = (max(unavailable) - min(unavailable)) if unavailable else 0.0
    first = (min(unavailable) - killed_at) if unavailable else 0.0
    print(
        f"\nanswers: {len(answers)}; 503 window after the kill: {window:.2f} s "
        f"(from +{first:.2f} s), {len(unavailable)} answers; other 5xx or transport errors: "
        f"{sum(others.values())} {dict(others) if others else ''}"
    )


if __name__ == "__main__":
    main()
