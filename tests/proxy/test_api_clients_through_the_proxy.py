"""API clients through `cqrs-sso proxy`: a script's own access token reaches the legacy
upstream with the caller in the identity headers, and a forged one never does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from cqrs_sso_middleware.provider import DemoClient, NHSmailLikeProvider

from ..conftest import GP_USER, SENSITIVE
from ..drivers.test_api_clients import (
    API,
    FORGED,
    SCRIPT,
    SCRIPT_SECRET,
    UNKNOWN_SCRIPT,
    bearer,
    client_credentials,
    forged_tokens,
)
from .conftest import ProxyProcess

pytestmark = pytest.mark.xdist_group("api_clients_proxy")


@pytest.fixture(scope="module")
def proxy(
    start_module_proxy: Callable[..., ProxyProcess], provider_server: NHSmailLikeProvider
) -> Iterator[ProxyProcess]:
    provider_server.clients[SCRIPT] = DemoClient(SCRIPT, SCRIPT_SECRET, ())
    provider_server.api.app_roles[API] = {SCRIPT: ("Reports.Export",), UNKNOWN_SCRIPT: ("Reports.Export",)}
    SENSITIVE.add(SCRIPT_SECRET)
    yield start_module_proxy(
        CQRS_SSO_API_PATHS="/api/**",
        CQRS_SSO_API_AUDIENCES=API,
        CQRS_SSO_API_SCOPES="Reports.Read",
        CQRS_SSO_ACCESS_RULES=json.dumps([{"paths": ["/api/exports/**"], "roles": ["Reports.Export"]}]),
    )
    provider_server.clients.pop(SCRIPT)
    provider_server.api.app_roles.clear()


def test_a_scripts_token_reaches_the_upstream_as_its_account(
    proxy: ProxyProcess, provider_server: NHSmailLikeProvider
) -> None:
    token = client_credentials(provider_server)
    reply = httpx.get(f"{proxy.url}/api/exports/2026", headers=bearer(token))
    assert reply.status_code == 200, reply.text
    seen = reply.json()["headers"]
    assert seen["x-forwarded-user"] == "app:reporting-script"


def test_a_persons_token_reaches_the_upstream_as_them(
    proxy: ProxyProcess, provider_server: NHSmailLikeProvider
) -> None:
    user = provider_server.users[GP_USER]
    token = provider_server.api.access_token_for(user, "cqrs-reports-spa", API, "Reports.Read")
    reply = httpx.get(f"{proxy.url}/api/reports/2026", headers=bearer(token))
    assert reply.status_code == 200 and reply.json()["headers"]["x-forwarded-user"] == GP_USER


@pytest.mark.parametrize("name", FORGED)
def test_a_forged_token_never_reaches_the_upstream(
    proxy: ProxyProcess, provider_server: NHSmailLikeProvider, name: str
) -> None:
    token, status = forged_tokens(provider_server)[name]
    reply = httpx.get(f"{proxy.url}/api/reports/2026", headers=bearer(token))
    assert reply.status_code == status
    expected = "invalid_token" if status == 401 else "insufficient_scope"
    assert reply.headers["www-authenticate"].startswith(f'Bearer realm="CQRS", error="{expected}"')
    assert "headers" not in reply.json()
