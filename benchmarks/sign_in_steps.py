"""The proxy's own share of a sign-in, step by step, with no network and no provider time.

    .venv/bin/python benchmarks/sign_in_steps.py [--sign-ins N]

Each new browser walks the steps of the CQRS user guide through the runtime (router, the
shipped interpreter, ``finish``: what the drivers do, without a socket), against the core
tests' scripted provider, which answers the token request in process (its own time, mostly
signing the ID token, is measured apart and taken off the callback). Prints the median and
p90 of each step: the sign-in page, Sign In (``POST /start``), the callback (the token
request's handling, the ID token's checks, the account lookup, sealing the session, its
cookies) and the first page with the new session. Compare with ``benchmarks/proxy.py``'s
sign-in round trip, which adds the HTTP round trips and the provider.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cqrs_sso_middleware import Runtime, Settings
from cqrs_sso_middleware.core.protocol import HttpCall, HttpResult, Respond
from tests.core.test_flow import BASE, CLIENT_ID, ISSUER, Browser, Clock, ScriptedProvider

STEPS = ("sign-in page", "Sign In (POST /start)", "callback, without the provider", "first page")


class TimedProvider(ScriptedProvider):
    """The scripted provider, keeping how long it took to answer the token request."""

    token_seconds: float = 0.0

    def http(self, effect: HttpCall) -> HttpResult:
        started = time.perf_counter()
        answer = super().http(effect)
        if effect.purpose == "token":
            self.token_seconds = time.perf_counter() - started
        return answer


def one_sign_in(runtime: Runtime, provider: TimedProvider) -> list[float]:
    browser = Browser(runtime, provider)
    took: list[float] = []

    def timed(method: str, target: str, headers: dict[str, str] | None = None) -> Respond:
        started = time.perf_counter()
        answer = browser.request(method, target, headers)
        took.append(time.perf_counter() - started)
        assert isinstance(answer, Respond), answer
        return answer

    page = timed("GET", "/oauth2/sign_in?rd=/messages")
    token = page.body.decode().split('name="csrf_token" value="')[1].split('"')[0]
    provider.form = {"csrf_token": token, "rd": "/messages"}
    started = timed("POST", "/oauth2/start", {"origin": BASE})
    query = {k: v[0] for k, v in parse_qs(urlsplit(dict(started.headers)["Location"]).query).items()}
    provider.nonce = query["nonce"]
    back = timed("GET", "/oauth2/callback?" + urlencode({"state": query["state"], "code": "c0de"}))
    assert back.status == 303, back
    took[-1] -= provider.token_seconds
    started_page = time.perf_counter()
    assert not isinstance(browser.request("GET", "/messages"), Respond)  # passed through, signed in
    took.append(time.perf_counter() - started_page)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description="the proxy's own time per sign-in step")
    parser.add_argument("--sign-ins", type=int, default=300)
    args = parser.parse_args()
    logging.getLogger("cqrs_sso").setLevel(logging.ERROR)  # no audit line per sign-in
    logging.getLogger("cqrs_sso.audit").disabled = True
    provider = TimedProvider()
    settings = Settings(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret="bench-secret",
        secret_keys=(secrets.token_urlsafe(32),),
        base_url=BASE,
        account_lookup=lambda identity: None,  # the scripted provider answers lookups
    )
    runtime = Runtime.from_settings(settings, clock=Clock(), store=provider.store_backend)
    warm_up = max(10, args.sign_ins // 10)
    times = [one_sign_in(runtime, provider) for _ in range(args.sign_ins + warm_up)][warm_up:]
    print(f"{args.sign_ins} sign-ins, new browser each, ms (the provider's own time taken off)")
    print(f"{'step':34} {'median':>8} {'p90':>8}")
    for index, step in enumerate(STEPS):
        values = sorted(sign_in[index] * 1000 for sign_in in times)
        print(f"{step:34} {statistics.median(values):8.3f} {values[int(len(values) * 0.9)]:8.3f}")
    total = sorted(sum(sign_in) * 1000 for sign_in in times)
    print(f"{'all four':34} {statistics.median(total):8.3f} {total[int(len(total) * 0.9)]:8.3f}")


if __name__ == "__main__":
    main()
