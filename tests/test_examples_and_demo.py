"""The README's examples and the demo work as documented."""

from __future__ import annotations

import importlib
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from cqrs_sso_middleware.demo import DEMO_PASSWORD, GP_USER, NEW_USER, DemoStack
from cqrs_sso_middleware.provider import WRONG_CREDENTIALS, NHSmailLikeProvider

from .conftest import CLIENT_ID, CLIENT_SECRET
from .helpers import HTML, ASGIClient, Journey, WSGIClient, form_fields

ROOT = Path(__file__).parent.parent


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch, provider: NHSmailLikeProvider) -> None:
    for name, value in {
        "CQRS_SSO_ISSUER": provider.issuer,
        "CQRS_SSO_CLIENT_ID": CLIENT_ID,
        "CQRS_SSO_CLIENT_SECRET": CLIENT_SECRET,
        "CQRS_SSO_SECRET_KEYS": secrets.token_urlsafe(32),
        "CQRS_SSO_BASE_URL": "http://localhost",
        "CQRS_SSO_ACCOUNT_LOOKUP": "examples.accounts:lookup",
    }.items():
        monkeypatch.setenv(name, value)


def test_flask_example_signs_a_user_in(example_env: None) -> None:
    module = importlib.reload(importlib.import_module("examples.flask_app"))
    client = WSGIClient(module.app)
    client.middleware = module.app.wsgi_app
    journey = Journey(client)
    try:
        assert journey.sign_in(GP_USER).status == 303
        page = client.get("/", HTML)
        assert page.text == "Welcome Dr Gita Patel, CQRS account CQRS-0001"
        scrape = client.test_app.get("/metrics", extra_environ={"REMOTE_ADDR": "127.0.0.1"})
        assert 'cqrs_sso_sign_ins_total{outcome="success"} 1.0' in scrape.text
    finally:
        journey.close()
        client.close()


def test_fastapi_example_signs_a_user_in(example_env: None) -> None:
    module = importlib.reload(importlib.import_module("examples.fastapi_app"))
    client = ASGIClient(module.app)
    client.middleware = type("Closer", (), {"aclose": staticmethod(_noop)})()
    journey = Journey(client)
    try:
        assert journey.sign_in(GP_USER).status == 303
        assert client.get("/", HTML).json() == {"welcome": "Dr Gita Patel", "account": "CQRS-0001"}
        with TestClient(module.app, client=("127.0.0.1", 40000)) as scraper:
            scrape = scraper.get("/metrics")
        assert 'cqrs_sso_sign_ins_total{outcome="success"} 1.0' in scrape.text
    finally:
        journey.close()
        client.close()


async def _noop() -> None:
    return None


def test_readme_examples_are_at_most_twenty_lines() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    for block in blocks[:2]:
        assert len(block.strip().splitlines()) <= 20


# -- the demo over real sockets ----------------------------------------------------------------


def click_through(stack: DemoStack, email: str, password: str = DEMO_PASSWORD) -> tuple[httpx.Client, Any]:
    browser = httpx.Client(follow_redirects=True, timeout=10, headers=HTML)
    sign_in = browser.get(stack.app_server.url + "/")
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in sign_in.text  # step 1
    # Step 2: the demo offers NHSmail and the CIS2-like provider; the NHSmail button.
    chosen = {**form_fields(sign_in.text), "provider": "nhsmail"}
    login = browser.post(stack.app_server.url + "/oauth2/start", data=chosen)
    assert "Sign in with your NHSmail account" in login.text
    fields = {**form_fields(login.text), "login": email, "passwd": password, "action": "sign_in"}
    return browser, browser.post(str(login.url).split("?")[0], data=fields)


def test_demo_step3_gp_user_reaches_the_message_centre(demo: DemoStack) -> None:
    browser, page = click_through(demo, GP_USER)
    browser.close()
    assert page.status_code == 200
    assert "<h1>Message centre</h1>" in page.text
    assert "Dr Gita Patel" in page.text


def test_demo_step4_wrong_password_is_refused_by_the_provider(demo: DemoStack) -> None:
    browser, page = click_through(demo, GP_USER, "wrong")
    browser.close()
    assert WRONG_CREDENTIALS in page.text


def test_demo_step5_new_user_has_no_cqrs_account(demo: DemoStack) -> None:
    browser, page = click_through(demo, NEW_USER)
    browser.close()
    assert page.status_code == 403
    assert "no CQRS account is associated" in page.text
    assert NEW_USER in page.text


def write_config(tmp_path: Path, provider: NHSmailLikeProvider, extra: str = "") -> Path:
    config = tmp_path / "cqrs-sso.toml"
    config.write_text(
        f'issuer = "{provider.issuer}"\nclient_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
        f'secret_keys = ["{secrets.token_urlsafe(32)}"]\nbase_url = "http://localhost"\n'
        f'account_lookup = "csv:{ROOT / "examples" / "accounts.csv"}"\n{extra}'
    )
    return config


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrs_sso_middleware.cli", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_cli_check_config_validates_and_fetches_metadata(
    provider: NHSmailLikeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path, provider)
    ok = check_config(config)
    assert ok.returncode == 0, ok.stderr
    assert "redirect URI:  http://localhost/oauth2/callback" in ok.stdout
    assert "provider ok" in ok.stdout
    config.write_text('client_id = ""\n')
    bad = check_config(config)
    assert bad.returncode == 1
    assert "config error:" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_check_config_warns_about_public_paths_that_open_everything(
    provider: NHSmailLikeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path, provider, 'public_paths = ["/static/**", "/*"]\n')
    result = check_config(config)
    assert result.returncode == 0, result.stderr
    assert "warning: public_paths pattern '/*'" in result.stderr
    assert "'/static/**'" not in result.stderr


def test_cli_check_config_warns_about_extension_style_public_paths(
    provider: NHSmailLikeProvider, tmp_path: Path
) -> None:
    config = write_config(tmp_path, provider, 'public_paths = ["/static/**", "re:.*\\\\.css", "**.js"]\n')
    result = check_config(config)
    assert result.returncode == 0, result.stderr
    assert "warning: public_paths pattern 're:.*\\\\.css' opens any path by its ending" in result.stderr
    assert "'**.js'" in result.stderr and "'/static/**' opens" not in result.stderr
