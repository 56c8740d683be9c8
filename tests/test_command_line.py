"""The command line as a deployer meets it: check-config proves the credentials, every
problem is named in one pass, and nothing a deployer can cause ends in a traceback."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cqrs_sso_middleware.credentials import make_certificate
from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider
from cqrs_sso_middleware.serving import bind_socket

from .conftest import CLIENT_ID, CLIENT_SECRET
from .helpers import free_port, wait_for_http, wait_until

ROOT = Path(__file__).parent.parent
ACCOUNTS = ROOT / "examples" / "accounts.csv"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrs_sso_middleware.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        cwd=ROOT,
    )


def settings_env(provider: NHSmailLikeProvider, **values: str) -> dict[str, str]:
    return {
        "CQRS_SSO_ISSUER": provider.issuer,
        "CQRS_SSO_CLIENT_ID": CLIENT_ID,
        "CQRS_SSO_CLIENT_SECRET": CLIENT_SECRET,
        "CQRS_SSO_SECRET_KEYS": secrets.token_urlsafe(32),
        "CQRS_SSO_BASE_URL": "http://localhost",
        "CQRS_SSO_ACCOUNT_LOOKUP": f"csv:{ACCOUNTS}",
        **values,
    }


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]


# -- check-config proves the credentials --------------------------------------------------------


def test_check_config_proves_a_good_client_secret(provider: NHSmailLikeProvider) -> None:
    result = cli("check-config", env=settings_env(provider))
    assert result.returncode == 0, result.stderr
    assert (
        f"credentials ok: the provider accepted client '{CLIENT_ID}' (client_secret_basic)" in result.stdout
    )
    assert "HTTP Request" not in result.stdout + result.stderr  # no httpx INFO noise


@pytest.mark.parametrize(
    "values,words",
    [
        pytest.param(
            {"CQRS_SSO_CLIENT_SECRET": "not-the-secret"}, "invalid_client AADSTS7000215", id="wrong-secret"
        ),
        pytest.param(
            {"CQRS_SSO_CLIENT_ID": "no-such-app"}, "unauthorized_client AADSTS700016", id="unknown-client-id"
        ),
        pytest.param(
            {"CQRS_SSO_TOKEN_AUTH_METHOD": "client_secret_post", "CQRS_SSO_CLIENT_SECRET": "wrong"},
            "invalid_client AADSTS7000215",
            id="wrong-secret-posted",
        ),
    ],
)
def test_check_config_fails_on_credentials_the_provider_refuses(
    provider: NHSmailLikeProvider, values: dict[str, str], words: str
) -> None:
    result = cli("check-config", env=settings_env(provider, **values))
    assert result.returncode == 1
    assert f"credentials refused: the provider answered {words}" in result.stderr
    assert "provider ok" in result.stdout  # the metadata was fine: it is the credentials
    no_traceback(result)


@pytest.fixture
def expired_secret(provider: NHSmailLikeProvider) -> Iterator[None]:
    original = provider.clients[CLIENT_ID]
    provider.clients[CLIENT_ID] = replace(original, secret_expired=True)
    yield
    provider.clients[CLIENT_ID] = original


def test_check_config_names_an_expired_secret(provider: NHSmailLikeProvider, expired_secret: None) -> None:
    result = cli("check-config", env=settings_env(provider))
    assert result.returncode == 1
    assert "AADSTS7000222" in result.stderr and "expired" in result.stderr


@pytest.fixture
def certificate_client(provider: NHSmailLikeProvider, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A client registered with a certificate (private_key_jwt), as the helpdesk would."""
    credential = make_certificate(tmp_path / "credentials")
    client_id = f"cert-{secrets.token_hex(4)}"
    provider.clients[client_id] = DemoClient(
        client_id,
        "",
        ("http://localhost/oauth2/callback",),
        certificate_pem=credential.certificate_file.read_text(),
    )
    yield client_id, credential.key_file
    del provider.clients[client_id]


@pytest.mark.parametrize("algorithm", ["PS256", "RS256"])
def test_check_config_proves_a_certificate_credential(
    provider: NHSmailLikeProvider, certificate_client: tuple[str, Path], algorithm: str
) -> None:
    client_id, key_file = certificate_client
    env = settings_env(
        provider,
        CQRS_SSO_CLIENT_ID=client_id,
        CQRS_SSO_CLIENT_SECRET="",
        CQRS_SSO_PRIVATE_KEY_FILE=str(key_file),
        CQRS_SSO_CLIENT_ASSERTION_ALGORITHM=algorithm,
    )
    seen = len(provider.client_auth.algorithms)
    result = cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert f"token auth:    private_key_jwt ({algorithm})" in result.stdout
    assert "credentials ok" in result.stdout
    assert provider.client_auth.algorithms[seen:] == [algorithm]


def test_check_config_refuses_a_certificate_the_provider_does_not_know(
    provider: NHSmailLikeProvider, certificate_client: tuple[str, Path], tmp_path: Path
) -> None:
    client_id, _ = certificate_client
    other = make_certificate(tmp_path / "other")  # not the one registered
    env = settings_env(
        provider,
        CQRS_SSO_CLIENT_ID=client_id,
        CQRS_SSO_CLIENT_SECRET="",
        CQRS_SSO_PRIVATE_KEY_FILE=str(other.key_file),
    )
    result = cli("check-config", env=env)
    assert result.returncode == 1
    assert "credentials refused: the provider answered invalid_client AADSTS700027" in result.stderr


# -- one pass, phrased for its source --------------------------------------------------------------


def test_nothing_set_names_every_problem_in_one_pass() -> None:
    result = cli("check-config")
    assert result.returncode == 1
    for name in ("issuer", "client_id", "client_secret", "base_url", "secret_keys", "account_lookup"):
        assert f"config error: {name}: required" in result.stderr
        assert f"set CQRS_SSO_{name.upper()}" in result.stderr
    no_traceback(result)


def test_toml_problems_come_with_did_you_mean_and_toml_hints(tmp_path: Path) -> None:
    config = tmp_path / "cqrs-sso.toml"
    config.write_text('client_secert = "s"\ntenant = "REPLACE-WITH-THE-NHSMAIL-TENANT-ID"\nworkers = 2\n')
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 1
    assert "unknown key 'client_secert' (did you mean 'client_secret'?)" in result.stderr
    assert "tenant (cqrs-sso.toml: tenant): must be the NHSmail tenant id (a GUID)" in result.stderr
    assert "add client_id = … to cqrs-sso.toml" in result.stderr
    assert "workers" not in result.stderr  # a setting in TOML like any other


def test_a_misspelt_variable_is_a_warning_with_did_you_mean(provider: NHSmailLikeProvider) -> None:
    result = cli("check-config", env=settings_env(provider, CQRS_SSO_SESION_STORE="memory"))
    assert result.returncode == 0, result.stderr
    assert (
        "config warning: CQRS_SSO_SESION_STORE is not a setting (did you mean 'CQRS_SSO_SESSION_STORE'?)"
        in result.stderr
    )


def test_check_config_lists_the_access_rules_and_warns_of_shadowed_and_opened_ones(
    provider: NHSmailLikeProvider,
) -> None:
    rules = [
        {"paths": ["/approvals/**"], "roles": ["CQRS.Approver"]},
        {"paths": ["/approvals/2026/**"], "roles": ["CQRS.Admin"]},
        {"paths": ["/declarations/**"], "max_auth_age_seconds": 900},
    ]
    env = settings_env(
        provider, CQRS_SSO_ACCESS_RULES=json.dumps(rules), CQRS_SSO_PUBLIC_PATHS="/declarations/help/*"
    )
    result = cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "access rule 1: /approvals/**: roles CQRS.Approver" in result.stdout
    assert "access rule 3: /declarations/**: signed in within 900 s" in result.stdout
    assert (
        "warning: access rule 2 (/approvals/2026/**: roles CQRS.Admin) never decides: "
        "rule 1 (/approvals/**: roles CQRS.Approver) matches its paths first" in result.stderr
    )
    assert "warning: public_paths '/declarations/help/*' opens paths of access rule 3" in result.stderr
    no_traceback(result)


def test_the_production_example_names_all_it_lacks_in_one_pass() -> None:
    result = cli("check-config", "--config", "examples/cqrs-sso.toml")
    assert result.returncode == 1
    for expected in (
        "tenant (cqrs-sso.toml: tenant)",
        "client_id (cqrs-sso.toml: client_id)",
        "base_url (cqrs-sso.toml: base_url)",
        "secret_keys: required",
        f"private_key_file: no file '{ROOT / 'examples' / 'credentials' / 'cqrs-sso-key.pem'}'",
    ):
        assert expected in result.stderr
    no_traceback(result)


# -- no traceback for what a deployer can cause -----------------------------------------------------


def test_proxy_without_its_extra_says_which_pip_line_fixes_it() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from cqrs_sso_middleware.cli import main\n"
        "sys.exit(main(['proxy']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 1
    assert "pip install 'cqrs-sso-middleware[proxy]'" in result.stderr
    assert "prometheus_client" in result.stderr
    no_traceback(result)


def test_a_redis_store_without_its_extra_says_which_pip_line_fixes_it(provider: NHSmailLikeProvider) -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from cqrs_sso_middleware.cli import main\n"
        "sys.exit(main(['check-config']))"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        **settings_env(provider, CQRS_SSO_SESSION_STORE="redis://127.0.0.1:6379/15"),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "pip install 'cqrs-sso-middleware[redis]'" in result.stderr
    no_traceback(result)


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = bind_socket()
    yield int(sock.getsockname()[1])
    sock.close()


def test_demo_on_a_busy_port_names_the_port_and_the_flag(busy_port: int) -> None:
    result = cli("demo", "--port", str(busy_port), "--provider-port", str(free_port()))
    assert result.returncode == 1
    assert (
        f"port {busy_port} on 127.0.0.1 is in use; choose another with --port (make demo PORT=…)"
        in result.stderr
    )
    no_traceback(result)
    result = cli("demo", "--port", str(free_port()), "--provider-port", str(busy_port))
    assert result.returncode == 1
    assert "--provider-port (make demo PROVIDER_PORT=…)" in result.stderr
    no_traceback(result)


def test_proxy_on_a_busy_port_never_says_listening(provider: NHSmailLikeProvider, busy_port: int) -> None:
    env = settings_env(provider, CQRS_SSO_UPSTREAM="http://127.0.0.1:9")
    result = cli("proxy", "--listen", f"127.0.0.1:{busy_port}", env=env)
    assert result.returncode == 1
    assert (
        f"cannot listen on 127.0.0.1:{busy_port}: the port is in use; choose another with --listen"
        in result.stderr
    )
    assert "listening" not in result.stdout
    no_traceback(result)


def test_provider_command_allows_the_callback_next_to_it_and_says_so() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cqrs_sso_middleware.cli", "provider", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        issuer = f"http://127.0.0.1:{port}/8e1f2b4c-3d5a-4f6e-9a7b-0c1d2e3f4a5b/v2.0"
        wait_for_http(f"{issuer}/.well-known/openid-configuration", process, "the provider")
        authorize = f"http://127.0.0.1:{port}/8e1f2b4c-3d5a-4f6e-9a7b-0c1d2e3f4a5b/oauth2/v2.0/authorize"
        query = {"client_id": "cqrs-demo-client", "response_type": "code", "scope": "openid"}
        allowed = httpx.get(
            authorize, params={**query, "redirect_uri": f"http://127.0.0.1:{port - 1}/oauth2/callback"}
        )
        assert allowed.status_code in (200, 302)  # the login page (or an error redirect to the app)
        refused = httpx.get(authorize, params={**query, "redirect_uri": "http://127.0.0.1:1/oauth2/callback"})
        assert refused.status_code == 400 and "AADSTS50011" in refused.text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert f"callback       http://127.0.0.1:{port - 1}/oauth2/callback" in output
    assert "client id      cqrs-demo-client" in output and "client secret  cqrs-demo-client-secret" in output
    assert (
        "refused sign-in: client 'cqrs-demo-client', redirect_uri 'http://127.0.0.1:1/oauth2/callback'"
        in output
    )
    assert "Traceback" not in output


def test_proxy_runs_the_workers_its_toml_asks_for(provider: NHSmailLikeProvider, tmp_path: Path) -> None:
    port = free_port()
    provider.clients["proxy-workers"] = DemoClient(
        "proxy-workers", CLIENT_SECRET, ("http://localhost/oauth2/callback",)
    )
    config = tmp_path / "proxy.toml"
    config.write_text(f'workers = 2\nupstream = "http://127.0.0.1:9"\nlisten = "127.0.0.1:{port}"\n')
    env = {"PATH": "/usr/bin:/bin", **settings_env(provider, CQRS_SSO_CLIENT_ID="proxy-workers")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cqrs_sso_middleware.cli", "proxy", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process, "the proxy")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        pids = wait_until(
            lambda: children.read_text().split() if len(children.read_text().split()) >= 2 else None,
            "2 workers",
        )
        assert len(pids) >= 2
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    assert output.count("cqrs-sso proxy: listening on") == 1
    assert "Traceback" not in output
    assert provider.clients.pop("proxy-workers")
