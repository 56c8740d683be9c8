"""examples/django_app under gunicorn, in front of the built-in provider: the five steps of the user guide,
request.user made from the CQRS session, and no Django user without one."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider

from .conftest import CLIENT_SECRET, GP_USER, NEW_USER, SENSITIVE
from .helpers import HTML, form_fields, require, wait_for_http
from .proxy.conftest import free_port

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).parents[1] / "examples" / "django_app"


def django_users(database: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(database) as db:
        return list(
            db.execute("SELECT username, email, first_name, last_name FROM auth_user ORDER BY username")
        )


@pytest.fixture
def django_site(provider: NHSmailLikeProvider, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    try:
        import django  # noqa: F401
    except ImportError:
        require(False, "Django is not installed (it is in the test extra)")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    client_id = f"django-{port}"
    provider.clients[client_id] = DemoClient(client_id, CLIENT_SECRET, (f"{origin}/oauth2/callback",))
    database = tmp_path / "db.sqlite3"
    key = secrets.token_urlsafe(32)
    SENSITIVE.add(key)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_DB": str(database),
        "CQRS_SSO_ISSUER": provider.issuer,
        "CQRS_SSO_CLIENT_ID": client_id,
        "CQRS_SSO_CLIENT_SECRET": CLIENT_SECRET,
        "CQRS_SSO_SECRET_KEYS": key,
        "CQRS_SSO_BASE_URL": origin,
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT,
        env=env,
        check=True,
        timeout=120,
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "cqrs_demo.wsgi:application",
        ],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_http(origin + "/healthz", process, "the Django example", seconds=30)
    yield origin, database
    process.terminate()
    process.wait(timeout=20)


def walk_to_provider(browser: httpx.Client, origin: str) -> str:
    """Steps 1 and 2: the sign-in page, then Sign In; returns the provider's login URL."""
    first = browser.get(origin + "/messages", headers=HTML)
    assert first.status_code == 303  # step 1
    page = browser.get(origin + first.headers["location"], headers=HTML)
    assert "Welcome to the Calculating Quality Reporting Service (CQRS)" in page.text
    start = browser.post(origin + "/oauth2/start", data=form_fields(page.text), headers=HTML)
    assert start.status_code == 303  # step 2
    return str(start.headers["location"])


def log_in(
    browser: httpx.Client, authorize: str, email: str, password: str = "cqrs-demo", action: str = "sign_in"
) -> httpx.Response:
    login = browser.get(authorize)
    fields = {**form_fields(login.text), "login": email, "passwd": password, "action": action}
    return browser.post(authorize.split("?")[0], data=fields)


def test_five_seed_steps_and_request_user_in_django(django_site: tuple[str, Path]) -> None:
    origin, database = django_site
    with httpx.Client(follow_redirects=False, timeout=20) as browser:
        authorize = walk_to_provider(browser, origin)
        wrong = log_in(browser, authorize, GP_USER, "wrong")  # step 4: the provider refuses
        assert "Incorrect user ID or password" in wrong.text
        answer = log_in(browser, authorize, GP_USER)  # step 3
        landed = browser.get(answer.headers["location"], headers=HTML)
        assert landed.status_code == 303
        page = browser.get(origin + landed.headers["location"], headers=HTML)
        assert page.status_code == 200
        assert "Welcome Dr Gita Patel (gp.user@nhs.net), account CQRS-0001" in page.text
        assert django_users(database) == [(GP_USER, GP_USER, "Dr", "Gita Patel")]

    with httpx.Client(follow_redirects=False, timeout=20) as browser:  # step 4: provider error
        answer = log_in(browser, walk_to_provider(browser, origin), GP_USER, action="cancel")
        ended = browser.get(answer.headers["location"], headers=HTML)
        assert ended.status_code == 303  # to a page that survives a reload
        cancelled = browser.get(origin + ended.headers["location"], headers=HTML)
        assert cancelled.status_code == 200 and "You cancelled signing in" in cancelled.text

    with httpx.Client(follow_redirects=False, timeout=20) as browser:  # step 5: no CQRS account
        answer = log_in(browser, walk_to_provider(browser, origin), NEW_USER)
        ended = browser.get(answer.headers["location"], headers=HTML)
        refused = browser.get(origin + ended.headers["location"], headers=HTML)
        assert refused.status_code == 403 and "no CQRS account is associated" in refused.text
    assert [row[0] for row in django_users(database)] == [GP_USER]  # no user without a CQRS account
    scrape = httpx.get(origin + "/metrics").text  # wsgi.py hands the middleware an SSOMetrics
    for outcome in ("success", "cancelled", "no_account"):
        assert f'cqrs_sso_sign_ins_total{{outcome="{outcome}"}} 1.0' in scrape


@pytest.mark.parametrize("header", ["Remote-User", "X-Remote-User", "Remote_User", "X-Forwarded-User"])
def test_a_client_sent_remote_user_never_makes_a_django_user(
    django_site: tuple[str, Path], header: str
) -> None:
    origin, database = django_site
    reply = httpx.get(origin + "/messages", headers={**HTML, header: "attacker@nhs.net"})
    assert reply.status_code == 303
    assert django_users(database) == []
