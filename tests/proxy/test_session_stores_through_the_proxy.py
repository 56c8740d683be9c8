"""Session stores through `cqrs-sso proxy` processes: the steps of the user guide on each store, and
two instances sharing one Redis — sign-out on one is refused on the other at once."""

from __future__ import annotations

import dataclasses
import re
import secrets
import signal
from collections.abc import Callable, Iterator

import pytest

from cqrs_sso_middleware.provider import NHSmailLikeProvider

from ..conftest import GP_USER, NEW_USER, REDIS_URL, SENSITIVE, delete_keys, topology_settings
from ..helpers import HTML
from .conftest import Browser, ProxyProcess

# The module's pairs of instances start once, on one worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("session_stores_through_the_proxy")]


@pytest.mark.parametrize("store", ["cookie", "memory", "redis"])
def test_seed_steps_through_the_proxy_on_each_store(
    start_proxy: Callable[..., ProxyProcess],
    make_browser: Callable[[str], Browser],
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    env = {"CQRS_SSO_SESSION_STORE": store}
    if store == "redis":
        env = {
            "CQRS_SSO_SESSION_STORE": REDIS_URL,
            "CQRS_SSO_SESSION_KEY_PREFIX": request.getfixturevalue("redis_prefix"),
        }
    proxy = start_proxy(**env)
    browser = make_browser(proxy.url)
    assert browser.get("/messages").status_code == 303
    assert browser.sign_in(GP_USER).status_code == 303
    assert browser.get("/messages").json()["headers"]["x-forwarded-user"] == GP_USER
    ready = browser.client.get(proxy.url + "/readyz").json()
    assert ready["session_store"] == ("redis (standalone): ok" if store == "redis" else f"{store}: ok")
    assert make_browser(proxy.url).sign_in(NEW_USER).status_code == 403


def sign_out(browser: Browser, origin: str, public_origin: str) -> None:
    page = browser.client.get(origin + "/oauth2/sign_out", headers=HTML)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    reply = browser.client.post(
        origin + "/oauth2/sign_out",
        data={"csrf_token": token.group(1)},
        headers={**HTML, "Origin": public_origin},
    )
    assert reply.status_code == 303, reply.text[:300]  # ended here; on to the provider's sign-out


@pytest.fixture(scope="module", params=["redis", "redis-tls", "sentinel", "cluster"])
def two_instances(
    start_module_proxy: Callable[..., ProxyProcess], request: pytest.FixtureRequest
) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    """Two proxies of one service behind a load balancer: one Redis (one server, TLS,
    Sentinel or Cluster), one set of secret keys, one client id and public origin. One pair
    per topology for the module (each test signs in with browsers of its own)."""
    key = secrets.token_urlsafe(32)
    SENSITIVE.add(key)
    values = topology_settings(request.param, request, own_prefix=True)
    shared = {f"CQRS_SSO_{name.upper()}": str(value) for name, value in values.items()}
    shared["CQRS_SSO_SECRET_KEYS"] = key
    first = start_module_proxy(**shared)
    port = first.url.rsplit(":", 1)[1]
    second = start_module_proxy(**shared, CQRS_SSO_CLIENT_ID=f"proxy-{port}", CQRS_SSO_BASE_URL=first.url)
    yield first, second
    first.stop(signal.SIGKILL)
    second.stop(signal.SIGKILL)
    if request.param == "redis":
        delete_keys(values["session_key_prefix"])


def test_sign_out_on_one_instance_is_refused_on_the_other_at_once(
    two_instances: tuple[ProxyProcess, ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    first, second = two_instances
    browser = make_browser(first.url)
    assert browser.sign_in(GP_USER).status_code == 303
    cookie = browser.client.cookies["cqrs_sso"]
    on_second = browser.client.get(second.url + "/messages", headers=HTML)
    assert on_second.status_code == 200  # the session is shared through Redis
    assert on_second.json()["headers"]["x-forwarded-user"] == GP_USER
    sign_out(browser, second.url, first.url)
    browser.client.cookies.set("cqrs_sso", cookie)  # a copy taken before sign-out
    again = browser.client.get(first.url + "/messages", headers=HTML)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/oauth2/sign_in")


def test_callback_replayed_to_the_other_instance_is_refused(
    two_instances: tuple[ProxyProcess, ProxyProcess], make_browser: Callable[[str], Browser]
) -> None:
    from ..helpers import form_fields

    first, second = two_instances
    browser = make_browser(first.url)
    sign_in_path = browser.client.get(first.url + "/messages", headers=HTML).headers["location"]
    page = browser.client.get(first.url + sign_in_path, headers=HTML)
    start = browser.client.post(first.url + "/oauth2/start", data=form_fields(page.text), headers=HTML)
    login = browser.client.get(start.headers["location"])
    fields = {**form_fields(login.text), "login": GP_USER, "passwd": "cqrs-demo", "action": "sign_in"}
    callback = browser.client.post(start.headers["location"].split("?")[0], data=fields).headers["location"]
    attempt_cookies = dict(browser.client.cookies)
    assert browser.client.get(callback, headers=HTML).status_code == 303
    replay = make_browser(second.url)
    for name, value in attempt_cookies.items():
        replay.client.cookies.set(name, value)
    path = callback.removeprefix(first.url)
    answer = replay.client.get(second.url + path, headers=HTML)
    assert answer.status_code == 400  # the state was spent in Redis by the first instance
    assert "cqrs_sso" not in replay.client.cookies


def test_the_built_in_provider_sends_back_channel_logout_to_the_proxy(
    start_proxy: Callable[..., ProxyProcess],
    make_browser: Callable[[str], Browser],
    provider: NHSmailLikeProvider,
    redis_prefix: str,
) -> None:
    proxy = start_proxy(CQRS_SSO_SESSION_STORE=REDIS_URL, CQRS_SSO_SESSION_KEY_PREFIX=redis_prefix)
    client_id = f"proxy-{proxy.url.rsplit(':', 1)[1]}"
    provider.clients[client_id] = dataclasses.replace(
        provider.clients[client_id], backchannel_logout_uri=f"{proxy.url}/oauth2/backchannel_logout"
    )
    browser = make_browser(proxy.url)
    provider.sso_sessions.clear()  # the module's other sign-ins (shared instances) left theirs
    assert browser.sign_in(GP_USER).status_code == 303
    (sso,) = provider.sso_sessions.values()
    assert provider.send_backchannel_logout(client_id, sid=sso.sid) == 200
    assert browser.get("/messages").status_code == 303  # ended in Redis, server to server
    forged = provider.send_backchannel_logout(client_id, token="e30.e30.c2ln")
    assert forged == 400
