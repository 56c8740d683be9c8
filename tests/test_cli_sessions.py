"""`cqrs-sso sessions list|revoke` against the real Redis, as a support engineer runs it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cqrs_sso_middleware.core.identity import Account, Identity, User
from cqrs_sso_middleware.core.interpreter import StoreOnly, run_sync
from cqrs_sso_middleware.core.sessions.keeper import SessionKeeper
from cqrs_sso_middleware.core.sessions.session import Deployment, Session, SessionTimeouts
from cqrs_sso_middleware.stores.redis import RedisStore

from .conftest import REDIS_URL, topology_settings

ROOT = Path(__file__).parents[1]
KEY = secrets.token_urlsafe(32)
ISSUER, CLIENT_ID = "http://127.0.0.1:9/tenant/v2.0", "c"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrs_sso_middleware.cli", "sessions", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(store: str, prefix: str = "cqrs_sso:", extra: str = "") -> Path:
        config = tmp_path / "cqrs-sso.toml"
        config.write_text(
            f'issuer = "{ISSUER}"\nclient_id = "{CLIENT_ID}"\nclient_secret = "s"\n'
            f'secret_keys = ["{KEY}"]\nbase_url = "http://localhost"\n'
            f'account_lookup = "csv:{ROOT / "examples" / "accounts.csv"}"\n'
            f'session_store = "{store}"\nsession_key_prefix = "{prefix}"\n{extra}'
        )
        return config

    return write


def save_sessions(prefix: str, *emails: str, url: str = REDIS_URL, **settings: str) -> list[str]:
    deployment = Deployment(ISSUER, CLIENT_ID)
    keeper = SessionKeeper(url, [KEY], SessionTimeouts(3600, 43200), deployment, prefix)
    store = RedisStore.from_url(url, **settings)
    ids = []
    for email in emails:
        user = User(
            Identity(email=email, subject=f"sub-{email}", issuer="i", object_id=f"oid-{email}"), Account("A")
        )
        session = Session.start(user, time.time(), deployment)
        run_sync(keeper.save(session, time.time()), StoreOnly(store.perform))
        ids.append(session.session_id)
    store.close()
    return ids


@pytest.mark.parametrize("topology", ["redis", "redis-tls", "sentinel", "cluster"])
def test_list_and_revoke_one_persons_sessions(
    write_config: Callable[..., Path], request: pytest.FixtureRequest, topology: str
) -> None:
    """On one server, over TLS, through Sentinel, and on every primary of a Cluster."""
    values = topology_settings(topology, request)
    url, prefix = values.pop("session_store"), values.pop("session_key_prefix")
    ids = save_sessions(prefix, "gp.user@nhs.net", "gp.user@nhs.net", "other.user@nhs.net", url=url, **values)
    extra = "".join(f'{name} = "{value}"\n' for name, value in values.items())
    config = write_config(url, prefix, extra)
    listed = cli(config, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("gp.user@nhs.net") == 2 and "other.user@nhs.net" in listed.stdout
    assert "3 session(s)" in listed.stdout
    assert "provider" in listed.stdout.splitlines()[0] and listed.stdout.count(" nhsmail ") == 3
    assert not any(session_id in listed.stdout + listed.stderr for session_id in ids)  # never the cookie
    assert "1 session(s)" in cli(config, "list", "--email", "OTHER.user@nhs.net").stdout
    revoked = cli(config, "revoke", "--email", "gp.user@nhs.net")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 2 session(s)" in revoked.stdout
    assert revoked.stderr.count('"event": "session_revoked"') == 2  # one audit line each
    after = cli(config, "list")
    assert "gp.user@nhs.net" not in after.stdout and "1 session(s)" in after.stdout
    assert "revoked 1 session(s)" in cli(config, "revoke", "--all").stdout
    assert "0 session(s)" in cli(config, "list").stdout


@pytest.mark.parametrize("email", [" ", "", "nobody", "   @  ", "gp.user@"])
def test_revoke_with_a_blank_or_malformed_email_is_refused_and_ends_nothing(
    write_config: Callable[..., Path], redis_prefix: str, email: str
) -> None:
    """A blank filter once matched everyone: "--email ' '" revoked every session."""
    save_sessions(redis_prefix, "gp.user@nhs.net", "other.user@nhs.net")
    config = write_config(REDIS_URL, redis_prefix)
    refused = cli(config, "revoke", "--email", email)
    assert refused.returncode == 2, refused.stdout
    assert "--all" in refused.stderr and "Traceback" not in refused.stderr
    assert "2 session(s)" in cli(config, "list").stdout


@pytest.mark.parametrize("store", ["cookie", "memory"])
def test_stores_the_command_line_cannot_reach_say_so(write_config: Callable[..., Path], store: str) -> None:
    result = cli(write_config(store), "list")
    assert result.returncode == 2
    assert f"session_store is '{store}'" in result.stderr
    assert "Traceback" not in result.stderr


def test_redis_down_is_one_line_not_a_traceback(write_config: Callable[..., Path]) -> None:
    result = cli(write_config("redis://127.0.0.1:1/0"), "list")
    assert result.returncode == 1
    assert result.stderr.startswith("session store error")
    assert "Traceback" not in result.stderr
