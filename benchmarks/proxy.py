"""Throughput and latency of an authenticated GET of a small page, four ways, with wrk.

    .venv/bin/python benchmarks/proxy.py [--seconds 10] [--connections 32] [--workers 2]

(a) the legacy app direct (tests/proxy/legacy_app.py under gunicorn);
(b) through `cqrs-sso proxy` (cookie store), and (b') the same with ``session_store`` on
    Redis (``--redis-url``, default db 15, key prefix ``cqrs_sso_bench:``); with
    ``--only …,s``, (s) the same on a Sentinel-managed primary (a primary, a replica and
    three Sentinels the script starts), compared with (b');
(c) through nginx + forward-auth (examples/nginx/cqrs-sso.conf with `cqrs-sso proxy`
    as the auth service);
(d) through Apache + mod_auth_openidc, when apache2 and libapache2-mod-auth-openidc are
    installed — the script writes the Apache config, signs in and passes the session cookie;
(t) through `cqrs-sso proxy` with an API client's access token (``api_paths``), against
(u) Apache + mod_auth_openidc's ``AuthType oauth20`` on the same token (its signature
    checked against the provider's JWKS, ``iss`` and ``aud`` required): ``--only t,u``.

Every protected setup signs in for real against the built-in provider first, then wrk
(Debian package) replays the session cookie. Everything binds to 127.0.0.1. Prints req/s,
p50 and p99 for each and the ratios to (d).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cqrs_sso_middleware.provider import DemoClient, DemoUser, NHSmailLikeProvider  # noqa: E402
from cqrs_sso_middleware.serving import BackgroundASGIServer, bind_socket  # noqa: E402

TENANT = "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4"
SECRET = secrets.token_urlsafe(24)
PASSWORD = "bench-Pa55"
EMAIL = "gp.user@nhs.net"
PAGE = "/messages"


def free_port() -> int:
    sock = bind_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start(
    stack: ExitStack, command: list[str], env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop() -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()

    stack.callback(stop)
    return process


def profiled(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (PyPI) sampling the process and its workers for ``seconds``; writes ``out``."""
    command = ["py-spy", "record", "--pid", str(pid), "--subprocesses", "--duration", str(seconds)]
    style = ["--format", "raw"] if out.suffix == ".txt" else []  # collapsed stacks, for reading as text
    arguments = [*command, *style, "--output", str(out), "--rate", "250"]
    return subprocess.Popen(arguments, stdout=subprocess.DEVNULL)


def sign_in(
    start_url: str,
    provider: NHSmailLikeProvider,
    at_sign_in: Callable[[], None] | None = None,
    waits: list[float] | None = None,
) -> str:
    """Sign in through whatever guards start_url; return the Cookie header to replay.

    ``at_sign_in`` is called just before the request that leads to the provider: pressing
    Sign In on our sign-in page, or (Apache, which has no such page) the first request.
    From then on, ``waits`` gets each request's time from sending to the answer's head
    (the servers' share, without this client's own cookie and form bookkeeping).
    """
    sent: dict[int, float] = {}
    hooks: dict[str, list[Callable[..., None]]] = {}
    if waits is not None:
        hooks = {
            "request": [lambda request: sent.__setitem__(id(request), time.perf_counter())],
            "response": [lambda reply: waits.append(time.perf_counter() - sent.pop(id(reply.request)))],
        }
    with httpx.Client(
        follow_redirects=False, timeout=30, headers={"Accept": "text/html"}, event_hooks=hooks
    ) as client:
        page = client.get(start_url)
        if at_sign_in is not None and page.headers.get("location", "").startswith(
            provider.issuer.split("/v2.0")[0]
        ):
            at_sign_in()  # the first request went straight to the provider: time from there
            if waits is not None:
                waits.clear()
            page = client.get(start_url)
        reply = page
        for _ in range(10):
            location = reply.headers.get("location", "")
            if reply.status_code in (301, 302, 303) and not location.startswith(
                provider.issuer.split("/v2.0")[0]
            ):
                reply = client.get(httpx.URL(str(reply.url)).join(location))
                continue
            break
        if reply.status_code == 200 and "csrf_token" in reply.text:  # our sign-in page
            fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', reply.text))
            if at_sign_in is not None:
                at_sign_in()
            if waits is not None:
                waits.clear()
            reply = client.post(httpx.URL(str(reply.url)).join("/oauth2/start"), data=fields)
        authorize = reply.headers["location"]
        page = client.get(authorize)
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
        fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
        fields.update(login=EMAIL, passwd=PASSWORD, action="sign_in")
        reply = client.post(authorize.split("?")[0], data=fields)
        for _ in range(10):  # callback, then back to the page
            if reply.status_code not in (301, 302, 303):
                break
            reply = client.get(httpx.URL(str(reply.url)).join(reply.headers["location"]))
        if reply.status_code != 200:
            raise RuntimeError(
                f"sign-in through {start_url} ended with {reply.status_code}: {reply.text[:200]}"
            )
        return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


def wrk(url: str, cookie: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """``cookie``: a session cookie, or ``Bearer <token>`` for an API client."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if cookie.startswith("Bearer "):
        command[1:1] = ["-H", f"Authorization: {cookie}"]
    elif cookie:
        command[1:1] = ["-H", f"Cookie: {cookie}"]
    subprocess.run([*command[:-1], "-d2s", url], capture_output=True, check=True)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx responses:\n{output}")

    def percentile(p: str) -> float:
        value, unit = re.search(rf"{p}%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, percentile("50"), percentile("99")


def proxy_env(
    provider: NHSmailLikeProvider, base_url: str, client_id: str, accounts: Path, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        "CQRS_SSO_ISSUER": provider.issuer,
        "CQRS_SSO_CLIENT_ID": client_id,
        "CQRS_SSO_CLIENT_SECRET": SECRET,
        "CQRS_SSO_SECRET_KEYS": secrets.token_urlsafe(32),
        "CQRS_SSO_BASE_URL": base_url,
        "CQRS_SSO_ACCOUNT_LOOKUP": f"csv:{accounts}",
        **extra,
    }


def apache_available() -> bool:
    return (
        shutil.which("apache2") is not None and Path("/usr/lib/apache2/modules/mod_auth_openidc.so").exists()
    )


def apache_config(directory: Path, port: int, provider: NHSmailLikeProvider, app: str, workers: int) -> Path:
    modules = "/usr/lib/apache2/modules"
    conf = f"""
ServerRoot "{directory}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile {directory}/apache.pid
ErrorLog {directory}/error.log
LogLevel warn
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule proxy_module {modules}/mod_proxy.so
LoadModule proxy_http_module {modules}/mod_proxy_http.so
LoadModule headers_module {modules}/mod_headers.so
LoadModule auth_openidc_module {modules}/mod_auth_openidc.so
User www-data
Group www-data
StartServers {workers}
ServerLimit {workers}
ThreadsPerChild 32
MinSpareThreads 16
MaxSpareThreads {workers * 32}
MaxRequestWorkers {workers * 32}
KeepAlive On
MaxKeepAliveRequests 0
OIDCProviderMetadataURL {provider.issuer}/.well-known/openid-configuration
OIDCClientID apache-bench
OIDCClientSecret {SECRET}
OIDCRedirectURI http://127.0.0.1:{port}/oidc-callback
OIDCCryptoPassphrase {secrets.token_urlsafe(24)}
OIDCScope "openid email profile"
OIDCPKCEMethod S256
OIDCRemoteUserClaim email
OIDCSessionInactivityTimeout 3600
<Location />
    AuthType openid-connect
    Require valid-user
    ProxyPass http://{app}/ keepalive=On
    ProxyPassReverse http://{app}/
</Location>
"""
    path = directory / "httpd.conf"
    path.write_text(conf)
    return path


API_AUDIENCE = "api://cqrs-bench"


def apache_bearer_config(
    directory: Path, port: int, provider: NHSmailLikeProvider, app: str, workers: int
) -> Path:
    """(u): mod_auth_openidc as an OAuth 2.0 resource server, validating JWT access tokens
    with the provider's public key (no introspection), as it would Entra's. It fetches a
    JWKS over https only, so it is given the key as a file by its kid: the same check."""
    conf = apache_config(directory, port, provider, app, workers)
    text = conf.read_text()
    start = text.index("OIDCProviderMetadataURL")
    key_file = directory / "provider-key.pem"
    key_file.write_text(provider.signing_key.as_pem(private=False).decode())
    text = (
        text[:start]
        + f"""OIDCOAuthVerifyCertFiles {provider.signing_key.kid}#{key_file}
OIDCOAuthRemoteUserClaim preferred_username
OIDCCryptoPassphrase {secrets.token_urlsafe(24)}
<Location />
    AuthType oauth20
    <RequireAll>
        Require claim iss:{provider.issuer}
        Require claim aud:{API_AUDIENCE}
    </RequireAll>
    ProxyPass http://{app}/ keepalive=On
    ProxyPassReverse http://{app}/
</Location>
"""
    )
    conf.write_text(text)
    return conf


def bearer_setups(
    stack: ExitStack,
    tmp: Path,
    provider: NHSmailLikeProvider,
    accounts: Path,
    app: str,
    args: argparse.Namespace,
) -> list[Setup]:
    """(t) and (u): one person's delegated access token for the API, replayed by wrk."""
    only = set(args.only.split(","))
    token = "Bearer " + provider.api.access_token_for(
        provider.users[EMAIL], "bench-spa", API_AUDIENCE, "Reports.Read"
    )
    setups = []
    if "t" in only:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = proxy_env(
            provider,
            url,
            "proxy-bearer-bench",
            accounts,
            CQRS_SSO_UPSTREAM=f"http://{app}",
            CQRS_SSO_API_PATHS=PAGE,
            CQRS_SSO_API_AUDIENCES=API_AUDIENCE,
            CQRS_SSO_API_SCOPES="Reports.Read",
        )
        process = run_proxy(stack, port, args.workers, env, tmp / "proxy-bearer.log")
        wait_for(url + "/healthz")
        setups.append(Setup("t", "(t) cqrs-sso proxy, bearer token", url + PAGE, token, process.pid))
    if apache_available() and "u" in only:
        port = free_port()
        (tmp / "apache-bearer").mkdir()
        os.chmod(tmp, 0o755)  # noqa: S103 - apache workers (www-data) read the config dir
        conf = apache_bearer_config(tmp / "apache-bearer", port, provider, app, args.workers)
        start(stack, ["apache2", "-f", str(conf), "-DFOREGROUND"])
        wait_for(f"http://127.0.0.1:{port}/")
        setups.append(Setup("u", "(u) Apache, AuthType oauth20", f"http://127.0.0.1:{port}{PAGE}", token))
    return setups


def start_static_upstream(stack: ExitStack, tmp: Path, port: int, workers: int) -> None:
    """nginx serving a small page at every path: an upstream that costs almost nothing,
    so the table shows what the layer in front costs."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    root = tmp / "static"
    (root / "upstream").mkdir(parents=True)
    (root / "upstream" / "page.json").write_text('{"page": "messages", "items": []}\n')
    temp = {name: root / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ root {root}/upstream; try_files /page.json =404; }}
    }}
}}
"""
    )
    start(stack, [nginx, "-p", str(root), "-c", str(conf)])


def start_provider(
    stack: ExitStack, tmp: Path, timed: bool = False
) -> tuple[NHSmailLikeProvider, Path, ProviderClock]:
    """The built-in provider on a free port, and the accounts file the proxies look up."""
    accounts = tmp / "accounts.csv"
    accounts.write_text(f"email,account_id\n{EMAIL},CQRS-0001\n")
    sock = bind_socket()
    provider = NHSmailLikeProvider(
        f"http://127.0.0.1:{sock.getsockname()[1]}", TENANT, [DemoUser(EMAIL, PASSWORD, "Dr Gita Patel")], []
    )
    clock = ProviderClock(provider.app)
    server = BackgroundASGIServer(clock if timed else provider.app, sock).start()
    stack.callback(server.stop)
    return provider, accounts, clock


def start_legacy_app(stack: ExitStack, port: int, workers: int) -> None:
    """tests/proxy/legacy_app.py under gunicorn: the legacy upstream."""
    command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    command += ["-k", "gthread", "--threads", "16", "--chdir", str(ROOT), "tests.proxy.legacy_app:legacy_app"]
    start(stack, command)


def run_proxy(
    stack: ExitStack, port: int, workers: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cqrs_sso_middleware.cli", "proxy", "--listen", f"127.0.0.1:{port}"]
    return start(stack, [*command, "--workers", str(workers)], env, log)


@dataclass
class Setup:
    """One way of serving the page, started and signed in, ready for wrk."""

    key: str
    name: str
    url: str
    cookie: str
    pid: int | None = None
    start_url: str = ""
    runs: list[tuple[float, float, float]] = field(default_factory=list)


class ProviderClock:
    """Wraps the provider's ASGI app and adds up the time it spends on each request, so a
    sign-in round trip can be measured without the provider's own share."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seconds = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="authenticated GET throughput, four ways")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=3, help="wrk runs per setup, interleaved; medians shown"
    )
    parser.add_argument("--sign-ins", type=int, default=40, help="timed sign-in round trips for (b) and (d)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument(
        "--only", default="a,b,b',c,d", help="setups to run, e.g. b,d; add s for a Sentinel-managed Redis"
    )
    parser.add_argument(
        "--upstream",
        choices=["gunicorn", "static"],
        default="gunicorn",
        help="the legacy app under gunicorn, or nginx serving a small static page (a fast upstream)",
    )
    parser.add_argument("--profile", help="directory for py-spy flame graphs of (b), (b') and (c)'s service")
    parser.add_argument(
        "--profile-format", choices=["svg", "txt"], default="svg", help="txt: collapsed stacks"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    setups: list[Setup] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as temp:
        tmp = Path(temp)
        provider, accounts, clock = start_provider(stack, tmp, timed=True)
        app_port = free_port()
        if args.upstream == "static":
            start_static_upstream(stack, tmp, app_port, args.workers)
        else:
            start_legacy_app(stack, app_port, args.workers)
        app = f"127.0.0.1:{app_port}"
        wait_for(f"http://{app}/")
        if "a" in only:
            setups.append(Setup("a", "(a) legacy app direct", f"http://{app}{PAGE}", ""))

        sentinel_url = ""
        if "s" in only:
            from tests.redis_servers import start_sentinel_set

            sentinels = start_sentinel_set(tmp / "sentinel")
            stack.callback(sentinels.stop)
            sentinel_url = sentinels.url
        for key, name, client_id, store in (
            ("b", "(b) cqrs-sso proxy", "proxy-bench", "cookie"),
            ("b'", "(b') cqrs-sso proxy, Redis store", "proxy-redis-bench", args.redis_url),
            ("s", "(s) cqrs-sso proxy, Sentinel store", "proxy-sentinel-bench", sentinel_url),
        ):
            if key not in only:
                continue
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            provider.clients[client_id] = DemoClient(client_id, SECRET, (f"{url}/oauth2/callback",))
            env = proxy_env(
                provider,
                url,
                client_id,
                accounts,
                CQRS_SSO_UPSTREAM=f"http://{app}",
                CQRS_SSO_SESSION_STORE=store,
                CQRS_SSO_SESSION_KEY_PREFIX="cqrs_sso_bench:",
            )
            process = run_proxy(stack, port, args.workers, env, tmp / f"{client_id}.log")
            wait_for(url + "/healthz")
            setups.append(
                Setup(key, name, url + PAGE, sign_in(url + PAGE, provider), process.pid, url + PAGE)
            )

        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if Path(nginx).exists() and "c" in only:
            from tests.proxy.conftest import start_nginx
            from tests.proxy.test_nginx_forward_auth import example_site

            sso_port, nginx_port = free_port(), free_port()
            origin = f"http://127.0.0.1:{nginx_port}"
            provider.clients["nginx-bench"] = DemoClient(
                "nginx-bench", SECRET, (f"{origin}/oauth2/callback",)
            )
            env = proxy_env(provider, origin, "nginx-bench", accounts)
            process = run_proxy(stack, sso_port, args.workers, env, tmp / "sso.log")
            wait_for(f"http://127.0.0.1:{sso_port}/healthz")
            site = example_site(nginx_port, f"http://127.0.0.1:{sso_port}", f"http://{app}")
            front = start_nginx(tmp / "nginx", nginx_port, site, workers=args.workers, access_log=False)
            stack.callback(front.wait, 15)
            stack.callback(front.terminate)
            wait_for(origin + "/oauth2/sign_in")
            cookie = sign_in(origin + PAGE, provider)
            setups.append(Setup("c", "(c) nginx + forward-auth", origin + PAGE, cookie, process.pid))

        if apache_available() and "d" in only:
            apache_port = free_port()
            provider.clients["apache-bench"] = DemoClient(
                "apache-bench", SECRET, (f"http://127.0.0.1:{apache_port}/oidc-callback",)
            )
            (tmp / "apache").mkdir()
            os.chmod(tmp, 0o755)  # noqa: S103 - apache workers (www-data) read the config dir
            conf = apache_config(tmp / "apache", apache_port, provider, app, args.workers)
            start(stack, ["apache2", "-f", str(conf), "-DFOREGROUND"])
            wait_for(f"http://127.0.0.1:{apache_port}/")
            url = f"http://127.0.0.1:{apache_port}{PAGE}"
            setups.append(Setup("d", "(d) Apache + mod_auth_openidc", url, sign_in(url, provider), None, url))

        setups += bearer_setups(stack, tmp, provider, accounts, app, args)

        # Rounds interleave the setups, so that drift on the shared machine (another
        # process waking, the CPU's clock) falls on all of them rather than on one.
        for round_number in range(args.rounds):
            for setup in setups:
                spy = None
                if args.profile and round_number == 0 and setup.pid is not None:
                    out = Path(args.profile) / f"{setup.key}.{args.profile_format}"
                    spy = profiled(setup.pid, args.seconds, out)
                setup.runs.append(wrk(setup.url, setup.cookie, args.seconds, args.connections))
                if spy is not None:
                    spy.wait(timeout=60)
        timed = {s.name: s.start_url for s in setups if s.key in ("b", "d") and s.start_url}
        sign_ins = time_sign_ins(timed, provider, clock, args.sign_ins) if args.sign_ins > 0 else {}

    report(setups, args)
    report_sign_ins(sign_ins, args.sign_ins)


def _press(mark: list[float], clock: ProviderClock) -> None:
    mark[:] = [time.perf_counter(), clock.seconds]


def time_sign_ins(
    start_urls: dict[str, str], provider: NHSmailLikeProvider, clock: ProviderClock, count: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Sign-in round trips from new browsers (Sign In → provider → callback → the page), in
    ms, less the time the provider spent answering (its pages and its token endpoint): the
    wall time, and the sum of the requests' waits (without this client's own bookkeeping
    between requests). The setups take turns, one sign-in each, so drift on the machine
    falls on all alike."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in start_urls}
    for _ in range(count):
        for name, start_url in start_urls.items():
            mark: list[float] = []
            waits: list[float] = []
            # The test client's garbage collection is nobody's sign-in time: collect
            # between sign-ins, not during one.
            gc.collect()
            gc.disable()
            try:
                sign_in(start_url, provider, partial(_press, mark, clock), waits)
            finally:
                gc.enable()
            total = time.perf_counter() - mark[0]
            provider_seconds = clock.seconds - mark[1]
            times[name][0].append((total - provider_seconds) * 1000)
            times[name][1].append((sum(waits) - provider_seconds) * 1000)
    return times


def report(setups: list[Setup], args: argparse.Namespace) -> None:
    medians = {s.name: tuple(statistics.median(run[i] for run in s.runs) for i in range(3)) for s in setups}
    reference = medians.get("(d) Apache + mod_auth_openidc")
    print(
        f"wrk -t2 -c{args.connections} -d{args.seconds}s, GET {PAGE} signed in, {args.upstream} upstream, "
        f"{args.workers} workers each, {os.cpu_count()} CPUs, median of {args.rounds} interleaved rounds"
    )
    print(
        f"{'setup':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s vs (d)':>13} {'p99 vs (d)':>11}"
        "   req/s of each round"
    )
    for setup in setups:
        rps, p50, p99 = medians[setup.name]
        ratio = f"{rps / reference[0]:.2f}x" if reference else "n/a"
        p99_ratio = f"{p99 / reference[2]:.2f}x" if reference else "n/a"
        rounds = " ".join(f"{run[0]:.0f}" for run in setup.runs)
        print(f"{setup.name:34} {rps:9.0f} {p50:8.2f} {p99:8.2f} {ratio:>13} {p99_ratio:>11}   {rounds}")
    if reference is None and "d" in args.only.split(","):
        print("(d) skipped: apt-get install apache2 libapache2-mod-auth-openidc to compare")
    bearer, oauth20 = (
        medians.get("(t) cqrs-sso proxy, bearer token"),
        medians.get("(u) Apache, AuthType oauth20"),
    )
    if bearer and oauth20:
        print(
            f"(t) bearer token vs (u) Apache AuthType oauth20: {bearer[0] / oauth20[0]:.2f}x req/s, "
            f"p99 {bearer[2] / oauth20[2]:.2f}x"
        )
    standalone = medians.get("(b') cqrs-sso proxy, Redis store")
    sentinel = medians.get("(s) cqrs-sso proxy, Sentinel store")
    if standalone and sentinel:
        ratio = sentinel[0] / standalone[0]
        verdict = "met" if ratio >= 0.9 else "NOT met"
        print(
            f"(s) Sentinel-managed primary vs (b') one Redis: {ratio:.2f}x req/s  (target ≥ 0.9x: {verdict})"
        )


def report_sign_ins(sign_ins: dict[str, tuple[list[float], list[float]]], count: int) -> None:
    if not sign_ins:
        return
    print(f"\nsign-in round trip, {count} new browsers each, ms without the provider's own time")
    print(f"{'':34} {'wall time':>26}   {'sum of request waits':>26}")
    print(f"{'setup':34} {'median':>8} {'p90':>8} {'vs (d)':>8}   {'median':>8} {'p90':>8} {'vs (d)':>8}")
    reference = sign_ins.get("(d) Apache + mod_auth_openidc")
    for name, columns in sign_ins.items():
        cells = []
        for i, times in enumerate(columns):
            median = statistics.median(times)
            p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else median
            ratio = f"{median / statistics.median(reference[i]):.2f}x" if reference else "n/a"
            cells.append(f"{median:8.2f} {p90:8.2f} {ratio:>8}")
        print(f"{name:34} {cells[0]}   {cells[1]}")


if __name__ == "__main__":
    main()
